"""Copying: whether generated code maps replay the training set.

:func:`copying` gives the distance from each generated code map to its nearest train code map (:func:`nearest`: the
fraction of positions whose codes differ), beside the same distance from real held-out code maps, and the number of
exact copies; :func:`code_maps` gives the VQ-VAE's code maps of its data set, cached beside the judging
classifiers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vqvae_prior.hierarchy import as_levels
from vqvae_prior.training.codes import encode_splits

__all__ = ["code_maps", "copying", "nearest"]


@torch.no_grad()
def nearest(queries: Tensor, references: Tensor, chunk: int | None = None) -> Tensor:
    """For each code map in queries (n, h, w), the fraction of positions at which it differs from the most similar
    code map in references (N, h, w): (n,) float in [0, 1]; 0 is an exact copy. ``chunk`` queries at a time
    (None: as many as keep the comparison under about 32 million entries)."""
    flat = references.flatten(1)  # (N, h*w)
    chunk = chunk or max(1, 2**25 // flat.numel())
    return torch.cat([
        (q.flatten(1)[:, None] != flat[None]).sum(2).amin(1) / flat.shape[1]  # (chunk, N) -> (chunk,)
        for q in queries.split(chunk)
    ])


def copying(generated: Tensor, held_out: Tensor, train: Tensor) -> dict[str, Any]:
    """Nearest-train-map distances (:func:`nearest`) of generated and of real held-out code maps (n, h, w)."""
    d_generated, d_held_out = nearest(generated, train), nearest(held_out, train)
    return {
        "generated_mean_distance": float(d_generated.mean()),
        "held_out_mean_distance": float(d_held_out.mean()),
        "generated_exact_copies": int((d_generated == 0).sum()),
        "generated_n": len(generated),
    }


def code_maps(
    vqvae: nn.Module, spec: dict[str, Any], data_root: str | None, device: torch.device, cache_dir: str | None
) -> tuple[Tensor, Tensor]:
    """The code maps (N, h, w) of the train and of the held-out split of the VQ-VAE's data set, as the inputs are
    (of a two-level VQ-VAE, the bottom level's), by :func:`vqvae_prior.training.codes.encode_splits`, cached in
    ``cache_dir`` (None: not kept)."""
    with tempfile.TemporaryDirectory() as scratch:
        codes = encode_splits(vqvae, Path(cache_dir or scratch).expanduser(), spec, data_root, device)
    # (N, h, w) each: the finest level's, the first offset (0, 0)
    return as_levels(codes["train"][0])[-1][0], as_levels(codes["test"][0])[-1]
