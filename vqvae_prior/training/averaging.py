"""An exponential moving average of a model's weights, kept beside the fit (Polyak averaging).

The PixelCNN papers evaluate and sample their priors with averaged weights (PixelCNN++, Salimans et al. 2017, and
PixelSNAIL, Chen et al. 2018: Polyak averaging). :class:`WeightAverage` keeps the average in a
``torch.optim.swa_utils.AveragedModel``, updated after every optimizer step with the decay
``min(decay, (1 + n) / (10 + n))`` at its n-th update (as TensorFlow's ``ExponentialMovingAverage`` with
``num_updates``), so that the first weights, far from the fitted ones, are forgotten within the first epoch. The
fit trains the model's own weights; after each epoch the average is put in the model (:meth:`WeightAverage.applied`)
for the held-out metrics, the pictures and the checkpoints, so ``prior.pt`` holds the average, and
``prior-last.pt`` also the trained weights and the average's state, from which ``--resume`` goes on exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``model``'s parameters (its buffers, if any, are the model's own).

    Args:
        model: the module being trained (not a DDP wrapper: its weights are the same in every process).
        decay: in (0, 1): the weight of the average at each update once warmed up (0.999: about the last 1,000
            steps).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the decay of a weight average must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=False)
        self.updates = 0  # AveragedModel's n_averaged, kept on the host: no read of the device at each step

    def _lerp(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        """The n-th update (n >= 1) moves the average towards the weights by ``1 - min(decay, (1 + n) / (10 + n))``."""
        n = self.updates
        torch._foreach_lerp_(averaged, current, 1 - min(self.decay, (1 + n) / (10 + n)))

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: move the average towards the model's weights (the first update copies them)."""
        self.averaged.update_parameters(self.model)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[dict[str, Tensor]]:
        """The model with the average's weights inside the block, its trained weights put back after it; yields the
        trained weights (a copy)."""
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        with torch.no_grad():
            torch._foreach_copy_(list(self.model.parameters()), list(self.averaged.module.parameters()))
        try:
            yield trained
        finally:
            self.model.load_state_dict(trained)

    def state_dict(self) -> dict[str, Any]:
        """The average's weights and its number of updates."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
        self.updates = int(self.averaged.n_averaged)
