"""The command line around each entry point's ``main(args)``: parsers built from the typed fit options, checks of
arguments made before any work, and the package's own errors printed as one line.

``run(main, parser)`` parses the arguments and calls ``main``; an error of the package's own types
(:class:`vqvae_prior.errors.VQPriorError`: a bad argument, data set, checkpoint or output folder) is printed as one
line, ``PROG: error: MESSAGE``, with exit status 2 (argparse's status for bad arguments), as are argparse's own
refusals. Ctrl-C, SIGTERM and SIGHUP end a command with one line as well (a fit's names the epoch its checkpoints
hold and ``--resume``), status 128 + the signal's number. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import signal
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from vqvae_prior.checks import SEEDS, finite_number, whole_number
from vqvae_prior.errors import UsageError, VQPriorError
from vqvae_prior.files import HELD_SIGNALS, writable_folder
from vqvae_prior.training.options import DEVICE_HELP, at_least, flag, positive
from vqvae_prior.training.steps import pick_device

__all__ = ["add_sampling", "at_least", "check_image_path", "check_inputs", "command", "flag", "given_options",
           "parser_for", "pick_device", "positive", "run", "sampling_settings"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as it is written, and every option's default after its help (none where None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if not any(action.default is no for no in (None, False, argparse.SUPPRESS)) and "%(default)" not in help:
            help += " (default: %(default)s)"
        return help


def run(main: Callable[[argparse.Namespace], Any], parser: argparse.ArgumentParser,
        argv: list[str] | None = None) -> None:
    """``main(parser.parse_args(argv))``; a bad argument and the package's own errors end it with one line on stderr
    and status 2. Ctrl-C, SIGTERM and SIGHUP end it with one line too (a fit's says which epochs its checkpoints
    hold), status 128 + the signal's number, after the ``with`` blocks have released what they hold (a fit's
    lock)."""
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message} (--help lists the options)\n")
    args = parser.parse_args(argv)
    received = [signal.SIGINT]
    try:
        with _signals_interrupt(received):
            for name, value in vars(args).items():  # every entry point's seeds, before any work
                if (name == "seed" or name.endswith("_seed")) and value is not None:
                    whole_number(value, flag(name), *SEEDS)
            main(args)
    except VQPriorError as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:
        print(f"{parser.prog}: {' '.join(str(e).split()) or 'interrupted'}", file=sys.stderr)
        raise SystemExit(128 + received[-1]) from None


@contextlib.contextmanager
def _signals_interrupt(received: list[int]) -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the ``with`` block, as Ctrl-C does, so that it ends the
    same way (``with`` blocks exited, one line); each signal received is appended to ``received``. Outside the main
    thread, or where the signals do not exist, nothing changes."""
    others = [signum for signum in HELD_SIGNALS if signum != signal.SIGINT]  # Ctrl-C raises it already
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    before = {signum: signal.signal(signum, interrupt) for signum in others}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def command(main: Callable[[argparse.Namespace], Any],
            get_args_parser: Callable[[], argparse.ArgumentParser]) -> Callable[[], None]:
    """An entry point as a console command: ``run(main, get_args_parser())`` on ``sys.argv``."""
    return lambda: run(main, get_args_parser())


def parser_for(options: type, description: str | None = None, defaults: dict[str, dict[str, Any]] | None = None,
               **parser_options: Any) -> argparse.ArgumentParser:
    """An argparse parser of the fields of an options dataclass (``vqvae_prior.training.options``): one option per
    field, ``--batch-size`` for ``batch_size``, its type from the annotation (a bool is a switch, a tuple takes
    several values), its help, choices and nargs from the field's metadata. ``defaults``: the defaults by modality
    of the fields left None (a modality's name -> its defaults), shown in the help."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter, **parser_options)
    hints = typing.get_type_hints(options)
    for f in dataclasses.fields(options):
        kind, meta = _base_type(hints[f.name]), dict(f.metadata)
        help = meta.pop("help", "")
        by_modality = {name: d[f.name] for name, d in (defaults or {}).items() if f.name in d}
        if f.default is None and by_modality:
            help += f" (default: {', '.join(f'{name} {_by_levels(value)}' for name, value in by_modality.items())})"
        if kind is bool:
            parser.add_argument(flag(f.name), action="store_true", help=help)
        elif kind is tuple:
            parser.add_argument(flag(f.name), type=int, default=f.default, help=help, **{"nargs": "+", **meta})
        else:
            parser.add_argument(flag(f.name), type=kind, default=f.default, help=help, **meta)
    return parser


def _by_levels(value: Any) -> str:
    """A modality's default as the help shows it: ``8``, or ``8 with one level, 4 with two`` of ``{1: 8, 2: 4}``."""
    if not isinstance(value, dict):
        return str(value)
    return ", ".join(f"{v} with {('one', 'two')[n - 1] if n <= 2 else n} level{'s' if n > 1 else ''}"
                     for n, v in value.items())


def _base_type(hint: Any) -> type:
    """``int`` of ``int | None``; ``tuple`` of ``tuple[int, ...]``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _base_type(args[0])
    return typing.get_origin(hint) or hint


def given_options(options: type, argv: str | list[str], option: str = "arguments",
                  owned: tuple[str, ...] = ()) -> dict[str, Any]:
    """The options that the command-line arguments ``argv`` (words, or one string split as a shell does) give, by
    the fields of the options dataclass ``options``: what a string of extra arguments, the option ``option``, adds
    to keyword options. Words that do not parse, unknown options and those of ``owned`` (set by the caller itself)
    are refused naming ``option``."""
    def refuse(message: str) -> typing.NoReturn:
        raise UsageError(f"{option} {argv!r}: {message}")

    parser = parser_for(options)
    parser.error = refuse  # type: ignore[method-assign]
    for action in parser._actions:  # argparse keeps no public list of them
        action.default = argparse.SUPPRESS
    try:
        words = shlex.split(argv) if isinstance(argv, str) else argv
    except ValueError as e:  # an unbalanced quote
        refuse(f"{e} (the string is split as a shell splits it)")
    given = vars(parser.parse_args(words))
    taken = [flag(name) for name in owned if name in given]
    if taken:
        refuse(f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by this command itself")
    return given


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``, as the fits take it: auto (CUDA when available), cpu, cuda, cuda:N."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_sampling(parser: argparse.ArgumentParser, temperature_help: str, guidance_help: str) -> None:
    """``--temperature`` and ``--guidance`` of the samples: one number, or one per level of a two-level prior (top,
    bottom); :func:`sampling_settings` checks them."""
    per_level = "; one number, or two for a two-level prior (top, bottom)"
    parser.add_argument("--temperature", type=float, nargs="+", default=None, metavar="T",
                        help=temperature_help + per_level + " (default: the model's, 0.6 0.6 for a two-level model "
                        "of recordings, else 1)")
    parser.add_argument("--guidance", type=float, nargs="+", default=0.0, metavar="W", help=guidance_help + per_level)


def sampling_settings(args: argparse.Namespace) -> None:
    """Refuse, before any work, a ``--temperature`` not > 0 or a ``--guidance`` not >= 0, or more than two of
    either (:func:`add_sampling`); one number given becomes that number, two a tuple (top, bottom), as
    :class:`vqvae_prior.VQPriorPipeline` takes them (and checks their count against the prior's levels); a
    temperature not given stays None, the model's default."""
    for name, zero in (("temperature", False), ("guidance", True)):
        values = getattr(args, name)
        if isinstance(values, list):
            if len(values) > 2:
                raise UsageError(f"{flag(name)} takes one number, or two (top, bottom), got {len(values)}")
            setattr(args, name, finite_number(values[0] if len(values) == 1 else tuple(values), flag(name), zero))


def check_image_path(path: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work, an image file name whose extension no image format has, a folder, or a folder
    that cannot be written; creates the folder. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; expected an image file name, e.g. {path / 'samples.png'}")
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        raise UsageError(f"{option} {path}: {path.suffix or 'no extension'} is not an image format this can "
                         "write; expected a file name ending in .png (or .jpg, ...)")
    writable_folder(path.parent, f"{option} {path}: its folder")
    return path


def check_inputs(args: argparse.Namespace, *names: str, files: bool = False) -> None:
    """Refuse, before any work, a file or folder that the options ``names`` give (None: not given) and that does
    not exist (with ``files``: that is not a file)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not (Path(value).is_file() if files else Path(value).exists()):
            raise UsageError(f"{flag(name)} {value}: no such {'file' if files else 'file or folder'}")
