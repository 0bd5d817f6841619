"""Shared fixtures: tiny seeded models, a small folder of digit images, and the path of the real data sets (tests
skip when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vqvae_prior.prior import GatedPixelCNN, PriorConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the project's ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory) -> Path:
    """A folder of 60 real MNIST digits as PNG files, three classes: fits on it take a second."""
    return make_digit_folder(tmp_path_factory.mktemp("digits"))


def make_digit_folder(root: Path, digits: tuple[int, ...] = (1, 4, 7), per_class: int = 20) -> Path:
    """``per_class`` real MNIST digits of each of ``digits`` as PNG files in ``root/<digit>/``."""
    from PIL import Image

    from data.images import load_mnist_sample

    train = load_mnist_sample().train
    for digit in digits:
        (root / str(digit)).mkdir(parents=True)
        for i in torch.nonzero(train.labels == digit).flatten()[:per_class].tolist():
            Image.fromarray(train.images[i, 0].numpy()).save(root / str(digit) / f"{i}.png")
    return root


def tiny_prior(num_classes: int = 0, num_layers: int = 4, channels: int = 8, codebook_size: int = 16) -> GatedPixelCNN:
    config = PriorConfig(codebook_size, num_classes, channels, num_layers, head_channels=16)
    return GatedPixelCNN(config).eval()
