"""Samplers for autoregressive priors over code maps: the reference sampler and the cached ("fast") sampler.

Both work with any prior that follows :class:`Prior`; this module imports no model. The reference sampler runs the
whole network once per position (h * w full passes) and reads the logits of the current position: it is the
specification. The cached sampler (Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive
Models") drives the prior's own step-by-step form, a :class:`SamplingState` from ``prior.sampling_state``, in
raster order: at the start of each row it hands the state the codes of the row above, at each position it asks
for the logits and then hands back the code chosen there. For the gated PixelCNN that is about one full pass of
arithmetic per sample (each layer caches its input rows: ``vqvae_prior.layers.GatedLayerState``).

The fused sampler is the cached sampler driving the prior's ``fused_sampling_state`` instead: the same
step-by-step form with each position's work in one GPU kernel (``vqvae_prior.fused``). On CUDA the cached and fused
samplers also capture one row's work as a CUDA graph and replay it for every later row (:func:`sample_cached`).

Both samplers draw all their uniform random numbers up front, ``u = rand(n, h, w)``, and pick at each position the
code whose cumulative probability first exceeds u (inverse-CDF sampling): given the same generator they return the
same indices, and the inner loops have no host synchronization. They run under ``torch.inference_mode`` (less
per-operator overhead, the same arithmetic) and return an ordinary tensor.

Classifier-free guidance (``guidance`` w > 0, for a prior with a null label): both samplers run the prior on 2n code
maps, the n given their labels and the same n given the null label, and draw each code from
``l_c + w (l_c - l_u)`` (:func:`guide`); the cached sampler through :class:`GuidedState`, which wraps the prior's
own state.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Protocol

import torch
from einops import rearrange
from torch import Tensor

from vqvae_prior.errors import UsageError

__all__ = [
    "METHODS", "GuidedState", "Prior", "SamplingState", "guide", "resolve_method", "sample", "sample_cached",
    "sample_from_logits", "sample_reference",
]

METHODS = ("auto", "fused", "cached", "reference")

#: On CUDA the cached and fused samplers capture the work of one row as a CUDA graph and replay it for every later
#: row (no kernel launches from Python); False runs every row eagerly (benchmarks compare the two).
CUDA_GRAPHS = True


class SamplingState(Protocol):
    """A prior computed one raster position at a time (what :func:`sample_cached` drives)."""

    def start_row(self, above: Tensor | None) -> None:
        """Start a row, given the codes of the row above (n, w), or None in the first row."""

    def logits(self, c: int) -> Tensor:
        """Logits (n, K) at column c of the current row, given every code put before it."""

    def put(self, c: int, codes: Tensor) -> None:
        """The codes (n,) chosen at column c of the current row."""


class Prior(Protocol):
    """What the samplers need of a prior over code maps (``vqvae_prior.prior.GatedPixelCNN`` is one)."""

    training: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def null_label(self) -> int | None:
        """The label of the prior's unconditional model (classifier-free guidance), or None."""

    def __call__(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w) of each position of indices (B, h, w) given the positions before it."""

    def check_labels(self, labels: Tensor | list[int] | None, batch_size: int) -> Tensor | None:
        """Labels (B,) on the prior's device, or None for an unconditional prior; a clear error when wrong."""

    def sampling_state(self, n: int, shape: tuple[int, int], labels: Tensor | None) -> SamplingState:
        """The prior's step-by-step form, for :func:`sample_cached` (eval mode). Optional: a prior without it is
        sampled by :func:`sample_reference`."""

    def fused_sampling_state(self, n: int, shape: tuple[int, int], labels: Tensor | None) -> SamplingState:
        """The same with each position's work fused into one GPU kernel (optional; method "fused")."""

    def eval(self) -> Prior: ...

    def train(self, mode: bool = True) -> Prior: ...


def sample(
    model: Prior,
    n: int,
    shape: tuple[int, int],
    labels: Tensor | list[int] | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
    method: str = "auto",
    guidance: float = 0.0,
) -> Tensor:
    """Sample n code maps (n, h, w) from ``model`` in eval mode (its mode is restored afterwards).

    Arguments as ``vqvae_prior.prior.AutoregressivePrior.sample``; ``method`` is "fused", "cached", "reference" or
    "auto" (:func:`resolve_method`).
    """
    method = resolve_method(model, method)
    labels = model.check_labels(labels, n)
    if not (math.isfinite(guidance) and guidance >= 0):
        raise UsageError(f"guidance must be a finite number >= 0, got {guidance}")
    if guidance > 0 and (labels is None or model.null_label is None):
        raise UsageError(
            "guidance > 0 needs a class-conditional prior fitted with label dropout (fit_prior --label-dropout), "
            f"and labels; this prior has {'no null label' if labels is not None else 'no labels'}"
        )
    was_training = model.training
    model.eval()
    try:
        if method == "reference":
            return sample_reference(model, n, tuple(shape), labels, temperature, generator, given, guidance)
        return sample_cached(model, n, tuple(shape), labels, temperature, generator, given, guidance,
                             fused=method == "fused")
    finally:
        model.train(was_training)


def resolve_method(model: Prior, method: str) -> str:
    """The sampler, "fused", "cached" or "reference", that ``method`` names for this prior; a clear error for a
    method that does not exist or that the prior cannot run. "auto" is fused on CUDA where the prior has a fused
    form and Triton is installed, else cached where the prior has a step-by-step form, else the reference."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    cached, fused = hasattr(model, "sampling_state"), hasattr(model, "fused_sampling_state")
    if method == "auto":
        if fused and model.device.type == "cuda" and importlib.util.find_spec("triton") is not None:
            return "fused"
        return "cached" if cached else "reference"
    if method in ("cached", "fused") and not (fused if method == "fused" else cached):
        raise UsageError(f"{type(model).__name__} has no {'fused ' if method == 'fused' else ''}step-by-step form "
                         f"for the {method} sampler: sample it with method 'reference' (or 'auto')")
    return method


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


def guide(logits: Tensor, guidance: float) -> Tensor:
    """Guided logits (n, K) from the logits (2n, K) of n code maps given their labels, then given the null label:
    ``l_c + w (l_c - l_u)``."""
    conditional, unconditional = logits.chunk(2)  # (n, K) each
    return conditional + guidance * (conditional - unconditional)


class GuidedState:
    """A :class:`SamplingState` of n code maps under classifier-free guidance, from the prior's own state over 2n:
    the n maps given their labels, then the same maps given the null label."""

    def __init__(
        self, make: Callable[..., SamplingState], null_label: int, n: int, shape: tuple[int, int], labels: Tensor,
        guidance: float,
    ) -> None:
        """``make``: the prior's ``sampling_state`` (or ``fused_sampling_state``), built here for 2n maps."""
        null = torch.full_like(labels, null_label)  # (n,)
        self.inner = make(2 * n, shape, torch.cat([labels, null]))
        self.guidance = guidance

    def start_row(self, above: Tensor | None) -> None:
        self.inner.start_row(None if above is None else above.repeat(2, 1))  # (2n, w)

    def logits(self, c: int) -> Tensor:
        return guide(self.inner.logits(c), self.guidance)  # (n, K)

    def put(self, c: int, codes: Tensor) -> None:
        self.inner.put(c, codes.repeat(2))  # (2n,)


def _start(
    model: Prior, n: int, shape: tuple[int, int], temperature: float, generator, given: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Checked arguments -> (uniforms (h*w, n, 1), indices (n, h, w) holding the given entries, keep mask (n, h, w)
    or None when nothing is given). The uniforms are drawn as (n, h, w) and laid out so that a position's are one
    contiguous slice, in raster order."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (h, w) with h, w >= 1, got {shape}")
    device = model.device
    u = torch.rand((n, *shape), generator=generator, device=device)  # (n, h, w)
    u = rearrange(u, "n h w -> (h w) n 1").contiguous()  # (h*w, n, 1)
    if given is None:
        return u, torch.zeros((n, *shape), dtype=torch.long, device=device), None
    if tuple(given.shape) != (n, *shape):
        raise ValueError(f"given must have shape {(n, *shape)}, got {tuple(given.shape)}")
    given = given.to(device=device, dtype=torch.long)
    return u, given.clamp(min=0), given >= 0


def _choose(indices: Tensor, keep: Tensor | None, r: int, c: int, drawn: Tensor) -> Tensor:
    """Write the drawn codes (n,) at (r, c), except where an entry is given; returns the codes now there."""
    if keep is not None:
        drawn = torch.where(keep[:, r, c], indices[:, r, c], drawn)
    indices[:, r, c] = drawn
    return drawn


def sample_reference(
    model: Prior,
    n: int,
    shape: tuple[int, int],
    labels: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
    guidance: float = 0.0,
) -> Tensor:
    """Reference sampler: one full forward pass per position. Returns indices (n, h, w); see :func:`sample`."""
    with torch.inference_mode():
        u, indices, keep = _start(model, n, shape, temperature, generator, given)
        if guidance > 0:
            labels = torch.cat([labels, torch.full_like(labels, model.null_label)])  # (2n,)
        for r in range(shape[0]):
            for c in range(shape[1]):
                if guidance > 0:
                    logits = guide(model(indices.repeat(2, 1, 1), labels)[:, :, r, c], guidance)  # (n, K)
                else:
                    logits = model(indices, labels)[:, :, r, c]  # (n, K)
                _choose(indices, keep, r, c, sample_from_logits(logits, u[r * shape[1] + c], temperature))
    return indices.clone()  # an ordinary tensor, usable outside inference mode


def sample_cached(
    model: Prior,
    n: int,
    shape: tuple[int, int],
    labels: Tensor | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
    guidance: float = 0.0,
    fused: bool = False,
) -> Tensor:
    """Cached sampler: the prior's :class:`SamplingState` (``fused``: its fused form) driven in raster order. Same
    contract and same samples as :func:`sample_reference` (to float tolerance of the logits).

    On CUDA (with :data:`CUDA_GRAPHS`) rows 0 and 1 run eagerly (row 1 also warms up every kernel), then one row's
    work is captured as a CUDA graph over static buffers and replayed for each later row: the same kernels on the
    same numbers, without launching each from Python."""
    with torch.inference_mode():
        u, indices, keep = _start(model, n, shape, temperature, generator, given)
        make = model.fused_sampling_state if fused else model.sampling_state
        if guidance > 0:
            state: SamplingState = GuidedState(make, model.null_label, n, shape, labels, guidance)
        else:
            state = make(n, shape, labels)
        H, W = shape
        u = u.view(H, W, n, 1)  # (h, w, n, 1)
        graph = _use_graphs(indices) and H > 2
        for r in range(2 if graph else H):
            _sample_row(state, indices[:, r - 1] if r > 0 else None, u[r], indices[:, r],
                        None if keep is None else keep[:, r], temperature)
        if graph:
            _replay_rows(state, indices, keep, u, temperature)
    return indices.clone()  # an ordinary tensor, usable outside inference mode


def _sample_row(
    state: SamplingState, above: Tensor | None, u: Tensor, row: Tensor, keep: Tensor | None, temperature: float
) -> None:
    """Sample one row in place: ``row`` (n, w) holds the given codes where ``keep`` (n, w) and receives the drawn
    ones elsewhere; ``above`` (n, w) the codes of the row above (None in the first row), u (w, n, 1) the uniforms."""
    state.start_row(above)
    for c, (column, u_c) in enumerate(zip(row.unbind(1), u.unbind(0))):  # (n,), (n, 1): views, made once a row
        drawn = sample_from_logits(state.logits(c), u_c, temperature)  # (n,)
        if keep is not None:
            drawn = torch.where(keep[:, c], column, drawn)
        column.copy_(drawn)
        state.put(c, drawn)


def _use_graphs(indices: Tensor) -> bool:
    """Whether rows are replayed as CUDA graphs: on CUDA, unless :data:`CUDA_GRAPHS` is off."""
    return CUDA_GRAPHS and indices.is_cuda


def _capture(work: Callable[[], None]) -> Callable[[], None]:
    """``work``'s kernels captured once as a CUDA graph (not run); returns the graph's replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        work()
    return graph.replay


def _replay_rows(state: SamplingState, indices: Tensor, keep: Tensor | None, u: Tensor, temperature: float) -> None:
    """Rows 2 .. h-1 of ``indices`` (n, h, w): one row's work captured (:func:`_capture`), replayed for each row
    after copying its inputs into the capture's static buffers. The state must keep its buffers in place."""
    above, row, u_row = indices[:, 1].clone(), indices[:, 2].clone(), u[2].clone()  # static buffers of the graph
    keep_row = None if keep is None else keep[:, 2].clone()
    replay = _capture(lambda: _sample_row(state, above, u_row, row, keep_row, temperature))
    for r in range(2, indices.shape[1]):
        above.copy_(indices[:, r - 1])
        row.copy_(indices[:, r])
        u_row.copy_(u[r])
        if keep_row is not None:
            keep_row.copy_(keep[:, r])
        replay()
        indices[:, r] = row
