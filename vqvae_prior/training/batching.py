"""The data of the fits and checks: a data set rebuilt from a checkpoint's spec, its splits as tensors, and batches
of them on a device."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

import data

__all__ = ["as_tensors", "batches", "load_splits"]


def load_splits(spec: dict[str, Any], data_root: str | None = None,
                sample_shape: tuple[int, ...] | list[int] | None = None) -> data.DatasetSplits:
    """The data set described by a checkpoint's spec, optionally read from another root; with ``sample_shape``
    (C, H, W), the shape of the items the VQ-VAE was fitted on, a data set of other items is refused."""
    spec = dict(spec)
    if data_root is not None:
        spec["root"] = data_root
    splits = data.load_dataset(**spec)
    if sample_shape is not None and tuple(splits.sample_shape) != tuple(sample_shape):
        where = f"--data-root {data_root}" if data_root is not None else f"the data set {spec.get('root')}"
        raise data.DataError(f"{where} holds items {tuple(splits.sample_shape)} (C, H, W), but the VQ-VAE was fitted "
                             f"on items {tuple(sample_shape)}: its codes of them would be of another size")
    return splits


def as_tensors(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """All items of ``dataset`` as (x (N, C, H, W), labels (N,)); in-memory data sets expose them directly."""
    if hasattr(dataset, "images") and hasattr(dataset, "labels"):
        return dataset.images, dataset.labels
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.as_tensor(ys)


def batches(
    x: Tensor | tuple[Tensor, ...], y: Tensor, batch_size: int, device: torch.device,
    generator: torch.Generator | None = None, shard: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[tuple[Tensor | tuple[Tensor, ...], Tensor]]:
    """Batches (x (B, ...), y (B,)) on ``device``, shuffled by ``generator`` when given; uint8 x becomes [0, 1].
    ``x`` may be a tuple of tensors with one item per label (code maps of several levels): batched alike.

    ``shard``: this process's part of each batch's indices (``Distributed.shard``); batches it leaves empty are
    skipped. The order is drawn as without it, so all processes share one global order.
    """
    if isinstance(x, tuple):
        for idx, yb in batches(torch.arange(len(y)), y, batch_size, device, generator, shard):
            yield tuple(t[idx.cpu()].to(device, non_blocking=True) for t in x), yb
        return
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for idx in order.split(batch_size):
        if shard is not None:
            idx = shard(idx)
            if len(idx) == 0:
                continue
        xb = x[idx]
        xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb
        yield xb.to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
