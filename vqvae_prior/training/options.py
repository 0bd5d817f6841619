"""Typed fit options: frozen dataclasses that Python builds directly and the command line builds through argparse.

Each field is one option: ``batch_size`` is ``--batch-size``. Its metadata (:func:`option`) holds the help text and
argparse's ``choices`` / ``nargs``; ``pipelines.cli.parser_for`` builds an entry point's parser from the fields, so
the command line and Python take the same options, with the same defaults and the same checks. A field left None
takes the default of the data's modality (``Modality.vqvae_defaults`` / ``prior_defaults``) when the fit resolves
its options, and the resolved options are what the checkpoints record (``args``).

The checks here raise :class:`vqvae_prior.errors.UsageError` naming the option as the command line spells it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vqvae_prior.checks import SEEDS, whole_number
from vqvae_prior.errors import UsageError
from vqvae_prior.modality import for_levels
from vqvae_prior.training.steps import MixedPrecision, pick_device

__all__ = ["DEVICE_HELP", "FitOptions", "at_least", "build_config", "flag", "option", "positive", "with_defaults"]

T = TypeVar("T")
O = TypeVar("O", bound="FitOptions")

DEVICE_HELP = "auto (CUDA when available), cpu, cuda, cuda:N"  # the help of every --device


def option(default: Any = None, help: str = "", **argparse_options: Any) -> Any:
    """A field of an options dataclass: its default, its help text and argparse's ``choices`` / ``nargs``."""
    return field(default=default, metadata={"help": help, **argparse_options})


def flag(name: str) -> str:
    """The command-line flag of an option: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def at_least(options: Any, minimum: int, *names: str) -> None:
    """Refuse any of the options ``names`` below ``minimum`` (an option left unset, None, passes)."""
    for name in names:
        value = getattr(options, name)
        if value is not None and value < minimum:
            raise UsageError(f"{flag(name)} must be >= {minimum}, got {value}")


def positive(options: Any, *names: str, zero: bool = False) -> None:
    """Refuse any of the float options ``names`` that is not finite or not > 0 (>= 0 with ``zero``)."""
    for name in names:
        value = getattr(options, name)
        if value is not None and not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
            raise UsageError(f"{flag(name)} must be a finite number {'>= 0' if zero else '> 0'}, got {value}")


def build_config(config_cls: type[T], **fields: Any) -> T:
    """``config_cls(**fields)``, its refusal of a field (a ValueError) turned into a :class:`UsageError`."""
    try:
        return config_cls(**fields)
    except ValueError as e:
        raise UsageError(f"invalid model options: {e}") from e


def with_defaults(options: O, defaults: dict[str, Any], levels: int = 1) -> O:
    """The options with those left None set from ``defaults``. A default given as a dict holds a value per number
    of levels of codes (``{1: 8, 2: 4}``): the one for ``levels``."""
    unset = {name: for_levels(value, levels) for name, value in defaults.items() if getattr(options, name) is None}
    return dataclasses.replace(options, **unset)


@dataclass(frozen=True)
class FitOptions:
    """The options every fit takes: the output folder, the schedule, the arithmetic and the run's behaviour."""

    out: str = option("runs/fit", "output folder")
    epochs: int | None = option(None, "number of epochs")
    batch_size: int | None = option(None, "the global batch (under torchrun: of all processes together)")
    lr: float | None = option(None, "Adam learning rate")
    lr_schedule: str | None = option(None, "constant, or cosine decay to zero over the fit",
                                     choices=("constant", "cosine"))
    seed: int = option(0, "seeds the weights, the batch order and the augmentation")
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("fp32", "training arithmetic: autocast to bf16 or fp16 (CUDA) for the forward pass; "
                            "weights, quantizer, losses and held-out metrics stay fp32",
                            choices=("fp32", "bf16", "fp16"))
    compile: bool = option(False, "torch.compile the model for training")
    patience: int | None = option(None, "stop when the held-out metric has not improved for N epochs (None: never)")
    resume: bool = option(False, "continue the fit saved in --out from its last epoch (the same options; --epochs, "
                          "--patience and --device may change)")
    no_progress: bool = option(False, "no tqdm progress bar")

    @classmethod
    def of(cls: type[O], **options: Any) -> O:
        """The options named as the fields (``batch_size=32``), the rest at their defaults; an unknown name is
        refused, naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown options {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        return cls(**options)

    def check(self) -> None:
        """Refuse, before any work, values that no fit can use."""
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                raise UsageError(f"{flag(f.name)} {value!r} is not one of {', '.join(map(str, choices))}")
        at_least(self, 1, "epochs", "batch_size", "patience")
        whole_number(self.seed, "--seed", *SEEDS)
        positive(self, "lr")
        MixedPrecision(self.precision, pick_device(self.device))  # fp16 without CUDA is refused here
