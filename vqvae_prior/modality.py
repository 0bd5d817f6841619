"""Modalities: what is particular to one kind of data, decided once and held in one object.

The VQ-VAE and the prior only ever see tensors ``(N, C, H, W)`` in ``[0, 1]``. A modality is the rest: how a file
becomes such a tensor and a tensor becomes something to look at or listen to, which files hold its inputs, how a
file's class is read from its path, and the fits' defaults for its data.

- :class:`Images`: images are their own tensors; PNG/JPEG files; a file's class is the name of its folder.
- :class:`vqvae_prior.audio.Spectrograms`: log spectrograms ``(N, 1, n_frames, F)`` of recordings (WAV/FLAC/OGG),
  time down the rows; decoded spectrograms are also inverted to waveforms by Griffin-Lim.

A modality is rebuilt from a data set's spec (``vqvae_prior.registry.modality_of_spec(checkpoint["data"])``),
which every VQ-VAE checkpoint holds: saved once, with the data it describes. A new modality is one class here (or
in its own module) plus one line in ``vqvae_prior.registry.MODALITIES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vqvae_prior.files import atomic_write
from vqvae_prior.errors import DataError, UsageError, VQPriorError

__all__ = ["IMAGE_EXTENSIONS", "Images", "Modality", "Outputs", "for_levels", "open_image", "save_grid"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

Outputs = tuple[Tensor | None, int | None]  # waveforms (N, T) and their sample rate, or (None, None)
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # PIL's modes of one channel (and alpha)
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError, Image.DecompressionBombError)


def open_image(path: str | Path, channels: int | None, size: tuple[int, int] | None = None) -> Image.Image:
    """The image file at ``path`` decoded, gray (``channels`` 1, mode "L") or RGB (3; None: as it is stored).

    16-bit gray images (PNG's, mode "I;16") are scaled to 8 bits, x / 257, rather than clipped at 255. A file that
    cannot be decoded is refused with a :class:`DataError` naming it; with ``size`` (H, W), a file of another size
    with a :class:`UsageError`, before its pixels are decoded (a header claiming 20000 x 20000 pixels costs
    nothing).
    """
    try:
        with Image.open(path) as img:
            if size is not None and (img.height, img.width) != tuple(size):
                raise UsageError(f"{path} is {img.height}x{img.width}, expected {size[0]}x{size[1]} (H x W), the size "
                                "the VQ-VAE was fitted on")
            if channels is None:
                channels = 1 if img.mode in GRAYSCALE_MODES else 3
            if img.mode.startswith("I"):  # 16-bit (or 32-bit integer) gray: scale, do not clip
                wide = np.asarray(img, dtype=np.int64)  # (H, W)
                if wide.min() < 0 or wide.max() > 65535:
                    raise DataError(f"{path}: mode {img.mode} values in [{wide.min()}, {wide.max()}] are not 16-bit")
                img = Image.fromarray(np.round(wide / 257).astype(np.uint8))  # (H, W) 0 .. 255
            return img.convert("L" if channels == 1 else "RGB")  # decodes the pixels: errors are raised here
    except VQPriorError:
        raise
    except DECODE_ERRORS as e:
        raise DataError(f"cannot decode image {path}: {' '.join(str(e).split()) or type(e).__name__}") from e


def for_levels(value: Any, levels: int) -> Any:
    """A default as :class:`Modality` gives it: a dict holds a value per number of levels of codes (``{1: 8, 2: 4}``)
    and gives the one for ``levels`` (None when it has none); any other value is the value for every number."""
    return value.get(levels) if isinstance(value, dict) else value


def save_grid(images: Tensor, path: str | Path, nrow: int) -> None:
    """A picture file (PNG, JPEG, ... by the extension) of a grid of images (N, C, H, W) in [0, 1], written
    atomically."""
    from torchvision.utils import save_image  # here, not above: importing torchvision takes about 3 s on 2 cores

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())  # "PNG", "JPEG", ...
    atomic_write(path, lambda f: save_image(images.cpu(), f, nrow=nrow, padding=2, format=fmt))


class Modality:
    """What is particular to one kind of data (module docstring); subclasses set the class attributes.

    Attributes:
        name: the name data specs and checkpoints record (``spec["modality"]``).
        noun: what one input is called in messages ("image", "recording").
        extensions: the file extensions (lower case) of its inputs.
        vqvae_defaults: ``pipelines.fit_vqvae``'s options when not given, for its data.
        prior_defaults: ``pipelines.fit_prior``'s options when not given, for its data. In both, a value may be a
            dict by the number of levels of codes (``{"downsample": {1: 8, 2: 4}}``).
        sampling_defaults: how :class:`vqvae_prior.VQPriorPipeline` samples its data's priors when not told:
            ``{"temperature": T}``, T one number or one per level (top, bottom), or a dict of those by the number of
            levels, as above.
    """

    name: ClassVar[str]
    noun: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]
    vqvae_defaults: ClassVar[dict[str, Any]]
    prior_defaults: ClassVar[dict[str, Any]]
    sampling_defaults: ClassVar[dict[str, Any]] = {"temperature": 1.0}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Modality:
        """The modality of a data set, from its spec (``DatasetSplits.spec``, ``checkpoint["data"]``)."""
        raise NotImplementedError

    def picture(self, x: Tensor) -> Tensor:
        """Model tensors (N, C, H, W) as they are drawn in PNGs."""
        return x

    def save_grid(self, x: Tensor, path: str | Path, nrow: int) -> None:
        """A PNG grid of model tensors (N, C, H, W) in [0, 1], drawn by :meth:`picture`."""
        save_grid(self.picture(x), path, nrow)

    def inputs(self, x: Tensor | np.ndarray, sample_shape: tuple[int, int, int]) -> Tensor:
        """Checked model tensors (N, C, H, W) in [0, 1] of ``sample_shape`` (C, H, W), N >= 1, from what a user
        passes; float64 (NumPy's default) becomes float32, NaN and values outside [0, 1] are refused."""
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UsageError(f"x: expected an array of inputs (N, {', '.join(map(str, sample_shape))}), got "
                             f"{type(x).__name__}") from e
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(sample_shape) or not x.is_floating_point():
            raise UsageError(f"x: expected float inputs (N, {', '.join(map(str, sample_shape))})"
                             f"{self._also_takes()}, got {x.dtype} {tuple(x.shape)}")
        if len(x) == 0:
            raise UsageError("x: expected at least one input, got an empty batch (0, ...)")
        x = x.float()  # (N, C, H, W) float32, the weights' type
        if not bool(torch.isfinite(x).all()):
            raise UsageError(f"x: expected finite inputs in [0, 1]; {int((~torch.isfinite(x)).sum())} values are NaN "
                             "or infinite")
        if x.min() < 0 or x.max() > 1:
            raise UsageError(f"x: expected inputs in [0, 1], got values in [{float(x.min()):.3g}, "
                             f"{float(x.max()):.3g}]")
        return x

    def _also_takes(self) -> str:
        """What else :meth:`inputs` takes, for its message."""
        return ""

    def outputs(self, x: Tensor) -> Outputs:
        """What decoded tensors (N, C, H, W) give beside themselves: waveforms (N, T) and their sample rate, or
        (None, None)."""
        return None, None

    def read(self, path: Path, sample_shape: tuple[int, int, int]) -> Tensor:
        """One input file as :meth:`inputs` takes it."""
        raise NotImplementedError

    def label_of(self, path: Path) -> str | None:
        """The class name that a file's path gives, by its data set's convention, or None."""
        raise NotImplementedError

    def where_label(self) -> str:
        """Where :meth:`label_of` reads a class, for messages."""
        raise NotImplementedError

    def files(self, path: Path) -> list[Path]:
        """The input files at ``path``: the file itself, or those under the folder, sorted; a clear error when
        there are none."""
        if path.is_file():
            found = [path] if path.suffix.lower() in self.extensions else []
        else:
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in self.extensions)
        if not path.exists() or not found:
            raise UsageError(f"{path} is no {self.noun} file and no folder holding any "
                             f"({', '.join(self.extensions)}, any case)")
        return found

    def write_outputs(self, outputs: Outputs, paths: Sequence[Path]) -> None:
        """Write the :meth:`outputs` of N decoded tensors, one to each of ``paths`` (nothing for images)."""

    def check_sample_shape(self, sample_shape: Sequence[int], path: str | Path) -> None:
        """Refuse a VQ-VAE checkpoint at ``path``, fitted on tensors of ``sample_shape``, that these settings can no
        longer feed (nothing for images)."""


class Images(Modality):
    """Images in [0, 1], gray or RGB: their own model tensors."""

    name = "image"
    noun = "image"
    extensions = IMAGE_EXTENSIONS
    # fit_vqvae: chosen for MNIST's 60,000 digits within 20 minutes on 2 CPU cores (docs/results.md). Within a fixed
    # time more updates beat a wider network: 64 hidden channels (about 70 s an epoch at batch 128 against 190 s for
    # 128 channels) reach after 3 epochs what 128 reach after about 1.3. With 64 channels and K = 512, held-out PSNR
    # after about 160 s of training: batch 128 and learning rate 1e-3: 24.8 dB; batch 128, 3e-3: 25.9; batch 32,
    # 1e-3: 26.1; batch 64, 2e-3: 26.0. The codebook, one level: K = 256 codes reconstruct a little less than 512
    # (27.75 against 28.16 dB after 13 epochs; 128: 27.27) but leave the prior fewer choices a position, and its
    # unguided samples are recognized more often and closer to real digits (full MNIST, ten seeds of image_check:
    # 96.9% and 1.42x the Frechet floor against 95.9% and 1.65x; 128: 96.5% and 1.41x). Two levels keep 512 a
    # level (the bottom level carries the detail).
    # two levels: 28 x 28 -> bottom codes 14 x 14 and top codes 7 x 7; 32 x 32 -> 16 x 16 and 8 x 8
    vqvae_defaults = {"epochs": 13, "batch_size": 64, "downsample": {1: 4, 2: 2}, "levels": 1, "lr": 2e-3,
                      "lr_schedule": "cosine", "channels": 64, "residual_channels": 32,
                      "codebook_size": {1: 256, 2: 512}}
    # fit_prior: chosen on full MNIST's 7 x 7 codes of K = 512 (docs/results.md), about 4 minutes an epoch on 2 CPU
    # cores. A larger step pays: 4 epochs on a cosine reach 4.414 bits per code at a learning rate of 1e-3, 4.282 at
    # 2e-3, 4.212 at 3e-3; 6 epochs at 3e-3: 4.145; 9 epochs with label dropout 0.05: 4.120, unguided samples
    # recognized 96.3% of the time against 95.0% for 6 epochs and 0.1 (image_check, the mean of three seeds)
    prior_defaults = {"epochs": 9, "batch_size": 128, "lr": 3e-3, "lr_schedule": "cosine", "dropout": 0.0,
                      "label_dropout": 0.05, "shifts": 1, "jitter": 0, "ema": 0.0}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Images:
        return cls()

    def read(self, path: Path, sample_shape: tuple[int, int, int]) -> Tensor:
        """The image file as (C, H, W) in [0, 1], gray or RGB as ``sample_shape`` says; of exactly its size."""
        channels, H, W = sample_shape
        from torchvision.transforms.functional import pil_to_tensor  # as in save_grid

        return pil_to_tensor(open_image(path, channels, (H, W))).float() / 255  # (C, H, W)

    def label_of(self, path: Path) -> str | None:
        return path.parent.name

    def where_label(self) -> str:
        return "its folder's name"
