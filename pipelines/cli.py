"""The command line around each entry point's ``main(args)``: checks of the arguments made before any work, and the
package's own errors printed as one line.

``run(main, parser)`` parses the arguments and calls ``main``; an error of the package's own types
(:class:`vqvae_prior.errors.VQPriorError`: a bad argument, data set, checkpoint or output folder) is printed as one
line, ``PROG: error: MESSAGE``, with exit status 2 (argparse's status for bad arguments). Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from vqvae_prior.errors import UsageError, VQPriorError

__all__ = ["at_least", "build_config", "flag", "positive", "run"]

T = TypeVar("T")


def run(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser,
        argv: list[str] | None = None) -> None:
    """``main(parser.parse_args(argv))``; the package's own errors end it with one line on stderr and status 2."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except VQPriorError as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None


def flag(name: str) -> str:
    """The command-line flag of an ``args`` attribute: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def at_least(args: argparse.Namespace, minimum: int, *names: str) -> None:
    """Refuse any of the options ``names`` below ``minimum`` (an option left unset, None, passes)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise UsageError(f"{flag(name)} must be >= {minimum}, got {value}")


def positive(args: argparse.Namespace, *names: str, zero: bool = False) -> None:
    """Refuse any of the float options ``names`` that is not finite or not > 0 (>= 0 with ``zero``)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
            raise UsageError(f"{flag(name)} must be a finite number {'>= 0' if zero else '> 0'}, got {value}")


def build_config(config_cls: Callable[..., T], **fields: Any) -> T:
    """``config_cls(**fields)``, its refusal of a field (a ValueError) turned into a :class:`UsageError`."""
    try:
        return config_cls(**fields)
    except ValueError as e:
        raise UsageError(f"invalid model options: {e}") from e
