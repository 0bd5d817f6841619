"""Pieces shared by the entry points: device choice, options, batching, image grids. The output folder of a fit
(checkpoints, metrics, --resume) is in ``run_folder.py``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.utils import save_image

import data
from pipelines import cli
from vqvae_prior.checkpoint import atomic_write
from vqvae_prior.errors import UsageError


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
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="constant (measured better for the default few-epoch fits) or cosine decay to zero")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--patience", type=int,
                        help="stop when the held-out metric has not improved for N epochs (default: never)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the fit saved in --out from its last epoch (the same options; --epochs, "
                             "--patience and --device may change)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def check_common_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, values of the options of :func:`add_common_args` that no fit can use."""
    cli.at_least(args, 1, "epochs", "batch_size", "patience")
    cli.positive(args, "lr")
    pick_device(args.device)


def fill_defaults(args: argparse.Namespace, defaults: dict[str, dict[str, Any]], kind: str) -> None:
    """Set the options left unset (None) on the command line to ``defaults[kind]`` ("image" or "audio")."""
    for name, value in defaults[kind].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def save_grid(images: Tensor, path: Path, nrow: int, spectrograms: bool = False) -> None:
    """A PNG grid of images (N, C, H, W) in [0, 1]; spectrogram images (time down the rows) are drawn as usual,
    time to the right and low frequencies at the bottom."""
    if spectrograms:
        from vqvae_prior.audio import picture

        images = picture(images)  # (N, C, F, T)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())  # "PNG", "JPEG", ...
    atomic_write(path, lambda f: save_image(images.cpu(), f, nrow=nrow, padding=2, format=fmt))


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


def as_tensors(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """All items of ``dataset`` as (x (N, C, H, W), labels (N,)); in-memory data sets expose them directly."""
    if hasattr(dataset, "images") and hasattr(dataset, "labels"):
        return dataset.images, dataset.labels
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.as_tensor(ys)


def batches(
    x: Tensor, y: Tensor, batch_size: int, device: torch.device, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches (x (B, ...), y (B,)) on ``device``, shuffled by ``generator`` when given; uint8 x becomes [0, 1]."""
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for idx in order.split(batch_size):
        xb = x[idx]
        xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb
        yield xb.to(device, non_blocking=True), y[idx].to(device, non_blocking=True)


def lr_schedule(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate held ``constant``, or decayed to zero over ``total_steps`` steps on a half ``cosine``."""
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    raise UsageError(f"--lr-schedule must be constant or cosine, got {name!r}")


def load_splits(spec: dict[str, Any], data_root: str | None = None) -> data.DatasetSplits:
    """The data set described by a checkpoint's spec, optionally read from another root."""
    spec = dict(spec)
    if data_root is not None:
        spec["root"] = data_root
    return data.load_dataset(**spec)
