"""Shared fixtures: tiny seeded models and the path of the real data sets (tests skip when it is absent)."""

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


def tiny_prior(num_classes: int = 0, num_layers: int = 4, channels: int = 8, codebook_size: int = 16) -> GatedPixelCNN:
    config = PriorConfig(codebook_size, num_classes, channels, num_layers, head_channels=16)
    return GatedPixelCNN(config).eval()
