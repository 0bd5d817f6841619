"""Pieces shared by the entry points: device choice, batching, metrics log, random state for --resume."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.utils import save_image

import data
from vqvae_prior.checkpoint import load_checkpoint


def pick_device(name: str | None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None / "auto", CUDA if available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; pass --device cpu")
    return device


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, help="number of epochs (default: per entry point and kind of data)")
    parser.add_argument("--batch-size", type=int, help="(default: per entry point and kind of data)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: per entry point)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="constant (measured better for the default few-epoch fits) or cosine decay to zero")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--resume", action="store_true", help="continue the fit saved in --out")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


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
    save_image(images.cpu(), path, nrow=nrow, padding=2)


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
        options["image_size"] = tuple(args.image_size) if len(args.image_size) == 2 else args.image_size[0]
    if args.channels_in is not None:
        options["channels"] = args.channels_in
    audio = {name: getattr(args, name) for name in AUDIO_OPTIONS if getattr(args, name, None) is not None}
    wrong = list(options) if args.dataset == "audio-folder" else list(audio)  # image options, or audio options
    if wrong:
        flags = {"image_size": "--image-size", "channels": "--channels-in"}
        given = ", ".join(flags.get(name, "--" + name.replace("_", "-")) for name in wrong)
        raise ValueError(f"{given} does not apply to --dataset {args.dataset}")
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
    raise ValueError(f"--lr-schedule must be constant or cosine, got {name!r}")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """Every random state a fit uses, to save in its checkpoint."""
    state = {"torch": torch.get_rng_state(), "loader": loader_generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    loader_generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume(
    path: Path,
    kind: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_generator: torch.Generator,
    legacy: dict[str, Any] | None = None,
    **expected: Any,
) -> int:
    """Restore an interrupted fit from its checkpoint; returns the number of epochs it had done.

    ``expected`` entries (the model config, ...) must equal the checkpoint's, else the fit is refused. ``legacy``:
    what a key missing from a checkpoint written before it existed stands for.
    """
    state = load_checkpoint(path, kind)
    for key, value in expected.items():
        found = state.get(key, (legacy or {}).get(key))
        if found != value:
            raise ValueError(f"--resume: {path} was fitted with {key}={found!r}, this call asks for {value!r}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["lr_scheduler"])
    set_rng_state(state["rng"], loader_generator)
    return state["epoch"]


def training_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_generator: torch.Generator,
    epoch: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """What a checkpoint needs, beside the model, for --resume."""
    return {
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "rng": rng_state(loader_generator),
        "epoch": epoch,
        "args": vars(args),
    }


def check_resume(out: Path, checkpoint: Path, resume: bool) -> None:
    """Refuse to overwrite an earlier fit's checkpoint unless --resume asks to continue it."""
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: there is no checkpoint to resume at {checkpoint}")
    if not resume and checkpoint.exists():
        raise FileExistsError(
            f"{checkpoint} already exists: pass --resume to continue that fit, or another --out folder"
        )
    out.mkdir(parents=True, exist_ok=True)


def load_splits(spec: dict[str, Any], data_root: str | None = None) -> data.DatasetSplits:
    """The data set described by a checkpoint's spec, optionally read from another root."""
    spec = dict(spec)
    if data_root is not None:
        spec["root"] = data_root
    return data.load_dataset(**spec)
