"""Fit a VQ-VAE to a data set of images or spectrograms.

    python -m pipelines.fit_vqvae --dataset mnist --data-root ../shared/data/mnist --out runs/mnist
    python -m pipelines.fit_vqvae --dataset audio-folder --data-root ../shared/data/fsdd/recordings --out runs/fsdd

Per epoch, on the held-out split: reconstruction MSE and PSNR, commitment loss, perplexity and codes used (and the
same code statistics over the training epoch); one line per epoch in OUT/metrics.jsonl. --levels 2 fits a two-level
VQ-VAE-2 (a top code map at twice --downsample) and adds its top level's code statistics (test_top_perplexity, ...). For recordings also the
log-spectral distance in dB between held-out clips and the Griffin-Lim waveforms of their reconstructed spectrograms
(test_lsd_db), beside the same distance for the original spectrograms (ceiling_lsd_db, what Griffin-Lim alone
costs), on --lsd-clips held-out clips. Writes OUT/reconstructions.png (held-out originals above their
reconstructions), OUT/vqvae.pt, the epoch with the lowest held-out MSE so far (what fit_prior reads), and
OUT/vqvae-last.pt, the last epoch with the training state that --resume continues; --patience N stops the fit once
the held-out MSE has not improved for N epochs. A non-finite loss stops the fit with an error, its checkpoints
untouched. The fit itself: vqvae_prior.training.fit_vqvae, which Python calls with a VQVAEFit of these options.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import cli
from vqvae_prior.registry import MODALITIES
from vqvae_prior.training import VQVAEFit, fit_vqvae


def get_args_parser() -> argparse.ArgumentParser:
    return cli.parser_for(VQVAEFit, __doc__, {name: m.vqvae_defaults for name, m in MODALITIES.items()})


def fit(out: str | Path, **options: Any) -> dict[str, Any]:
    """Fit a VQ-VAE into the folder ``out`` from Python, ``options`` as :class:`VQVAEFit`'s fields."""
    return fit_vqvae(VQVAEFit.of(out=str(out), **options))


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the VQ-VAE; returns the last epoch's metrics (with ``kept`` and ``best_epoch``, as logged)."""
    return fit_vqvae(VQVAEFit(**vars(args)))

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
