"""Tiny fits run as their command lines run them, and checks of what fits write: the plain helpers that several
test files share (the fits that several files read are session fixtures in conftest.py)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from pipelines import fit_prior, fit_vqvae
from vqvae_prior.checkpoint import load_checkpoint

# a VQ-VAE of 32 codes (28 x 28 -> 7 x 7 codes) and a 3-layer prior: an epoch on the embedded MNIST sample, seconds
VQVAE_32_CODES = ["--channels", "16", "--residual-channels", "8", "--codebook-size", "32", "--code-dim", "8"]
PRIOR_3_LAYERS = ["--layers", "3", "--channels", "16", "--head-channels", "32", "--samples-per-class", "2"]
# a VQ-VAE of 16 codes and a 2-layer prior: one epoch on the 60-digit folder takes about a second
VQVAE_16_CODES = ["--channels", "16", "--residual-channels", "8", "--codebook-size", "16", "--code-dim", "8"]
PRIOR_2_LAYERS = ["--layers", "2", "--channels", "8", "--head-channels", "16", "--samples-per-class", "1"]


# tiny audio: chirps whose pitch depends on the digit, named like the Free Spoken Digit Dataset's recordings
SR = 8000
DIGITS = (0, 1, 2)
# (24, 32) spectrograms (frames x bins), 368 samples
AUDIO_ARGS = ["--representation", "stft", "--n-fft", "62", "--hop-length", "16", "--n-frames", "24"]
VQVAE_ARGS = ["--channels", "16", "--residual-channels", "8", "--codebook-size", "16", "--code-dim", "8"]
# one level of 6 x 8 codes, which most audio tests read; the audio default, two levels, is tested on mel
FIXTURE_VQVAE_ARGS = [*VQVAE_ARGS, "--levels", "1", "--downsample", "4"]
PRIOR_ARGS = ["--layers", "2", "--channels", "8", "--head-channels", "16"]
COMMON_ARGS = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress"]


def chirp(digit: int, index: int) -> np.ndarray:
    """A chirp from 500 (1 + digit) Hz up a fifth, with a second harmonic, under a Hann envelope; length varies."""
    n = 300 + 10 * index
    f0 = 500.0 * (1 + digit) * (1 + 0.5 * np.arange(n) / n)  # (n,) instantaneous frequency
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return (0.4 * (np.sin(phase) + 0.3 * np.sin(2 * phase)) * np.hanning(n)).astype(np.float32)


def write_chirps(root: Path) -> Path:
    """21 clips in ``root``: digits 0-2 x indices 0, 1 (held out) and 5-9 (train), two speakers."""
    for digit in DIGITS:
        for index in (0, 1, 5, 6, 7, 8, 9):
            sf.write(root / f"{digit}_{'ab'[index % 2]}_{index}.wav", chirp(digit, index), SR)
    return root


def fit_audio_pair(recordings: Path, runs: Path) -> dict:
    """An audio VQ-VAE (24 x 32 spectrograms -> 6 x 8 codes) and a class-conditional prior over its codes, each
    fitted for one epoch on ``recordings`` into ``runs``: their checkpoints and the metrics of the fits."""
    vq_args = ["--dataset", "audio-folder", "--data-root", str(recordings), "--out", str(runs / "vq"), "--lsd-clips",
               "4", *AUDIO_ARGS, *FIXTURE_VQVAE_ARGS, *COMMON_ARGS]
    vq_metrics = fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(vq_args))
    prior_args = ["--vqvae", str(runs / "vq" / "vqvae.pt"), "--out", str(runs / "prior"), "--samples-per-class", "2",
                  *PRIOR_ARGS, *COMMON_ARGS]
    prior_metrics = fit_prior.main(fit_prior.get_args_parser().parse_args(prior_args))
    return {"runs": runs, "vqvae": runs / "vq" / "vqvae.pt", "prior": runs / "prior" / "prior.pt",
            "vq_metrics": vq_metrics, "prior_metrics": prior_metrics}


@dataclass(frozen=True)
class TinyFit:
    """A fitted VQ-VAE and prior: their checkpoints and the metrics their fits returned."""

    vqvae: Path
    prior: Path
    vqvae_metrics: dict
    prior_metrics: dict


def ctrl_c_as_default() -> None:
    """``preexec_fn`` of a child that is sent Ctrl-C: SIGINT back to its default before the child starts, where the
    tests run as a background job (started with SIGINT ignored, which the child would inherit and keep)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_vqvae(out: Path, *options: str) -> dict:
    """``python -m pipelines.fit_vqvae --out OUT``: one epoch on the CPU, the embedded MNIST sample and the model
    of ``VQVAE_32_CODES``, unless ``options`` say otherwise (a later option wins)."""
    args = ["--out", str(out), "--epochs", "1", "--no-progress", "--device", "cpu", *VQVAE_32_CODES, *options]
    return fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(args))


def run_prior(vqvae: Path, out: Path, *options: str) -> dict:
    """``python -m pipelines.fit_prior --vqvae VQVAE --out OUT``: one epoch on the CPU and the model of
    ``PRIOR_3_LAYERS``, unless ``options`` say otherwise (a later option wins)."""
    args = ["--vqvae", str(vqvae), "--out", str(out), "--epochs", "1", "--no-progress", "--device", "cpu",
            *PRIOR_3_LAYERS, *options]
    return fit_prior.main(fit_prior.get_args_parser().parse_args(args))


def logged(folder: Path) -> list[dict]:
    """The lines of a fit's ``metrics.jsonl``, one an epoch."""
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def logged_epochs(folder: Path) -> list[int]:
    return [m["epoch"] for m in logged(folder)]


def assert_equal_weights(expected: dict, found: dict, where: object) -> None:
    """Two checkpoints' payloads hold bit-identical weights."""
    for key, tensor in expected["model"].items():
        assert torch.equal(found["model"][key], tensor), f"{where}: {key} differs"


def assert_same_fits(a: Path, b: Path, kind: str) -> None:
    """The best and the last checkpoints of the fits in folders ``a`` and ``b`` hold bit-identical weights, of the
    same epochs."""
    for name in (f"{kind}.pt", f"{kind}-last.pt"):
        first, second = load_checkpoint(a / name), load_checkpoint(b / name)
        assert first["epoch"] == second["epoch"], name
        assert_equal_weights(first, second, b / name)
