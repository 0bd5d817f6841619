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

__all__ = ["code_maps", "copying", "nearest", "searched_maps"]


@torch.no_grad()
def nearest(queries: Tensor, references: Tensor, chunk: int | None = None) -> Tensor:
    """For each code map in queries (n, h, w), the fraction of positions at which it differs from the most similar
    code map in references (N, h, w): (n,) float in [0, 1]; 0 is an exact copy. ``chunk`` queries at a time (None:
    as many as keep a chunk's counts under about 4 million entries).

    The matches are counted position by position into a small counter of each query-reference pair, the narrowest
    integer that holds h*w (one byte up to 255 positions): no (n, N, h*w) comparison is ever held, so the memory is a
    chunk's counters whatever the sizes (1,000 held-out 14x14 maps of full MNIST against its 60,000: 4.6 s on 2 cores,
    where comparing whole maps at once took 54.7 s; BENCHMARKS.md)."""
    refs = references.flatten(1).T.contiguous()  # (h*w, N): each position's codes contiguous
    positions, N = refs.shape
    count = torch.uint8 if positions <= torch.iinfo(torch.uint8).max else torch.int32
    chunk = chunk or max(1, 2**22 // N)
    most = []
    for q in queries.flatten(1).split(chunk):  # (c, h*w)
        same = torch.zeros(len(q), N, dtype=count)  # (c, N) positions that match so far
        for p in range(positions):
            same += q[:, p, None] == refs[p]  # (c, 1) == (N,) -> (c, N)
        most.append(same.amax(1))  # (c,) the most positions any reference shares
    return (positions - torch.cat(most).long()).float() / positions  # (n,) the fewest positions that differ


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
        return searched_maps(encode_splits(vqvae, Path(cache_dir or scratch).expanduser(), spec, data_root, device))


def searched_maps(codes: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """The train and held-out code maps (N, h, w) that the copying check searches, of what
    :func:`vqvae_prior.training.codes.encode_splits` returns (or its cache file holds): the finest level's, the
    inputs as they are (the first offset, (0, 0))."""
    return as_levels(codes["train"][0])[-1][0], as_levels(codes["test"][0])[-1]
