"""Shared fixtures: tiny seeded models, a small folder of digit images, tiny fits that several test files read
(each fitted once a test session), and the path of the real data sets (tests skip when it is absent). Tests take
them as arguments (pytest injects them); several are factories, called with the sizes a test needs:
``tiny_prior(num_classes=3)``, ``make_digit_folder(root, per_class=1)``, ``shared_data("mnist")``. Plain helper
functions are in fits.py and files.py beside this file."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # the fused sampler's Triton kernel runs in Triton's CPU interpreter (tests/test_fused_sampler.py). Triton reads
    # this when it is first imported, and torch's own modules import it early, so it is set before anything else.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import fits  # noqa: E402
from vqvae_prior.prior import GatedPixelCNN, PriorConfig  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Callable[..., Path]:
    """``shared_data(*parts)``: a path under ../shared/data, or a skip saying what is missing."""

    def find(*parts: str) -> Path:
        path = SHARED_DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"real data not found at {path} (the project's ../shared/data)")
        return path

    return find


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory) -> Path:
    """A folder of 60 real MNIST digits as PNG files, three classes: fits on it take a second."""
    return _digit_folder(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def make_digit_folder() -> Callable[..., Path]:
    """``make_digit_folder(root, digits=(1, 4, 7), per_class=20)``: that many real MNIST digits of each of ``digits``
    as PNG files in ``root/<digit>/``."""
    return _digit_folder


def _digit_folder(root: Path, digits: tuple[int, ...] = (1, 4, 7), per_class: int = 20) -> Path:
    from PIL import Image

    from data.images import load_mnist_sample

    train = load_mnist_sample().train
    for digit in digits:
        (root / str(digit)).mkdir(parents=True)
        for i in torch.nonzero(train.labels == digit).flatten()[:per_class].tolist():
            Image.fromarray(train.images[i, 0].numpy()).save(root / str(digit) / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def mnist_sample_fit(tmp_path_factory) -> fits.TinyFit:
    """A VQ-VAE of 32 codes and a class-conditional 3-layer prior over its codes, each fitted for one epoch on the
    embedded MNIST sample (``fits.run_vqvae``, ``fits.run_prior``): to read, not to change."""
    root = tmp_path_factory.mktemp("mnist-sample-fit")
    vqvae_metrics = fits.run_vqvae(root / "vq")
    prior_metrics = fits.run_prior(root / "vq" / "vqvae.pt", root / "prior")
    return fits.TinyFit(root / "vq" / "vqvae.pt", root / "prior" / "prior.pt", vqvae_metrics, prior_metrics)


@pytest.fixture(scope="session")
def digit_folder_fit(digit_folder: Path, tmp_path_factory) -> fits.TinyFit:
    """A VQ-VAE of 16 codes and a class-conditional 2-layer prior (at a constant learning rate) over its codes, each
    fitted for one epoch at batch size 16 on ``digit_folder``, a second each: to read, not to change."""
    root = tmp_path_factory.mktemp("digit-folder-fit")
    vqvae_metrics = fits.run_vqvae(root / "vq", "--dataset", "image-folder", "--data-root", str(digit_folder),
                                   "--batch-size", "16", *fits.VQVAE_16_CODES)
    prior_metrics = fits.run_prior(root / "vq" / "vqvae.pt", root / "prior", "--batch-size", "16", "--lr-schedule",
                                   "constant", *fits.PRIOR_2_LAYERS)
    return fits.TinyFit(root / "vq" / "vqvae.pt", root / "prior" / "prior.pt", vqvae_metrics, prior_metrics)


@pytest.fixture(scope="session")
def audio_fit(tmp_path_factory) -> dict:
    """An audio VQ-VAE (24 x 32 spectrograms -> 6 x 8 codes) and a class-conditional prior over its codes, each
    fitted for one epoch on 21 synthesized chirps of three digits (``fits.write_chirps``, ``fits.fit_audio_pair``),
    seconds: to read, not to change. ``{"recordings", "vqvae", "prior", ...}``."""
    recordings = fits.write_chirps(tmp_path_factory.mktemp("chirps"))
    return {"recordings": recordings, **fits.fit_audio_pair(recordings, tmp_path_factory.mktemp("audio-fit"))}


@pytest.fixture
def tiny_prior() -> Callable[..., GatedPixelCNN]:
    """``tiny_prior(num_classes=0, num_layers=4, channels=8, codebook_size=16)``: a tiny gated PixelCNN in eval mode,
    its weights drawn from torch's generator (seeded for every test)."""

    def make(num_classes: int = 0, num_layers: int = 4, channels: int = 8, codebook_size: int = 16) -> GatedPixelCNN:
        config = PriorConfig(codebook_size, num_classes, channels, num_layers, head_channels=16)
        return GatedPixelCNN(config).eval()

    return make


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this test, as in an interactive shell, even where pytest runs as a
    background job, which POSIX shells start with SIGINT ignored (and Python keeps it so)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
