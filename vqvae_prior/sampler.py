"""Samplers for the gated PixelCNN prior: the reference sampler and the cached ("fast") sampler.

The reference sampler runs the whole network once per position (h * w full passes) and reads the logits of the
current position: it is the specification. The cached sampler (Ramachandran et al. 2017, "Fast Generation for
Convolutional Autoregressive Models") does about one full pass of arithmetic per sample:

- per layer it caches the last ``k//2 + 1`` rows of the vertical stack's input and the current row of the
  horizontal stack's input;
- at the start of row r it runs every layer's vertical convolution once over row r - 1 (which is complete), and
  stores the 1x1 projection of that pre-activation that the horizontal stack adds in row r;
- at each position (r, c) it runs every layer's horizontal convolution on its cached window only (a matrix
  product), adds the stored vertical contribution and the label bias, gates, and writes the residual output into
  the next layer's row cache and the skip output into the head's sum; the head gives the K logits.

Both samplers draw all their uniform random numbers up front, ``u = rand(n, h, w)``, and pick at each position the
code whose cumulative probability first exceeds u (inverse-CDF sampling): given the same generator they return the
same indices, and the inner loops have no host synchronization.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vqvae_prior.layers import gate

if TYPE_CHECKING:
    from vqvae_prior.prior import GatedPixelCNN

__all__ = ["sample_cached", "sample_from_logits", "sample_reference"]


def sample_from_logits(logits: Tensor, u: Tensor, temperature: float) -> Tensor:
    """Indices (B,) drawn from softmax(logits / temperature) (B, K) by inverse CDF with uniforms u (B,).

    The logits are shifted so that their maximum is 0 before the division: a tiny temperature then sends the others
    to -inf (probability 0) instead of overflowing, and the most likely code is drawn (argmax).
    """
    logits = logits.float()
    logits = logits - logits.amax(dim=-1, keepdim=True)  # (B, K), max 0
    temperature = max(temperature, torch.finfo(torch.float32).tiny)  # not 0 in float32: 0 / 0 would be NaN
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum(dim=-1)  # (B, K)
    u = u.reshape(-1, 1).contiguous()  # (B, 1)
    # the first code whose cumulative probability exceeds u: a code of probability 0 is never drawn, even for u = 0
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


def _start(
    model: GatedPixelCNN, n: int, shape: tuple[int, int], temperature: float, generator, given: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Checked arguments -> (uniforms (n, h, w), indices (n, h, w) with given entries, keep mask (n, h, w))."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (h, w) with h, w >= 1, got {shape}")
    device = model.device
    u = torch.rand((n, *shape), generator=generator, device=device)  # (n, h, w)
    if given is None:
        given = torch.full((n, *shape), -1, dtype=torch.long, device=device)
    elif tuple(given.shape) != (n, *shape):
        raise ValueError(f"given must have shape {(n, *shape)}, got {tuple(given.shape)}")
    given = given.to(device=device, dtype=torch.long)
    keep = given >= 0  # (n, h, w)
    return u, given.clamp(min=0), keep


@torch.no_grad()
def sample_reference(
    model: GatedPixelCNN,
    n: int,
    shape: tuple[int, int],
    labels: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
) -> Tensor:
    """Reference sampler: one full forward pass per position. Returns indices (n, h, w); see ``prior.sample``."""
    u, indices, keep = _start(model, n, shape, temperature, generator, given)
    for r in range(shape[0]):
        for c in range(shape[1]):
            logits = model(indices, labels)[:, :, r, c]  # (n, K)
            drawn = sample_from_logits(logits, u[:, r, c], temperature)  # (n,)
            indices[:, r, c] = torch.where(keep[:, r, c], indices[:, r, c], drawn)
    return indices


@torch.no_grad()
def sample_cached(
    model: GatedPixelCNN,
    n: int,
    shape: tuple[int, int],
    labels: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
) -> Tensor:
    """Cached sampler: about one forward pass of arithmetic per sample. Same contract and same samples as
    :func:`sample_reference` (to float tolerance of the logits).

    Axes: n batch, C channels, H, W the code map's height and width, k a layer's kernel size, p = k // 2.
    """
    u, indices, keep = _start(model, n, shape, temperature, generator, given)
    H, W = shape
    layers = model.layers
    C = model.config.channels

    # per layer: weights as matrices, label biases, and the row caches
    h_weights = [rearrange(layer.h_conv.weight, "o c 1 k -> o (c k)") for layer in layers]  # (2C, C*kw)
    h_out = [rearrange(layer.h_out.weight, "o i 1 1 -> o i") for layer in layers]  # (2C, C)
    bias_v, bias_h = [], []
    for layer in layers:
        if layer.label_bias is None:
            bias_v.append(None)
            bias_h.append(None)
        else:
            bv, bh = layer.label_bias(labels).chunk(2, dim=1)  # (n, 2C) each
            bias_v.append(bv[:, :, None, None])
            bias_h.append(bh[:, :, None])
    pads = [layer.pad for layer in layers]
    widths = [layer.h_conv.weight.shape[-1] for layer in layers]  # horizontal kernel widths
    _, head_in, _, head_out = model.head  # ReLU, 1x1, ReLU, 1x1: as matrices for one position
    head_weights = [rearrange(conv.weight, "o i 1 1 -> o i") for conv in (head_in, head_out)]
    x0 = torch.zeros(n, C, 1, W, device=model.device)
    # v_rows[l]: the last p+1 rows of layer l's vertical input, padded by p columns on each side
    v_rows = [F.pad(x0, (p, p, p, 0)) for p in pads]  # (n, C, p+1, W+2p), rows < 0 are zero
    # h_rows[l]: the current row of layer l's horizontal input, padded by p columns on the left
    h_rows = [F.pad(x0[:, :, 0], (p, 0)) for p in pads]  # (n, C, W+p)
    # vh[l]: the vertical stack's contribution to the horizontal pre-activation of the current row
    vh: list[Tensor] = []

    for r in range(H):
        # -- start of row r: vertical stacks over row r-1 (zero input above the grid) -------------------------
        vh = []
        v_in = rearrange(model.embedding(indices[:, r - 1]), "n w c -> n c 1 w") if r > 0 else None
        for i, layer in enumerate(layers):
            p = pads[i]
            if v_in is None:
                v_pre = torch.zeros(n, 2 * C, 1, W, device=model.device)  # shift_down's zero row
            else:
                v_rows[i] = torch.cat([v_rows[i][:, :, 1:], F.pad(v_in, (p, p))], dim=2)  # (n, C, p+1, W+2p)
                v_pre = F.conv2d(v_rows[i], layer.v_conv.weight, layer.v_conv.bias)  # (n, 2C, 1, W)
            vh_i = F.conv2d(v_pre, layer.v_to_h.weight, layer.v_to_h.bias)[:, :, 0]  # (n, 2C, W)
            vh.append(vh_i if bias_h[i] is None else vh_i + bias_h[i])
            if v_in is not None:
                v_in = gate(v_pre if bias_v[i] is None else v_pre + bias_v[i])  # (n, C, 1, W) next layer's input
        h_rows = [torch.zeros_like(row) for row in h_rows]

        # -- positions of row r: horizontal stacks on their cached windows -------------------------------------
        for c in range(W):
            skips = 0
            for i, layer in enumerate(layers):
                p = pads[i]
                kw = widths[i]
                window = h_rows[i][:, :, c : c + kw]  # (n, C, kw): input columns c-p .. c (.. c-1 if first)
                h_pre = F.linear(rearrange(window, "n c k -> n (c k)"), h_weights[i], layer.h_conv.bias)  # (n, 2C)
                h_pre = h_pre + vh[i][:, :, c]
                residual, skip = F.linear(gate(h_pre), h_out[i], layer.h_out.bias).chunk(2, dim=1)  # (n, C) each
                skips = skips + skip
                if i + 1 < len(layers):
                    h_next = residual if layer.first else h_rows[i][:, :, c + p] + residual  # (n, C)
                    h_rows[i + 1][:, :, c + pads[i + 1]] = h_next
            hidden = F.relu(F.linear(F.relu(skips), head_weights[0], head_in.bias))  # (n, head_channels)
            logits = F.linear(hidden, head_weights[1], head_out.bias)  # (n, K)
            drawn = sample_from_logits(logits, u[:, r, c], temperature)  # (n,)
            indices[:, r, c] = torch.where(keep[:, r, c], indices[:, r, c], drawn)
            h_rows[0][:, :, c + pads[0]] = model.embedding(indices[:, r, c])  # (n, C) input of position c+1
    return indices
