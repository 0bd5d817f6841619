"""Architectures by name: a checkpoint records the names, loading looks them up here and rebuilds the classes.

- :data:`AUTOENCODERS`: the VQ-VAEs, one level (``"vqvae"``) or two (``"vqvae2"``). A VQ-VAE checkpoint records its
  architecture's name (``"arch"``) beside its config; the entry gives the model class and its config class (a
  frozen dataclass).
- :data:`PRIORS`: prior architectures, recorded and looked up the same way.
- :data:`QUANTIZERS`: the VQ-VAEs' quantizers. ``VQVAEConfig.quantizer`` names one; the class is built with
  ``cls.from_config(vqvae_config)`` (a two-level VQ-VAE builds one per level). The table is defined in
  :mod:`vqvae_prior.quantizers`, where the VQ-VAEs look it up, and is the same dictionary here.
- :data:`MODALITIES`: kinds of data (:mod:`vqvae_prior.modality`). A data set's spec names its modality
  (``"modality"``), and :func:`modality_of_spec` rebuilds the object from the spec.

A new prior is one module plus one entry in :data:`PRIORS`; it needs what ``vqvae_prior.sampling.draw.Prior`` lists
(``forward(indices, labels) -> logits``, ``check_labels``, ``device``) and a ``config`` attribute;
``vqvae_prior.prior.AutoregressivePrior`` gives most of it. A step-by-step form for the cached sampler is optional,
one more entry in ``vqvae_prior.sampling.cached.STEP_FORMS``. A new quantizer is one module plus one entry in
:data:`QUANTIZERS`; it needs ``from_config``, ``forward(z_e) -> QuantizerOutput`` in training and eval,
``encode(z_e) -> indices`` and ``decode(indices) -> quantized maps`` (see ``vqvae_prior.quantizer``). A new VQ-VAE is
one module plus one entry in :data:`AUTOENCODERS`; it needs ``forward(x) -> VQVAEOutput``, a ``config`` attribute
and the level interface of ``vqvae_prior.vqvae`` (``levels``, ``encode_levels``, ``decode_levels``,
``level_shapes``, ``code_shape``, ``decoded_shape``); ``fit_vqvae --levels N`` fits the entry that
``vqvae_prior.training.vqvae_fit.ARCH_OF_LEVELS`` names for N. Code outside the package may add entries to these
dictionaries before loading its checkpoints.

A new modality is one class (:class:`vqvae_prior.modality.Modality`) plus one entry in :data:`MODALITIES`.

Checkpoints written before architecture names existed name none: they hold today's classes, ``"vqvae"``,
``"gated_pixelcnn"`` and ``"vq"`` (``vqvae_prior.checkpoint`` fills the names in when it loads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from vqvae_prior.audio import Spectrograms
from vqvae_prior.errors import DataError
from vqvae_prior.hierarchy import HierarchicalPrior, HierarchicalPriorConfig
from vqvae_prior.modality import Images, Modality
from vqvae_prior.plain_prior import PlainPixelCNN, PlainPriorConfig
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.quantizers import QUANTIZERS, quantizer_class
from vqvae_prior.vqvae import VQVAE, VQVAEConfig
from vqvae_prior.vqvae2 import VQVAE2, VQVAE2Config

__all__ = ["ARCHITECTURES", "AUTOENCODERS", "MODALITIES", "PRIORS", "QUANTIZERS", "Architecture",
           "AutoencoderArchitecture", "PriorArchitecture", "autoencoder_architecture", "autoencoder_name",
           "modality_class", "modality_of_spec", "prior_architecture", "prior_class", "prior_name", "quantizer_class"]

T = TypeVar("T")


@dataclass(frozen=True)
class Architecture:
    """A model class and the frozen dataclass config it is built from: ``model(config(**saved))``."""

    model: type[nn.Module]
    config: type


PriorArchitecture = AutoencoderArchitecture = Architecture  # the entries of PRIORS and of AUTOENCODERS

AUTOENCODERS: dict[str, AutoencoderArchitecture] = {
    "vqvae": AutoencoderArchitecture(VQVAE, VQVAEConfig),
    "vqvae2": AutoencoderArchitecture(VQVAE2, VQVAE2Config),
}

PRIORS: dict[str, PriorArchitecture] = {
    "gated_pixelcnn": PriorArchitecture(GatedPixelCNN, PriorConfig),
    "plain_pixelcnn": PriorArchitecture(PlainPixelCNN, PlainPriorConfig),
    "hierarchical": PriorArchitecture(HierarchicalPrior, HierarchicalPriorConfig),  # two levels of codes
}

# the short names that fit_prior --arch takes, of entries of PRIORS
ARCHITECTURES = {"gated": "gated_pixelcnn", "plain": "plain_pixelcnn"}

MODALITIES: dict[str, type[Modality]] = {
    "image": Images,
    "audio": Spectrograms,
}


def _entry(table: dict[str, T], name: str, what: str, table_name: str, error: type[Exception] = ValueError) -> T:
    """``table[name]``; a clear error naming the known entries otherwise."""
    if name not in table:
        raise error(f"unknown {what} {name!r}; registered: {', '.join(sorted(table))} "
                    f"(add one to vqvae_prior.registry.{table_name})")
    return table[name]


def _name_of(table: dict[str, Architecture], model: nn.Module, what: str, table_name: str) -> str:
    """The name under which ``table`` registers the class of ``model``."""
    for name, arch in table.items():
        if type(model) is arch.model:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered {what}; add it to vqvae_prior.registry.{table_name}")


def autoencoder_architecture(name: str) -> AutoencoderArchitecture:
    """The registered VQ-VAE architecture ``name``; a clear error naming the known ones otherwise."""
    return _entry(AUTOENCODERS, name, "VQ-VAE architecture", "AUTOENCODERS")


def autoencoder_name(model: nn.Module) -> str:
    """The registered name of a VQ-VAE model's class."""
    return _name_of(AUTOENCODERS, model, "VQ-VAE architecture", "AUTOENCODERS")


def prior_architecture(name: str) -> PriorArchitecture:
    """The registered prior architecture ``name``; a clear error naming the known ones otherwise."""
    return _entry(PRIORS, name, "prior architecture", "PRIORS")


def prior_class(config: Any) -> type[nn.Module]:
    """The registered prior model built from configs of ``config``'s class."""
    for arch in PRIORS.values():
        if type(config) is arch.config:
            return arch.model
    raise ValueError(f"{type(config).__name__} is the config of no registered prior architecture")


def prior_name(model: nn.Module) -> str:
    """The registered name of a prior model's class."""
    return _name_of(PRIORS, model, "prior architecture", "PRIORS")


def modality_class(name: str) -> type[Modality]:
    """The registered modality ``name``; a clear error naming the known ones otherwise."""
    return _entry(MODALITIES, name, "modality", "MODALITIES", DataError)


def modality_of_spec(spec: dict[str, Any]) -> Modality:
    """The modality of a data set, rebuilt from its spec. A spec written before specs named their modality is of
    spectrograms when it holds spectrogram settings, else of images."""
    name = spec.get("modality") or (Spectrograms.name if "spectrogram" in spec else Images.name)
    return modality_class(name).from_spec(spec)
