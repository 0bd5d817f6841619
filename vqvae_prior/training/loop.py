"""The fit loop: one loop trains the VQ-VAE, the prior and the judges' classifiers.

What is trained, and how, is a :class:`Task`: its model, the batches of an epoch, the loss of a batch, and (for a
fit into an output folder) the epoch's metrics and pictures. :func:`train` runs the epochs: each batch's loss goes
through mixed precision (:class:`~vqvae_prior.training.steps.MixedPrecision`), one optimizer and one schedule step,
and the watch for a loss that is no longer finite (:class:`~vqvae_prior.training.steps.FiniteLoss`). Given an output
folder (:class:`~vqvae_prior.training.run_folder.RunFolder`), every epoch also ends with the held-out metrics, the
pictures, and the checkpoints, and the fit stops early once the held-out metric has not improved for ``patience``
epochs. :func:`fit_in_folder` sets up such a fit (optimizer, schedule, restored state, ``torch.compile``, DDP)
from its options.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from vqvae_prior.training.averaging import WeightAverage
from vqvae_prior.training.distributed import Distributed
from vqvae_prior.training.options import FitOptions
from vqvae_prior.training.resume import restore, training_state
from vqvae_prior.training.run_folder import RunFolder
from vqvae_prior.training.steps import FiniteLoss, MixedPrecision, adam, lr_schedule

__all__ = ["Task", "fit_in_folder", "train"]

PROGRESS_EVERY = 20  # steps between progress-bar updates: reading a loss value waits for the device


class Task(Protocol):
    """What :func:`train` trains.

    Attributes:
        model: the module whose parameters are trained.
        steps_per_epoch: the number of batches of an epoch.
        train_method: the model's method that :meth:`loss` calls through DDP under torchrun ("forward", "nll").
        info: what the checkpoints hold beside the model (data spec, label names, options, ...).
    """

    model: nn.Module
    steps_per_epoch: int
    train_method: str
    info: dict[str, Any]

    def batches(self, generator: torch.Generator, dist: Distributed) -> Iterator[Any]:
        """The training batches of one epoch, on the device, shuffled by ``generator`` (this process's shard)."""

    def loss(self, forward: Callable[..., Any], batch: Any) -> Tensor:
        """The training loss of a batch; ``forward`` is the model's ``train_method``, through DDP when wrapped."""

    def progress(self, loss: Tensor) -> dict[str, str]:
        """What the progress bar shows of a step (reads the device)."""

    def epoch_metrics(self, epoch: int, dist: Distributed) -> dict[str, Any]:
        """After epoch ``epoch`` (from 1): its training statistics and the held-out metrics (summed over the
        processes)."""

    def pictures(self, out: Path) -> None:
        """After an epoch, in the process that writes: the pictures of the model (samples, reconstructions)."""


def train(
    task: Task,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    epochs: int,
    precision: MixedPrecision,
    run: RunFolder | None = None,
    dist: Distributed = Distributed(),
    patience: int | None = None,
    progress: bool = False,
    forward: Callable[..., Any] | None = None,
    average: WeightAverage | None = None,
) -> list[dict[str, Any]]:
    """Train ``task`` for ``epochs`` epochs (from the last one ``run`` holds); returns the metrics of each epoch
    done (``run``'s history; none without a folder).

    Args:
        generator: draws the batch order (and a task's augmentation), saved with the checkpoints.
        run: the output folder, whose checkpoints every epoch writes; None: train only (no metrics).
        patience: stop once the held-out metric has not improved for this many epochs (None: never).
        progress: show a progress bar (in the process that writes).
        forward: the model's training call (``getattr(model, task.train_method)`` when None).
        average: a moving average of the weights, updated after every step; the held-out metrics, the pictures and
            the checkpoints are then the average's, and ``KIND-last.pt`` also holds the trained weights.
    """
    model, device = task.model, next(task.model.parameters()).device
    forward = forward or getattr(model, task.train_method)
    after = run.last_good if run is not None else (lambda: "nothing was written")
    for epoch in range(run.epochs_done if run is not None else 0, epochs):
        if run is not None and run.patience_spent(patience):
            break
        model.train()
        t0 = time.perf_counter()
        bar = tqdm(task.batches(generator, dist), total=task.steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not progress or not dist.is_main)
        finite = FiniteLoss(epoch + 1, task.steps_per_epoch, device, after)
        for step, batch in enumerate(bar, 1):
            with precision.autocast():
                loss = task.loss(forward, batch)
            precision.step(loss, optimizer)
            scheduler.step()
            if average is not None:
                average.update()
            finite.update(loss, step)
            if not bar.disable and bar.n % PROGRESS_EVERY == 0:
                bar.set_postfix(task.progress(loss))
        finite.check()
        if run is None:
            continue
        seconds = time.perf_counter() - t0
        with average.applied() if average is not None else contextlib.nullcontext() as trained:
            metrics = {"epoch": epoch + 1, "train_seconds": seconds, **task.epoch_metrics(epoch + 1, dist)}
            finite.check_epoch(model, run.metric, metrics[run.metric])
            dist.check_same(model.state_dict())  # the same model in every process (the quantizer's state too)
            if dist.is_main:
                task.pictures(run.out)
            state = training_state(optimizer, scheduler, generator, precision)
            if average is not None:
                state |= {"trained_model": trained, "average": average.state_dict()}
            metrics = run.save_epoch(model, metrics, task.info, state)
        dist.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return run.history if run is not None else []


def fit_in_folder(
    task: Task, options: FitOptions, run: RunFolder, dist: Distributed, state: dict[str, Any] | None,
    average_decay: float = 0.0, **expected: Any,
) -> dict[str, Any]:
    """A fit into an output folder: Adam, the options' schedule and precision, a moving average of the weights
    (``average_decay`` > 0), the state of a resumed fit put back (``expected``: what its checkpoint must record
    alike, e.g. the model config and the data spec), ``--compile`` and DDP; returns the last epoch's metrics."""
    model, device = task.model, next(task.model.parameters()).device
    optimizer = adam(model, options.lr)
    generator = torch.Generator().manual_seed(options.seed)
    scheduler = lr_schedule(optimizer, options.lr_schedule, options.epochs * task.steps_per_epoch)
    precision = MixedPrecision(options.precision, device)
    average = WeightAverage(model, average_decay) if average_decay > 0 else None
    if state is not None:
        restore(state, model, optimizer, scheduler, generator, precision=precision, average=average, **expected)
    if options.compile:
        model.compile()  # in place: the state dict and the checkpoints are the plain module's
    forward = dist.wrap(model, task.train_method)  # through DDP under torchrun
    with run.interruptible():  # Ctrl-C: one line saying which epochs the checkpoints hold
        history = train(task, optimizer, scheduler, generator, options.epochs, precision, run, dist, options.patience,
                        not options.no_progress, forward, average)
    return history[-1]
