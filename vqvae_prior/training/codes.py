"""The code maps a prior is fitted on: a data set encoded once by a frozen VQ-VAE, cached, and augmented.

:func:`encode_splits` encodes the train and held-out splits of a VQ-VAE's data set and caches the code maps under a
digest of the VQ-VAE's weights, the data spec and the offsets. Augmentation for the small data sets: each training
input is also encoded moved by some pixel offsets (:func:`offsets`): delayed by 1 .. S-1 rows (``shifts``, for
spectrograms, zero rows in front) or translated by up to P pixels each way (``jitter``, for images, zeros fill the
border it uncovers), and every epoch draws one of each input's code maps (:func:`draw_shifts`).

A two-level VQ-VAE's code maps are a tuple of two such tensors, top first (``encode_levels``), drawn alike.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.checkpoint import weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.files import atomic_save, content_digest, writable_folder
from vqvae_prior.hierarchy import as_levels
from vqvae_prior.training.batching import as_tensors, batches, load_splits

__all__ = ["draw_shifts", "encode_splits", "offsets", "translate"]


@torch.no_grad()
def encode_splits(
    vqvae: nn.Module, cache_dir: Path, data_spec: dict[str, Any], data_root: str | None, device: torch.device,
    shifts: int = 1,
    jitter: int = 0,
    sample_shape: tuple[int, ...] | list[int] | None = None,
) -> dict[str, Any]:
    """Code maps and labels of the train and held-out splits, cached in ``cache_dir`` (the fit's folder).

    ``train`` holds (S, N, h, w) code maps, one per offset of :func:`offsets` (the inputs as they are first),
    ``test`` (N, h, w) code maps of the inputs as they are; for a VQ-VAE of several levels, a tuple of such tensors
    for each, top first. The cache key is the digest of the VQ-VAE weights, the
    data spec, the offsets and the files under the data's root (their paths, sizes and modification times:
    :func:`vqvae_prior.files.content_digest`), so a refitted VQ-VAE, other data or data changed under the same path
    never reuse stale codes; an unreadable cache is
    rebuilt, with a warning. ``sample_shape``: (C, H, W) of the items the VQ-VAE was fitted on (its checkpoint's),
    which the data set's items must have.
    """
    moves = offsets(shifts, jitter)
    writable_folder(cache_dir, "--cache-dir")  # before the encoding, which it is to keep
    spec = {**data_spec, **({"root": data_root} if data_root else {})}
    digest = weights_digest(vqvae.state_dict())
    content = content_digest(spec.get("root"))  # the files under the data's root: other data, other codes
    # the key of a fit without jitter is as before --jitter existed (and of data without a root, as before it was
    # keyed on the files), so those cached codes stay valid
    key_parts = [digest, spec, shifts] + ([jitter] if jitter else []) + ([content] if content else [])
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"codes-{key}.pt"
    if cache.is_file():
        try:
            codes = torch.load(cache, weights_only=True)
            if codes["vqvae_digest"] == digest and len(as_levels(codes["train"][0])[0]) == len(moves):
                return codes
            problem = "it holds the codes of other weights or offsets"
        except Exception as e:  # torch raises several types for a corrupt file; a foreign one lacks keys
            problem = f"{type(e).__name__}: {' '.join(str(e).split())}"
        print(f"warning: the code cache {cache} is unreadable ({problem}); rebuilding it", file=sys.stderr)
    splits = load_splits(data_spec, data_root, sample_shape)
    codes: dict[str, Any] = {"vqvae_digest": digest, "label_names": list(splits.label_names)}

    def encode(x: Tensor, y: Tensor, dy: int, dx: int) -> list[Tensor]:
        """Each level's code maps (N, h, w) int64 of the inputs moved by dy, dx."""
        maps = [vqvae.encode_levels(translate(xb, dy, dx)) for xb, _ in batches(x, y, 512, device)]
        return [torch.cat([m[level] for m in maps]).cpu() for level in range(len(maps[0]))]

    def one_or_levels(levels: list[Tensor]) -> Tensor | tuple[Tensor, ...]:
        return levels[0] if len(levels) == 1 else tuple(levels)  # one level: as before levels existed

    x, y = as_tensors(splits.train)
    moved = [encode(x, y, dy, dx) for dy, dx in moves]
    codes["train"] = (one_or_levels([torch.stack(level) for level in zip(*moved)]), y.clone())  # (S, N, h, w), (N,)
    x, y = as_tensors(splits.test)
    codes["test"] = (one_or_levels(encode(x, y, 0, 0)), y.clone())  # (N, h, w), (N,)
    atomic_save(codes, cache)
    return codes


def offsets(shifts: int = 1, jitter: int = 0) -> list[tuple[int, int]]:
    """The (dy, dx) pixel offsets at which each training input is encoded, (0, 0) first: (s, 0) for s < ``shifts``
    (delays of a spectrogram), or every (dy, dx) with |dy|, |dx| <= ``jitter`` (translations of an image)."""
    if shifts < 1:
        raise UsageError(f"--shifts must be >= 1, got {shifts}")
    if jitter < 0:
        raise UsageError(f"--jitter must be >= 0, got {jitter}")
    if shifts > 1 and jitter > 0:
        raise UsageError(f"--shifts {shifts} and --jitter {jitter}: pass one of them (shifts delay, jitter translates)")
    if jitter == 0:
        return [(s, 0) for s in range(shifts)]
    moves = [(dy, dx) for dy in range(-jitter, jitter + 1) for dx in range(-jitter, jitter + 1)]
    return sorted(moves, key=lambda m: m != (0, 0))  # stable: (0, 0) first, the rest in raster order


def translate(x: Tensor, dy: int, dx: int) -> Tensor:
    """x (B, C, H, W) moved down by dy and right by dx pixels (negative: up, left); zeros fill the uncovered border."""
    if dy == 0 and dx == 0:
        return x
    H, W = x.shape[2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))  # (B, C, H + |dy|, W + |dx|)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top : top + H, left : left + W]


def draw_shifts(codes: Tensor | tuple[Tensor, ...], generator: torch.Generator) -> Tensor | tuple[Tensor, ...]:
    """One of the S code maps of each input, drawn uniformly: (S, N, h, w) -> (N, h, w); of code maps of several
    levels (a tuple), the same draw for each level."""
    levels = as_levels(codes)
    S, N = levels[0].shape[:2]
    if S == 1:  # draws nothing: a fit without shifts shuffles exactly as before they existed
        drawn = [level[0] for level in levels]
    else:
        pick = torch.randint(S, (N,), generator=generator), torch.arange(N)
        drawn = [level[pick] for level in levels]
    return drawn[0] if isinstance(codes, Tensor) else tuple(drawn)
