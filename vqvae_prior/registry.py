"""Architectures by name: a checkpoint records the names, loading looks them up here and rebuilds the classes.

- :data:`PRIORS`: prior architectures. A prior checkpoint records its architecture's name (``"arch"``) beside its
  config; the entry gives the model class and its config class (a frozen dataclass).
- :data:`QUANTIZERS`: the VQ-VAE's quantizers. ``VQVAEConfig.quantizer`` names one; the class is built with
  ``cls.from_config(vqvae_config)``.
- :data:`MODALITIES`: kinds of data (:mod:`vqvae_prior.modality`). A data set's spec names its modality
  (``"modality"``), and :func:`modality_of_spec` rebuilds the object from the spec.

A new prior is one module plus one entry in :data:`PRIORS`; it needs what ``vqvae_prior.sampling.draw.Prior`` lists
(``forward(indices, labels) -> logits``, ``check_labels``, ``device``) and a ``config`` attribute;
``vqvae_prior.prior.AutoregressivePrior`` gives most of it. A step-by-step form for the cached sampler is optional,
one more entry in ``vqvae_prior.sampling.cached.STEP_FORMS``. A new quantizer is one module plus one entry in
:data:`QUANTIZERS`; it needs ``from_config``, ``forward(z_e) -> QuantizerOutput`` in training and eval,
``encode(z_e) -> indices`` and ``decode(indices) -> quantized maps`` (see ``vqvae_prior.quantizer``). Code outside
the package may add entries to both dictionaries before loading its checkpoints.

A new modality is one class (:class:`vqvae_prior.modality.Modality`) plus one entry in :data:`MODALITIES`.

Checkpoints written before architecture names existed name none: they hold today's classes,
``"gated_pixelcnn"`` and ``"vq"`` (``vqvae_prior.checkpoint`` fills the names in when it loads them).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from torch import nn

from vqvae_prior.audio import Spectrograms
from vqvae_prior.errors import DataError
from vqvae_prior.hierarchy import HierarchicalPrior, HierarchicalPriorConfig
from vqvae_prior.modality import Images, Modality
from vqvae_prior.plain_prior import PlainPixelCNN, PlainPriorConfig
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.quantizer import VectorQuantizer

__all__ = ["ARCHITECTURES", "MODALITIES", "PRIORS", "QUANTIZERS", "PriorArchitecture", "modality_class", "modality_of_spec",
           "prior_architecture", "prior_class", "prior_name", "quantizer_class"]


@dataclass(frozen=True)
class PriorArchitecture:
    """A prior's model class and the frozen dataclass config it is built from: ``model(config(**saved))``."""

    model: type[nn.Module]
    config: type


PRIORS: dict[str, PriorArchitecture] = {
    "gated_pixelcnn": PriorArchitecture(GatedPixelCNN, PriorConfig),
    "plain_pixelcnn": PriorArchitecture(PlainPixelCNN, PlainPriorConfig),
    "hierarchical": PriorArchitecture(HierarchicalPrior, HierarchicalPriorConfig),  # two levels of codes
}

# the short names that fit_prior --arch takes, of entries of PRIORS
ARCHITECTURES = {"gated": "gated_pixelcnn", "plain": "plain_pixelcnn"}

QUANTIZERS: dict[str, type[nn.Module]] = {
    "vq": VectorQuantizer,
}

MODALITIES: dict[str, type[Modality]] = {
    "image": Images,
    "audio": Spectrograms,
}


def prior_architecture(name: str) -> PriorArchitecture:
    """The registered prior architecture ``name``; a clear error naming the known ones otherwise."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior architecture {name!r}; registered: {', '.join(sorted(PRIORS))} "
                       "(add one to vqvae_prior.registry.PRIORS)")
    return PRIORS[name]


def prior_class(config: Any) -> type[nn.Module]:
    """The registered prior model built from configs of ``config``'s class."""
    for arch in PRIORS.values():
        if type(config) is arch.config:
            return arch.model
    raise ValueError(f"{type(config).__name__} is the config of no registered prior architecture")


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


def modality_class(name: str) -> type[Modality]:
    """The registered modality ``name``; a clear error naming the known ones otherwise."""
    if name not in MODALITIES:
        raise DataError(f"unknown modality {name!r}; registered: {', '.join(sorted(MODALITIES))} "
                        "(add one to vqvae_prior.registry.MODALITIES)")
    return MODALITIES[name]


def modality_of_spec(spec: dict[str, Any]) -> Modality:
    """The modality of a data set, rebuilt from its spec. A spec written before specs named their modality is of
    spectrograms when it holds spectrogram settings, else of images."""
    name = spec.get("modality") or (Spectrograms.name if "spectrogram" in spec else Images.name)
    return modality_class(name).from_spec(spec)
