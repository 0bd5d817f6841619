"""Grids of images written as PNG files (atomically): samples, reconstructions, completions."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch import Tensor
from torchvision.utils import save_image

from vqvae_prior.checkpoint import atomic_write

__all__ = ["save_grid"]


def save_grid(images: Tensor, path: Path, nrow: int, spectrograms: bool = False) -> None:
    """A PNG grid of images (N, C, H, W) in [0, 1]; spectrogram images (time down the rows) are drawn as usual,
    time to the right and low frequencies at the bottom."""
    if spectrograms:
        from vqvae_prior.audio import picture

        images = picture(images)  # (N, C, F, T)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())  # "PNG", "JPEG", ...
    atomic_write(path, lambda f: save_image(images.cpu(), f, nrow=nrow, padding=2, format=fmt))
