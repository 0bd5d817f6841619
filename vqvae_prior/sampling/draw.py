"""What every sampler shares: the contract of a prior and of its step-by-step form, and how each code is drawn.

A sampling call's arguments travel as one :class:`Request`. Every sampler draws all its uniform random numbers up
front, ``u = rand(n, h, w)`` (:func:`start`), and picks at
each position the code whose cumulative probability first exceeds u (inverse-CDF sampling,
:func:`sample_from_logits`): given the same generator the samplers return the same indices, and their inner loops
have no host synchronization. Classifier-free guidance (``guidance`` w > 0, for a prior with a null label) draws each
code from ``l_c + w (l_c - l_u)`` (:func:`guide`), the logits of a code map given its label and given the null label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from einops import rearrange
from torch import Tensor

__all__ = ["Prior", "Request", "SamplingState", "check_condition", "doubled", "guide", "logits_of",
           "sample_from_logits", "start"]


class SamplingState(Protocol):
    """A prior computed one raster position at a time (what ``vqvae_prior.sampling.stepwise`` drives)."""

    def start_row(self, above: Tensor | None) -> None:
        """Start a row, given the codes of the row above (n, w), or None in the first row."""

    def logits(self, c: int) -> Tensor:
        """Logits (n, K) at column c of the current row, given every code put before it."""

    def put(self, c: int, codes: Tensor) -> None:
        """The codes (n,) chosen at column c of the current row."""


class Prior(Protocol):
    """What the samplers need of a prior over code maps (``vqvae_prior.prior.GatedPixelCNN`` is one). A step-by-step
    form, for the cached sampler, is registered apart (``vqvae_prior.sampling.cached.STEP_FORMS``)."""

    training: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def null_label(self) -> int | None:
        """The label of the prior's unconditional model (classifier-free guidance), or None."""

    def __call__(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w) of each position of indices (B, h, w) given the positions before it. A prior
        conditioned on a code map (the top level's) also takes ``condition`` (B, h', w') and defines
        ``check_condition(condition, batch_size, shape)`` (``vqvae_prior.prior.AutoregressivePrior``'s)."""

    def check_labels(self, labels: Tensor | list[int] | None, batch_size: int) -> Tensor | None:
        """Labels (B,) on the prior's device, or None for an unconditional prior; a clear error when wrong."""

    def eval(self) -> Prior: ...

    def train(self, mode: bool = True) -> Prior: ...


@dataclass(frozen=True)
class Request:
    """One sampling call, its arguments checked (as ``vqvae_prior.prior.AutoregressivePrior.sample`` takes them):
    n code maps of ``shape`` (h, w); ``labels`` (n,) on the prior's device or None; ``given`` (n, h, w) or None;
    ``condition`` (n, h / scale, w / scale), the top code maps of a prior conditioned on them, or None."""

    n: int
    shape: tuple[int, int]
    labels: Tensor | None = None
    temperature: float = 1.0
    generator: torch.Generator | None = None
    given: Tensor | None = None
    guidance: float = 0.0
    condition: Tensor | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"shape must be (h, w) with h, w >= 1, got {self.shape}")
        if self.given is not None and tuple(self.given.shape) != (self.n, *self.shape):
            raise ValueError(f"given must have shape {(self.n, *self.shape)}, got {tuple(self.given.shape)}")


def check_condition(model: Prior, condition: Tensor | None, n: int, shape: tuple[int, int]) -> Tensor | None:
    """The conditioning code maps checked by the prior (on its device), or None; a prior that defines no
    ``check_condition`` takes none."""
    if hasattr(model, "check_condition"):
        return model.check_condition(condition, n, shape)
    if condition is not None:
        raise ValueError(f"{type(model).__name__} is not conditioned on a code map: pass condition=None")
    return None


def logits_of(model: Prior, indices: Tensor, labels: Tensor | None, condition: Tensor | None) -> Tensor:
    """The prior's logits (B, K, h, w) of indices (B, h, w), given the conditioning maps only where there are
    some."""
    return model(indices, labels) if condition is None else model(indices, labels, condition)


def start(model: Prior, request: Request) -> tuple[Tensor, Tensor, Tensor | None]:
    """The uniforms (h*w, n, 1), the indices (n, h, w) holding the given entries, and the keep mask (n, h, w) or
    None when nothing is given. The uniforms are drawn as (n, h, w) and laid out so that a position's are one
    contiguous slice, in raster order."""
    n, shape, device = request.n, request.shape, model.device
    u = torch.rand((n, *shape), generator=request.generator, device=device)  # (n, h, w)
    u = rearrange(u, "n h w -> (h w) n 1").contiguous()  # (h*w, n, 1)
    if request.given is None:
        return u, torch.zeros((n, *shape), dtype=torch.long, device=device), None
    given = request.given.to(device=device, dtype=torch.long)
    return u, given.clamp(min=0), given >= 0


def sample_from_logits(logits: Tensor, u: Tensor, temperature: float) -> Tensor:
    """Indices (B,) drawn from softmax(logits / temperature) (B, K) by inverse CDF with uniforms u (B,).

    The logits are shifted so that their maximum is 0 before the division: a tiny temperature then sends the others
    to -inf (probability 0) instead of overflowing, and the most likely code is drawn (argmax).
    """
    logits = logits.float()
    if temperature != 1.0:  # at 1 the shift changes nothing that softmax (which shifts by the maximum) computes
        logits = logits - logits.amax(dim=-1, keepdim=True)  # (B, K), max 0
        logits = logits / max(temperature, torch.finfo(torch.float32).tiny)  # not 0 in float32: 0 / 0 would be NaN
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)  # (B, K)
    u = u.reshape(-1, 1).contiguous()  # (B, 1)
    # the first code whose cumulative probability exceeds u: a code of probability 0 is never drawn, even for u = 0
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


def doubled(model: Prior, request: Request) -> tuple[Tensor, Tensor | None]:
    """The labels (2n,) and conditioning maps (2n, h', w') or None of the 2n code maps that guidance runs: the n
    maps given their labels, then the same maps given the null label."""
    labels = torch.cat([request.labels, torch.full_like(request.labels, model.null_label)])  # (2n,)
    return labels, None if request.condition is None else request.condition.repeat(2, 1, 1)


def guide(logits: Tensor, guidance: float) -> Tensor:
    """Guided logits (n, K) from the logits (2n, K) of n code maps given their labels, then given the null label:
    ``l_c + w (l_c - l_u)``."""
    conditional, unconditional = logits.chunk(2)  # (n, K) each
    return conditional + guidance * (conditional - unconditional)
