"""The command line around each entry point's ``main(args)``: the options the entry points share (device, training,
data set), checks of the arguments made before any work, calls of ``main`` from Python with keyword options, and
the package's own errors printed as one line.

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

import torch

import data
from vqvae_prior.errors import UsageError, VQPriorError

__all__ = [
    "AUDIO_OPTIONS", "add_audio_args", "add_common_args", "at_least", "build_config", "check_common_args",
    "dataset_options", "fill_defaults", "flag", "given_options", "namespace", "pick_device", "positive", "run",
]

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


# ----------------------------------------------------------------------------------------------------------------
# the options the entry points share


def pick_device(name: str | None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None / "auto", CUDA if available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; pass --device cpu")
    return device


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, help="number of epochs (default: per entry point and kind of data)")
    parser.add_argument("--batch-size", type=int, help="(default: per entry point and kind of data)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: per entry point)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="constant, or cosine decay to zero over the fit (default: per entry point and kind of "
                             "data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="training arithmetic: autocast to bf16 or fp16 (CUDA) for the forward pass; weights, "
                             "quantizer, losses and held-out metrics stay fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    parser.add_argument("--patience", type=int,
                        help="stop when the held-out metric has not improved for N epochs (default: never)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the fit saved in --out from its last epoch (the same options; --epochs, "
                             "--patience and --device may change)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def check_common_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, values of the options of :func:`add_common_args` that no fit can use."""
    at_least(args, 1, "epochs", "batch_size", "patience")
    positive(args, "lr")
    from pipelines.training import MixedPrecision  # training imports the library; cli stays light to import

    MixedPrecision(args.precision, pick_device(args.device))  # fp16 without CUDA is refused here


def fill_defaults(args: argparse.Namespace, defaults: dict[str, dict[str, Any]], kind: str) -> None:
    """Set the options left unset (None) on the command line to ``defaults[kind]`` ("image" or "audio")."""
    for name, value in defaults[kind].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


AUDIO_OPTIONS = ("sample_rate", "representation", "n_fft", "hop_length", "n_mels", "n_frames", "label_pattern")


def add_audio_args(parser: argparse.ArgumentParser) -> None:
    """Spectrogram options of ``--dataset audio-folder``; those not given take ``load_audio_folder``'s defaults."""
    group = parser.add_argument_group("audio-folder", "spectrogram settings (defaults: data/audio.py)")
    group.add_argument("--representation", choices=("stft", "mel"), help="log-mel (default) or log-magnitude STFT")
    group.add_argument("--sample-rate", type=int, help="resample every clip to this rate (default 8000)")
    group.add_argument("--n-fft", type=int, help="FFT size; stft images have n_fft // 2 + 1 rows (default 254)")
    group.add_argument("--hop-length", type=int, help="samples between frames (default 64)")
    group.add_argument("--n-mels", type=int, help="mel bands, the rows of mel images (default 64)")
    group.add_argument("--n-frames", type=int, help="frames per clip (default: 95th percentile of train lengths)")
    group.add_argument("--label-pattern", help="regex with a named group 'label' (default: FSDD file names)")


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data set arguments of the command line as ``load_dataset`` keyword options."""
    options: dict[str, Any] = {}
    if args.image_size is not None:
        if len(args.image_size) > 2 or min(args.image_size) < 1:
            given = " ".join(map(str, args.image_size))
            raise UsageError(f"--image-size takes S (S x S) or H W, each >= 1; got {given}")
        options["image_size"] = tuple(args.image_size) if len(args.image_size) == 2 else args.image_size[0]
    if args.channels_in is not None:
        options["channels"] = args.channels_in
    audio = {name: getattr(args, name) for name in AUDIO_OPTIONS if getattr(args, name, None) is not None}
    wrong = list(options) if data.modality_of(args.dataset) == "audio" else list(audio)  # image or audio options
    if wrong:
        flags = {"image_size": "--image-size", "channels": "--channels-in"}
        given = ", ".join(flags.get(name, "--" + name.replace("_", "-")) for name in wrong)
        raise UsageError(f"{given} does not apply to --dataset {args.dataset}")
    return {**options, **audio}
