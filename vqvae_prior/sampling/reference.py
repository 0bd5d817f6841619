"""The reference sampler: the whole network run once per position (h * w full passes), the logits of the current
position read from each pass. It needs nothing of a prior but its forward pass, so it samples every prior, and it is
the specification that the cached and fused samplers are tested against."""

from __future__ import annotations

import torch
from torch import Tensor

from vqvae_prior.sampling.draw import Prior, Request, doubled, guide, logits_of, sample_from_logits, start

__all__ = ["sample_reference"]


def sample_reference(model: Prior, request: Request) -> Tensor:
    """Indices (n, h, w) drawn with one full forward pass per position."""
    shape, temperature, guidance = request.shape, request.temperature, request.guidance
    with torch.inference_mode():
        u, indices, keep = start(model, request)
        # (2n,), (2n, h', w') under guidance: the maps given their labels, then given the null label
        labels, condition = doubled(model, request) if guidance > 0 else (request.labels, request.condition)
        for r in range(shape[0]):
            for c in range(shape[1]):
                if guidance > 0:
                    logits = logits_of(model, indices.repeat(2, 1, 1), labels, condition)[:, :, r, c]  # (2n, K)
                    logits = guide(logits, guidance)  # (n, K)
                else:
                    logits = logits_of(model, indices, labels, condition)[:, :, r, c]  # (n, K)
                drawn = sample_from_logits(logits, u[r * shape[1] + c], temperature)  # (n,)
                if keep is not None:  # a given entry stays
                    drawn = torch.where(keep[:, r, c], indices[:, r, c], drawn)
                indices[:, r, c] = drawn
    return indices.clone()  # an ordinary tensor, usable outside inference mode
