"""Resuming a fit: what may change, what the last checkpoint holds to go on exactly, and putting it back.

``--resume`` trains as the fit began: it refuses a different data set or any other training option (learning rate,
batch size, schedule, model, ...); only the options in :data:`FREE_ON_RESUME` may change (``--epochs`` only under a
constant learning rate, since a cosine schedule's length is the number of epochs), and each change is recorded in
the checkpoints' ``resumes`` list with the epoch it took effect after, so their ``args`` are always what ran. The
last checkpoint holds the optimizer, the schedule and every random state (:func:`training_state`), so a resumed fit
ends with the weights of an uninterrupted one (:func:`restore`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from vqvae_prior.errors import UsageError
from vqvae_prior.training.options import flag

if TYPE_CHECKING:
    from vqvae_prior.training.averaging import WeightAverage
    from vqvae_prior.training.run_folder import RunFolder
    from vqvae_prior.training.steps import MixedPrecision

__all__ = ["FREE_ON_RESUME", "check_options", "restore", "training_state"]

# options a resumed fit may change: they do not change what is computed (--epochs: under a constant schedule)
FREE_ON_RESUME = frozenset({"epochs", "patience", "device", "no_progress", "resume", "out", "compile"})


def check_options(
    run: RunFolder, state: dict[str, Any], options: Any, free: frozenset[str] = FREE_ON_RESUME,
    legacy: dict[str, Any] | None = None,
) -> None:
    """Refuse a resumed fit whose options (a dataclass of them) differ from those recorded in ``state``, and record
    in ``run.resumes`` the changes of the options in ``free`` (module docstring). ``legacy``: the value of an option
    missing from a checkpoint written before it existed; other missing options count as unchanged."""
    recorded, legacy = state.get("args", {}), legacy or {}
    changed = {}
    for name, value in dataclasses.asdict(options).items():
        before = recorded.get(name, legacy.get(name, value))
        if before != value:
            changed[name] = [before, value]
    free = free - {"epochs"} if options.lr_schedule != "constant" else free
    refused = {name: values for name, values in changed.items() if name not in free}
    if refused:
        was = ", ".join(f"{flag(name)} {before!r}" for name, (before, _) in refused.items())
        asks = ", ".join(f"{flag(name)} {value!r}" for name, (_, value) in refused.items())
        raise UsageError(
            f"--resume: {run.out} was fitted with {was}; this call asks for {asks}. A resumed fit trains as it "
            f"began (only {', '.join(flag(n) for n in sorted(free - {'resume', 'out'}))} may change"
            f"{'; --epochs not under --lr-schedule ' + options.lr_schedule if 'epochs' in refused else ''}): "
            "leave them out, or start a new fit in another --out"
        )
    if options.epochs < run.epochs_done:
        raise UsageError(f"--epochs {options.epochs}: the fit in {run.out} has done {run.epochs_done} epochs")
    noted = {name: values for name, values in changed.items() if name not in ("resume", "no_progress")}
    if noted:
        run.resumes.append({"epoch": run.epochs_done, "changed": noted})


def training_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_generator: torch.Generator,
    precision: MixedPrecision | None = None,
) -> dict[str, Any]:
    """What ``KIND-last.pt`` holds, beside the model and the history, to resume a fit exactly (with the fp16
    gradient scaler's state, when ``precision`` has one)."""
    rng = {"torch": torch.get_rng_state(), "loader": loader_generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    scaler = {"scaler": precision.state_dict()} if precision is not None else {}
    return {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(), "rng": rng, **scaler}


def restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_generator: torch.Generator,
    legacy: dict[str, Any] | None = None,
    precision: MixedPrecision | None = None,
    average: WeightAverage | None = None,
    **expected: Any,
) -> None:
    """Restore the training state of a checkpoint from :meth:`RunFolder.start`.

    ``expected`` entries (the model config, the data spec, ...) must equal the checkpoint's, else the fit is
    refused; ``legacy``: what a key missing from a checkpoint written before it existed stands for. With a weight
    ``average``, the checkpoint's model is the average and its trained weights are ``trained_model``.
    """
    for key, value in expected.items():
        found = state.get(key, (legacy or {}).get(key))
        if found != value:
            raise UsageError(f"--resume: the fit was made with {key} {found!r}; this call gives {value!r}")
    model.load_state_dict(state["model"] if average is None else state["trained_model"])
    if average is not None:
        average.load_state_dict(state["average"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["lr_scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    loader_generator.set_state(state["rng"]["loader"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if precision is not None:
        precision.load_state_dict(state.get("scaler", {}))
