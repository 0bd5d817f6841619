"""The driver of a prior's step-by-step form (a ``draw.SamplingState``): the loop of the cached and fused samplers.

In raster order it hands the state the codes of the row above at the start of each row, asks for the logits at each
position and hands back the code chosen there; under classifier-free guidance it drives the state of 2n code maps
(:class:`GuidedState`). On CUDA rows 0 and 1 run eagerly (row 1 also warms up every kernel), then one row's work is
captured as a CUDA graph over static buffers and replayed for each later row: the same kernels on the same numbers,
without launching each from Python.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from vqvae_prior.sampling.draw import Prior, Request, SamplingState, doubled, guide, sample_from_logits, start

__all__ = ["CUDA_GRAPHS", "GuidedState", "StateFactory", "sample_stepwise"]

#: On CUDA the cached and fused samplers capture the work of one row as a CUDA graph and replay it for every later
#: row (no kernel launches from Python); False runs every row eagerly (benchmarks compare the two).
CUDA_GRAPHS = True

#: A step-by-step form's constructor: ``(model, n, shape, labels) -> state`` for n code maps of shape (h, w); for a
#: prior conditioned on a code map it is also given ``condition=`` (n, h / scale, w / scale), by keyword.
StateFactory = Callable[..., SamplingState]


def make_state(make: StateFactory, model: Prior, n: int, shape: tuple[int, int], labels: Tensor | None,
               condition: Tensor | None) -> SamplingState:
    """The state ``make`` builds for n code maps, given their conditioning maps only where there are some (a form
    of a prior without them need not take the argument)."""
    return make(model, n, shape, labels) if condition is None else make(model, n, shape, labels, condition=condition)


class GuidedState:
    """A :class:`SamplingState` of n code maps under classifier-free guidance, from the prior's own state over 2n:
    the n maps given their labels, then the same maps given the null label."""

    def __init__(self, make: StateFactory, model: Prior, request: Request) -> None:
        labels, condition = doubled(model, request)  # (2n,), (2n, h', w') or None
        self.inner = make_state(make, model, 2 * request.n, request.shape, labels, condition)
        self.guidance = request.guidance

    def start_row(self, above: Tensor | None) -> None:
        self.inner.start_row(None if above is None else above.repeat(2, 1))  # (2n, w)

    def logits(self, c: int) -> Tensor:
        return guide(self.inner.logits(c), self.guidance)  # (n, K)

    def put(self, c: int, codes: Tensor) -> None:
        self.inner.put(c, codes.repeat(2))  # (2n,)


def sample_stepwise(make: StateFactory, model: Prior, request: Request) -> Tensor:
    """Indices (n, h, w) drawn by driving the state ``make`` builds: the same samples as the reference sampler, to
    float rounding of the logits."""
    n, temperature = request.n, request.temperature
    with torch.inference_mode():
        u, indices, keep = start(model, request)
        if request.guidance > 0:
            state: SamplingState = GuidedState(make, model, request)
        else:
            state = make_state(make, model, n, request.shape, request.labels, request.condition)
        H, W = request.shape
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
