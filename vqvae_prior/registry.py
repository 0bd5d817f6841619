"""Architectures by name: a checkpoint records the names, loading looks them up here and rebuilds the classes.

- :data:`PRIORS`: prior architectures. A prior checkpoint records its architecture's name (``"arch"``) beside its
  config; the entry gives the model class and its config class (a frozen dataclass).
- :data:`QUANTIZERS`: the VQ-VAE's quantizers. ``VQVAEConfig.quantizer`` names one; the class is built with
  ``cls.from_config(vqvae_config)``.

A new prior is one module plus one entry in :data:`PRIORS`; it needs what ``vqvae_prior.sampling.draw.Prior`` lists
(``forward(indices, labels) -> logits``, ``check_labels``, ``device``) and a ``config`` attribute;
``vqvae_prior.prior.AutoregressivePrior`` gives most of it. A step-by-step form for the cached sampler is optional,
one more entry in ``vqvae_prior.sampling.cached.STEP_FORMS``. A new quantizer is one module plus one entry in
:data:`QUANTIZERS`; it needs ``from_config``, ``forward(z_e) -> QuantizerOutput`` in training and eval,
``encode(z_e) -> indices`` and ``decode(indices) -> quantized maps`` (see ``vqvae_prior.quantizer``). Code outside
the package may add entries to both dictionaries before loading its checkpoints.

Checkpoints written before architecture names existed name none: they hold today's classes,
``"gated_pixelcnn"`` and ``"vq"`` (``vqvae_prior.checkpoint`` fills the names in when it loads them).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vqvae_prior.plain_prior import PlainPixelCNN, PlainPriorConfig
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.quantizer import VectorQuantizer

__all__ = ["PRIORS", "QUANTIZERS", "PriorArchitecture", "prior_architecture", "prior_name", "quantizer_class"]


@dataclass(frozen=True)
class PriorArchitecture:
    """A prior's model class and the frozen dataclass config it is built from: ``model(config(**saved))``."""

    model: type[nn.Module]
    config: type


PRIORS: dict[str, PriorArchitecture] = {
    "gated_pixelcnn": PriorArchitecture(GatedPixelCNN, PriorConfig),
    "plain_pixelcnn": PriorArchitecture(PlainPixelCNN, PlainPriorConfig),
}

QUANTIZERS: dict[str, type[nn.Module]] = {
    "vq": VectorQuantizer,
}


def prior_architecture(name: str) -> PriorArchitecture:
    """The registered prior architecture ``name``; a clear error naming the known ones otherwise."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior architecture {name!r}; registered: {', '.join(sorted(PRIORS))} "
                       "(add one to vqvae_prior.registry.PRIORS)")
    return PRIORS[name]


def quantizer_class(name: str) -> type[nn.Module]:
    """The registered quantizer ``name``; a clear error naming the known ones otherwise."""
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; registered: {', '.join(sorted(QUANTIZERS))} "
                         "(add one to vqvae_prior.registry.QUANTIZERS)")
    return QUANTIZERS[name]


def prior_name(model: nn.Module) -> str:
    """The registered name of a prior model's class."""
    for name, arch in PRIORS.items():
        if type(model) is arch.model:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered prior architecture; add it to "
                   "vqvae_prior.registry.PRIORS")
