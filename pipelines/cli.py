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

__all__ = ["at_least", "build_config", "flag", "given_options", "namespace", "positive", "run"]

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


def namespace(parser: argparse.ArgumentParser, **options: Any) -> argparse.Namespace:
    """The arguments ``parser`` gives an entry point's ``main``, from keyword ``options`` named as in ``args``
    (``batch_size=32`` for ``--batch-size 32``; values as the command line parses them, a list for an option of
    several values) and its defaults for the rest: how Python calls an entry point without building a command
    line. An unknown name, a value outside an option's choices and a required option left out are refused."""
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}  # argparse keeps no public list of them
    unknown = sorted(set(options) - set(actions))
    if unknown:
        raise UsageError(f"{parser.prog}: unknown options {', '.join(unknown)}; expected some of "
                         f"{', '.join(sorted(actions))}")
    for name, action in actions.items():
        if action.required and name not in options:
            raise UsageError(f"{parser.prog}: {flag(name)} ({name}=...) is required")
        if name in options and action.choices is not None and options[name] not in action.choices:
            raise UsageError(f"{parser.prog}: {name}={options[name]!r} is not one of {list(action.choices)}")
    return argparse.Namespace(**{**{name: parser.get_default(name) for name in actions}, **options})


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The options that the command-line arguments ``argv`` give, parsed by ``parser`` (none of them required
    then): what a string of extra arguments adds to keyword options."""
    unset = object()
    actions = [a for a in parser._actions if a.dest != "help"]  # argparse keeps no public list of them
    for action in actions:
        action.required = False
    # attributes already in the namespace are not overwritten by defaults: those left unset were not given
    args = parser.parse_args(argv, namespace=argparse.Namespace(**{a.dest: unset for a in actions}))
    return {name: value for name, value in vars(args).items() if value is not unset}


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
