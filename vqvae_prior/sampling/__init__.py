"""Samplers of autoregressive priors over code maps, apart from the models, by name (:data:`BACKENDS`), each saying
whether it can run a given prior on a given device; :func:`sample` picks one and runs it.

- ``"fused"``: the cached sampler with each position's work one Triton kernel (``fused``): a prior whose
  step-by-step form is the gated PixelCNN's, on CUDA (or on the CPU under Triton's interpreter,
  ``TRITON_INTERPRET=1``, which "auto" never picks);
- ``"cached"``: the prior's step-by-step form (``cached``: the gated PixelCNN's, and :data:`cached.STEP_FORMS`, the
  forms by prior class) driven in raster order (``stepwise``, with CUDA-graph row replay): any device;
- ``"reference"``: one full forward pass per position (``reference``, the specification): every prior.

"auto" picks the first backend in that order that can run the prior and that "auto" may pick on its device. What
every sampler shares (the prior's contract, the draws) is in ``draw``. Every sampler returns the same codes given
the same generator (the cached and fused ones to float rounding of the logits), runs under ``torch.inference_mode``
and returns an ordinary tensor.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from vqvae_prior.errors import UsageError
from vqvae_prior.sampling.cached import GatedPixelCNNState, step_form
from vqvae_prior.sampling.draw import Prior, Request, check_condition
from vqvae_prior.sampling.reference import sample_reference
from vqvae_prior.sampling.stepwise import sample_stepwise

__all__ = ["BACKENDS", "METHODS", "Backend", "Request", "resolve_method", "sample"]


@dataclass(frozen=True)
class Backend:
    """A sampler: ``refusal(model, device)`` is None where it can run the prior on that device, else the reason it
    cannot (a sentence for the user); ``run(model, request)`` returns the indices (n, h, w) of a :class:`Request`,
    the model in eval mode; ``auto_devices``: the device types on which "auto" may pick it (None: all)."""

    refusal: Callable[[Prior, torch.device], str | None]
    run: Callable[[Prior, Request], Tensor]
    auto_devices: tuple[str, ...] | None = None


def _cached_refusal(model: Prior, device: torch.device) -> str | None:
    if step_form(model) is None:
        return (f"{type(model).__name__} has no step-by-step form for the cached sampler: sample it with method "
                "'reference' (or 'auto')")
    return None


def _sample_cached(model: Prior, request: Request) -> Tensor:
    return sample_stepwise(step_form(model), model, request)


def _fused_refusal(model: Prior, device: torch.device) -> str | None:
    if step_form(model) is not GatedPixelCNNState:
        return (f"{type(model).__name__} has no fused step-by-step form for the fused sampler: sample it with method "
                "'reference' (or 'auto')")
    if importlib.util.find_spec("triton") is None:
        return "the fused sampler needs Triton (installed with PyTorch's CUDA builds on Linux): sample with 'cached'"
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return (f"the fused sampler runs on CUDA (or on the CPU with TRITON_INTERPRET=1), not on {device}: sample "
                "with method 'cached'")
    return None


def _sample_fused(model: Prior, request: Request) -> Tensor:
    from vqvae_prior.sampling.fused import FusedGatedPixelCNNState  # imports Triton: only when it runs

    return sample_stepwise(FusedGatedPixelCNNState, model, request)


BACKENDS: dict[str, Backend] = {
    "fused": Backend(_fused_refusal, _sample_fused, auto_devices=("cuda",)),
    "cached": Backend(_cached_refusal, _sample_cached),
    "reference": Backend(lambda model, device: None, sample_reference),
}

METHODS = ("auto", *BACKENDS)


def resolve_method(model: Prior, method: str) -> str:
    """The backend that ``method`` names for this prior on its device; "auto": the first of :data:`BACKENDS` that can
    run it there and that "auto" may pick there. A clear error for a method that does not exist or cannot run it."""
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    device = model.device
    if method == "auto":
        allowed = [name for name, backend in BACKENDS.items()
                   if backend.auto_devices is None or device.type in backend.auto_devices]
        return next(name for name in allowed if BACKENDS[name].refusal(model, device) is None)
    refusal = BACKENDS[method].refusal(model, device)
    if refusal is not None:
        raise UsageError(refusal)
    return method


def sample(model: Prior, n: int, shape: tuple[int, int], labels: Tensor | list[int] | None = None,
           temperature: float = 1.0, generator: torch.Generator | None = None, given: Tensor | None = None,
           method: str = "auto", guidance: float = 0.0, condition: Tensor | None = None) -> Tensor:
    """Sample n code maps (n, h, w) from ``model`` in eval mode (its mode is restored afterwards).

    Arguments as ``vqvae_prior.prior.AutoregressivePrior.sample``; ``method`` is a name in :data:`BACKENDS` or
    "auto" (:func:`resolve_method`).
    """
    method = resolve_method(model, method)
    labels = model.check_labels(labels, n)
    condition = check_condition(model, condition, n, tuple(shape))
    if not (math.isfinite(guidance) and guidance >= 0):
        raise UsageError(f"guidance must be a finite number >= 0, got {guidance}")
    if guidance > 0 and (labels is None or model.null_label is None):
        raise UsageError(
            "guidance > 0 needs a class-conditional prior fitted with label dropout (fit_prior --label-dropout), "
            f"and labels; this prior has {'no null label' if labels is not None else 'no labels'}"
        )
    request = Request(n, tuple(shape), labels, temperature, generator, given, guidance, condition)
    was_training = model.training
    model.eval()
    try:
        return BACKENDS[method].run(model, request)
    finally:
        model.train(was_training)
