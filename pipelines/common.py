"""Pieces shared by the entry points: device choice, batching, metrics log, random state for --resume."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

import data


def pick_device(name: str | None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None / "auto", CUDA if available, else the CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; pass --device cpu")
    return device


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, help="number of epochs (default: per entry point)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: per entry point)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--resume", action="store_true", help="continue the fit saved in --out")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data set arguments of the command line as ``load_dataset`` keyword options."""
    options: dict[str, Any] = {}
    if args.image_size is not None:
        options["image_size"] = tuple(args.image_size) if len(args.image_size) == 2 else args.image_size[0]
    if args.channels_in is not None:
        options["channels"] = args.channels_in
    return options


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
