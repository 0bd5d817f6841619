"""Checkpoints: written atomically, holding each model's config, and rebuilt from it on load.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "vqvae_prior", "version": 2, "kind": "vqvae" | "prior",
     "arch": "vqvae" | "gated_pixelcnn",     # the architecture: its name in vqvae_prior.registry.AUTOENCODERS
                                             # (a VQ-VAE: "vqvae", one level, or "vqvae2", two) or PRIORS
     "config": dataclasses.asdict(config),   # rebuilds the model (a VQ-VAE's names its quantizer)
     "model": state_dict,                    # of the unwrapped module (no DDP / torch.compile prefixes)
     "data": {...},                          # the data set's spec: its "modality" (a name in
                                             # vqvae_prior.registry.MODALITIES) and that modality's settings
     ...}                                    # epoch, metrics, args; training state for --resume (vqvae_prior.training.run_folder)

It is written atomically (:func:`vqvae_prior.files.atomic_save`), so an interrupted write never destroys the
previous checkpoint. Weights that are not finite (a diverged fit) are refused when saving and when loading.

Loading brings older checkpoints up to date (:func:`load_checkpoint`): version 1 named no architecture (its priors
are ``"gated_pixelcnn"``, its VQ-VAEs' quantizers ``"vq"``), VQ-VAE checkpoints named none before two-level VQ-VAEs
existed (theirs are ``"vqvae"``), and a data spec without a modality is an audio one when it holds spectrogram
settings, else an image one. A config is completed with the defaults of fields added since it was written. A
checkpoint from a newer version, or of an architecture not registered here, is refused with a message that says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqvae_prior.errors import CheckpointError
from vqvae_prior.files import atomic_save
from vqvae_prior.registry import (
    autoencoder_architecture, autoencoder_name, modality_of_spec, prior_architecture, prior_name,
)
from vqvae_prior.vqvae import VQVAE
from vqvae_prior.vqvae2 import VQVAE2

__all__ = [
    "CheckpointError", "load_checkpoint", "load_prior", "load_vqvae", "nonfinite", "require", "save_checkpoint",
    "unwrap", "weights_digest",
]

FORMAT, VERSION = "vqvae_prior", 2
KINDS = ("vqvae", "prior")
_REQUIRED = ("format", "version", "kind", "config", "model")  # the keys every checkpoint has


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
    """Atomically write ``model`` (its config and weights) and ``extra`` entries to ``path``; weights that are not
    finite are refused."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    model = unwrap(model)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    check_finite(weights, f"the {kind} weights to save to {path}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "arch": prior_name(model) if kind == "prior" else autoencoder_name(model),
        "config": dataclasses.asdict(model.config),
        "model": weights,
        **extra,
    }
    atomic_save(payload, path)


def nonfinite(weights: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``weights`` that hold NaN or infinite values."""
    return [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_finite(weights: dict[str, torch.Tensor], what: str) -> None:
    """Refuse NaN or infinite values in the floating-point tensors of ``weights``, naming the first few."""
    bad = nonfinite(weights)
    if bad:
        more = ", ..." if len(bad) > 3 else ""
        raise CheckpointError(f"{what}: {len(bad)} tensors hold NaN or infinite values ({', '.join(bad[:3])}{more}); "
                              "the fit that made them diverged")


def weights_digest(tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> str:
    """A short SHA-256 of tensors. Of a state dict: its names and values, which identify the exact weights a prior
    was fitted on (as prior checkpoints record them). Of a sequence: each tensor's dtype, shape and values, which
    identify a data set's content (as the judging classifiers' cache keys record it)."""
    h = hashlib.sha256()
    named = isinstance(tensors, Mapping)
    for name in sorted(tensors) if named else range(len(tensors)):
        t = tensors[name].detach().cpu()
        h.update(name.encode() if named else f"{t.dtype} {tuple(t.shape)}".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # row-major, whatever the layout
    return h.hexdigest()[:16]


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint (on the CPU), check its format, its keys and, when given, its kind; bring it up to date
    (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint (a copy or a write that was cut off?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types, with messages from "[Errno 22]" to none at all
        raise CheckpointError(f"{path} is truncated or corrupt ({path.stat().st_size} bytes): torch cannot read it "
                              "as a checkpoint (a copy or a write that was cut off?)") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vqvae_prior checkpoint")
    require(payload, path, *_REQUIRED)
    if not isinstance(payload["version"], int) or payload["version"] > VERSION:
        raise CheckpointError(f"{path} has format version {payload['version']!r}; this code reads up to {VERSION}: "
                              "it was written by a newer vqvae_prior (update vqvae_prior to load it)")
    if payload["kind"] not in KINDS:
        raise CheckpointError(f"{path} holds a model of unknown kind {payload['kind']!r}; expected one of "
                              f"{', '.join(KINDS)}")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path} holds a {payload['kind']} model, expected a {kind} model")
    return _upgrade(payload, path)


def _upgrade(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """The checkpoint as this version writes it: architecture named, modality in the data spec, config complete."""
    payload = dict(payload)
    # the one prior of version 1; the one VQ-VAE before two-level ones
    payload.setdefault("arch", "gated_pixelcnn" if payload["kind"] == "prior" else "vqvae")
    if payload["kind"] == "vqvae" and isinstance(payload.get("data"), dict) and "modality" not in payload["data"]:
        payload["data"] = {**payload["data"], "modality": modality_of_spec(payload["data"]).name}
    config_cls = _classes(payload, path)[1]
    try:
        payload["config"] = dataclasses.asdict(config_cls(**payload["config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config does not match this version of {config_cls.__name__}: {e}") from e
    return payload


def _classes(payload: dict[str, Any], path: Path) -> tuple[type[nn.Module], type]:
    """The model class and config class of an up-to-date checkpoint."""
    lookup = autoencoder_architecture if payload["kind"] == "vqvae" else prior_architecture
    try:
        arch = lookup(payload["arch"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    return arch.model, arch.config


def require(payload: dict[str, Any], path: str | Path, *keys: str) -> None:
    """Refuse a checkpoint that lacks any of ``keys``, naming them."""
    missing = [k for k in keys if k not in payload]
    if missing:
        kind = payload.get("kind", "vqvae_prior")
        raise CheckpointError(f"{path} lacks {', '.join(map(repr, missing))}, which every {kind} checkpoint written "
                              "by this package holds (made by hand, or by another program?)")


def _build(payload: dict[str, Any], path: str | Path, device: torch.device | str | None) -> nn.Module:
    """The model of a checked, up-to-date checkpoint; weights that do not fit its config, or are not finite, are
    refused."""
    model_cls, config_cls = _classes(payload, Path(path))
    model = model_cls(config_cls(**payload["config"]))
    weights, expected = payload["model"], model.state_dict()
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: 'model' is a {type(weights).__name__}, expected a state dict of tensors")
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = {k: tuple(getattr(w, "shape", ())) for k, w in weights.items()}
    wrong = [f"{k} {shapes[k]} instead of {tuple(v.shape)}" for k, v in expected.items()
             if k in shapes and shapes[k] != tuple(v.shape)]  # fmt: skip
    if missing or unexpected or wrong:
        problems = [f"{what} {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
                    for what, names in (("missing", missing), ("unexpected", unexpected), ("shape of", wrong))
                    if names]  # fmt: skip
        raise CheckpointError(f"{path}: its weights do not fit the {payload['kind']} its config describes "
                              f"({'; '.join(problems)})")
    check_finite(weights, str(path))
    model.load_state_dict(weights)
    return model.to(device or "cpu").eval()


def load_vqvae(path: str | Path, device: torch.device | str | None = None) -> tuple[VQVAE | VQVAE2, dict[str, Any]]:
    """The VQ-VAE saved at ``path``, rebuilt from its architecture (``payload["arch"]``: a :class:`VQVAE` or a
    :class:`VQVAE2`) and config, in eval mode; and the checkpoint dict.

    An audio VQ-VAE must have been fitted on spectrograms laid out as they are now, ``(1, n_frames, F)``; one
    fitted on frequency-major ``(1, F, n_frames)`` images (before time ran down the rows) is refused.
    """
    payload = load_checkpoint(path, "vqvae")
    if "data" in payload and "sample_shape" in payload:
        modality_of_spec(payload["data"]).check_sample_shape(payload["sample_shape"], path)
    return _build(payload, path, device), payload  # type: ignore[return-value]


def load_prior(path: str | Path, device: torch.device | str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The prior saved at ``path``, rebuilt from its architecture (``payload["arch"]``) and config, in eval mode;
    and the checkpoint dict."""
    payload = load_checkpoint(path, "prior")
    return _build(payload, path, device), payload  # type: ignore[return-value]
