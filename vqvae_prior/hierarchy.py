"""A prior over two levels of codes (VQ-VAE-2, Razavi et al. 2019): p(top, bottom) = p(top) p(bottom | top).

A two-level VQ-VAE (:class:`vqvae_prior.vqvae2.VQVAE2`) turns an input into a top code map (h / 2, w / 2), its
global structure, and a bottom code map (h, w), its detail. :class:`HierarchicalPrior` models both: a gated PixelCNN
over the top maps and one over the bottom maps conditioned on the whole top map (location-dependent conditioning,
:mod:`vqvae_prior.conditioning`), both class-conditional alike. It is fitted as one model, its loss the mean
negative log-likelihood over every code of both levels (the two networks share no weights, so this is fitting each
on its own, in one loop), and saved as one checkpoint. Sampling draws the top maps, then the bottom maps given them.

Code maps of several levels travel as a tuple, top first: what :meth:`HierarchicalPrior.sample` returns and
:meth:`HierarchicalPrior.nll` takes, and what a two-level VQ-VAE's ``encode_levels`` returns and ``decode_levels``
takes. ``temperature`` and ``guidance`` may be given per level, (top, bottom).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vqvae_prior.prior import GatedPixelCNN, PriorConfig

__all__ = ["HierarchicalPrior", "HierarchicalPriorConfig", "as_levels", "per_level"]


@dataclass(frozen=True)
class HierarchicalPriorConfig:
    """Every field needed to rebuild a :class:`HierarchicalPrior`; saved inside each checkpoint (the two configs as
    dicts, which this class turns back into configs)."""

    top: PriorConfig
    bottom: PriorConfig  # conditioned on the top codes: condition_codebook_size = top.codebook_size

    def __post_init__(self) -> None:
        for name in ("top", "bottom"):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, PriorConfig(**value))
        top, bottom = self.top, self.bottom
        if top.condition_codebook_size:
            raise ValueError("the top level's prior is conditioned on no code map: condition_codebook_size = 0")
        if bottom.condition_codebook_size != top.codebook_size:
            raise ValueError(f"the bottom level's prior must be conditioned on the top codes: condition_codebook_size "
                             f"= {top.codebook_size}, got {bottom.condition_codebook_size}")
        if (top.num_classes, top.label_dropout) != (bottom.num_classes, bottom.label_dropout):
            raise ValueError("both levels' priors take the same classes with the same label dropout")

    @classmethod
    def of(cls, config: PriorConfig, scale: int = 2, **bottom: Any) -> HierarchicalPriorConfig:
        """Both levels with the network of ``config`` (a one-level prior's), the bottom one conditioned on the top
        codes, ``scale`` times coarser, and with the fields given in ``bottom`` changed (its ``num_layers``,
        ``channels``, ...)."""
        bottom = dataclasses.replace(config, condition_codebook_size=config.codebook_size, condition_scale=scale,
                                     **bottom)
        return cls(config, bottom)

    # what the pipeline and the fits read of a prior's config
    @property
    def codebook_size(self) -> int:
        return self.bottom.codebook_size

    @property
    def num_classes(self) -> int:
        return self.top.num_classes

    @property
    def label_dropout(self) -> float:
        return self.top.label_dropout


def as_levels(codes: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Code maps as a tuple of levels, top first: one level's (B, h, w) tensor becomes a tuple of one."""
    return (codes,) if isinstance(codes, Tensor) else tuple(codes)


def per_level(value: float | Sequence[float], levels: int, name: str) -> tuple[float, ...]:
    """A sampling setting for each of ``levels`` levels: one number for all, or one per level (top first)."""
    values = (value,) * levels if isinstance(value, (int, float)) else tuple(value)
    if len(values) != levels:
        raise ValueError(f"{name} takes one number, or one per level ({levels}), got {value!r}")
    return values


class HierarchicalPrior(nn.Module):
    """A gated PixelCNN over top code maps and one over bottom code maps given the top ones.

    ``nll((top (B, h/s, w/s), bottom (B, h, w)), labels)``, ``sample(n, (h, w), ...) -> (top, bottom)``; shapes
    name the bottom (finest) map, the top one ``config.bottom.condition_scale`` = s times smaller.
    """

    levels = 2

    def __init__(self, config: HierarchicalPriorConfig) -> None:
        super().__init__()
        self.config = config
        self.top = GatedPixelCNN(config.top)
        self.bottom = GatedPixelCNN(config.bottom)

    @property
    def device(self) -> torch.device:
        return self.top.device

    @property
    def null_label(self) -> int | None:
        return self.top.null_label

    def check_labels(self, labels: Tensor | None, batch_size: int) -> Tensor | None:
        """Labels (B,) on the model's device, as both levels take them; a clear error when wrong."""
        return self.top.check_labels(labels, batch_size)

    def level_shapes(self, shape: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of each level's code maps, top first, of bottom maps of ``shape``."""
        s = self.config.bottom.condition_scale
        if shape[0] % s or shape[1] % s:
            raise ValueError(f"bottom code maps {tuple(shape)} must have sides divisible by {s}")
        return [(shape[0] // s, shape[1] // s), (shape[0], shape[1])]

    def level_bits(self, codes: Sequence[Tensor], labels: Tensor | None = None) -> list[Tensor]:
        """Mean negative log2-likelihood per code of each level's maps (scalars), top first."""
        top, bottom = codes
        return [self.top.bits_per_code(top, labels), self.bottom.bits_per_code(bottom, labels, top)]

    def nll(self, codes: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood in nats per code (a scalar) over every code of both levels: the top maps
        (B, h', w') and the bottom maps (B, h, w) given them. Label dropout, in training, as each level's prior
        does it (``vqvae_prior.prior.AutoregressivePrior.nll``)."""
        top, bottom = codes
        n_top, n_bottom = top[0].numel(), bottom[0].numel()
        nll_top, nll_bottom = self.top.nll(top, labels), self.bottom.nll(bottom, labels, top)
        return (nll_top * n_top + nll_bottom * n_bottom) / (n_top + n_bottom)

    def bits_per_code(self, codes: Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Mean negative log2-likelihood per code (a scalar) over every code of both levels."""
        return self.nll(codes, labels) / math.log(2)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        shape: tuple[int, int],
        labels: Tensor | list[int] | None = None,
        temperature: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
        given: Sequence[Tensor | None] | None = None,
        method: str = "auto",
        guidance: float | Sequence[float] = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """Sample n top code maps, then n bottom code maps of ``shape`` (h, w) given them.

        Arguments as :meth:`vqvae_prior.prior.AutoregressivePrior.sample`, but: ``temperature`` and ``guidance`` one
        number or one per level (top, bottom); ``given`` None or (top (n, h', w'), bottom (n, h, w)), either None,
        entries >= 0 kept and conditioned on.

        Returns:
            (top (n, h', w'), bottom (n, h, w)) int64 code maps.
        """
        temperatures, guidances = per_level(temperature, 2, "temperature"), per_level(guidance, 2, "guidance")
        top_given, bottom_given = (None, None) if given is None else given
        top_shape, bottom_shape = self.level_shapes(shape)
        top = self.top.sample(n, top_shape, labels, temperatures[0], generator, top_given, method, guidances[0])
        bottom = self.bottom.sample(n, bottom_shape, labels, temperatures[1], generator, bottom_given, method,
                                    guidances[1], condition=top)
        return top, bottom

    def compile(self, *args, **kwargs) -> None:
        """``torch.compile`` each level's prior in place (``nn.Module.compile``): this module has no forward of its
        own, the levels' forward passes are what training and sampling call."""
        self.top.compile(*args, **kwargs)
        self.bottom.compile(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"

