"""Checkpoints: written atomically, holding each model's config, and rebuilt from it on load.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "vqvae_prior", "version": 1, "kind": "vqvae" | "prior",
     "config": dataclasses.asdict(config),   # rebuilds the model
     "model": state_dict,                    # of the unwrapped module (no DDP / torch.compile prefixes)
     "data": {...},                          # the data set's spec (and, for audio, the spectrogram settings)
     ...}                                    # training state for --resume: optimizer, epoch, rng, args

It is written to a temporary file in the same folder and renamed over the target, so an interrupted write never
destroys the previous checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.vqvae import VQVAE, VQVAEConfig

__all__ = [
    "CheckpointError", "atomic_save", "load_checkpoint", "load_prior", "load_vqvae", "save_checkpoint", "unwrap",
    "weights_digest",
]

FORMAT, VERSION = "vqvae_prior", 1
_MODELS = {"vqvae": (VQVAE, VQVAEConfig), "prior": (GatedPixelCNN, PriorConfig)}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of the wrong kind, or does not fit the model it is used with."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel / DataParallel or ``torch.compile`` wrapper."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | Path, kind: str, model: nn.Module, **extra: Any) -> None:
    """Atomically write ``model`` (its config and weights) and ``extra`` entries to ``path``."""
    if kind not in _MODELS:
        raise ValueError(f"kind must be one of {sorted(_MODELS)}, got {kind!r}")
    model = unwrap(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": dataclasses.asdict(model.config),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    atomic_save(payload, path)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """A short SHA-256 of a state dict's names and values: identifies the exact weights a prior was fitted on."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint (on the CPU) and check its format and, when given, its kind."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path} is not a readable vqvae_prior checkpoint: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vqvae_prior checkpoint")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path} holds a {payload['kind']} model, expected a {kind} model")
    return payload


def _build(payload: dict[str, Any], path: str | Path, device: torch.device | str | None) -> nn.Module:
    model_cls, config_cls = _MODELS[payload["kind"]]
    try:
        config = config_cls(**payload["config"])
    except TypeError as e:
        raise CheckpointError(f"{path}: its config does not match this version of {config_cls.__name__}: {e}") from e
    model = model_cls(config)
    model.load_state_dict(payload["model"])
    return model.to(device or "cpu").eval()


def load_vqvae(path: str | Path, device: torch.device | str | None = None) -> tuple[VQVAE, dict[str, Any]]:
    """The VQ-VAE saved at ``path``, rebuilt from its config, in eval mode; and the checkpoint dict.

    An audio VQ-VAE must have been fitted on spectrograms laid out as they are now, ``(1, n_frames, F)``; one
    fitted on frequency-major ``(1, F, n_frames)`` images (before time ran down the rows) is refused.
    """
    payload = load_checkpoint(path, "vqvae")
    spectrogram = payload.get("data", {}).get("spectrogram")
    if spectrogram is not None and "sample_shape" in payload:
        from vqvae_prior.audio import SpectrogramConfig

        expected = [1, *SpectrogramConfig(**spectrogram).shape]
        if list(payload["sample_shape"]) != expected:
            raise CheckpointError(
                f"{path}: an audio VQ-VAE fitted on {list(payload['sample_shape'])} spectrograms, but its settings "
                f"now give {expected} (1, n_frames, F: time down the rows); refit it with pipelines.fit_vqvae"
            )
    return _build(payload, path, device), payload  # type: ignore[return-value]


def load_prior(path: str | Path, device: torch.device | str | None = None) -> tuple[GatedPixelCNN, dict[str, Any]]:
    """The prior saved at ``path``, rebuilt from its config, in eval mode; and the checkpoint dict."""
    payload = load_checkpoint(path, "prior")
    return _build(payload, path, device), payload  # type: ignore[return-value]
