"""Fit a gated PixelCNN prior over the code maps of a fitted VQ-VAE, or over the pixels of images.

    python -m pipelines.fit_prior --vqvae runs/mnist/vqvae.pt --out runs/mnist-prior
    python -m pipelines.fit_prior --pixels 2 --dataset mnist --data-root ../shared/data/mnist --out runs/binary

Pixels (--pixels LEVELS, no VQ-VAE): each pixel of a gray image is a code with LEVELS values, as in the PixelCNN
papers (vqvae_prior/pixels.py: 2 levels are binarized MNIST, drawn once with a fixed seed; 256 an 8-bit image).
The held-out likelihood is then also reported as the papers report it: bits per dimension (test_bits_per_dim) and,
for 2 levels, nats per image (test_nats_per_image). --arch plain fits the plain masked PixelCNN instead of the
gated one, to compare them.

The data set is the one the VQ-VAE was fitted on (recorded in its checkpoint; --data-root reads it from another
folder). It is encoded once with the frozen VQ-VAE and the code maps are cached in the fit's folder, or in
--cache-dir to share them between fits (codes-<digest>.pt; an unreadable one is rebuilt). --shifts S (S > 1)
augments the small audio data sets: each training input is also encoded moved down by 1 .. S-1 rows, zero rows in
front (a spectrogram: delayed by that many frames, silence before it, its end cut), and every epoch draws one of
its S code maps; held-out figures use the inputs as they are. --jitter P (P > 0) does the same for images with
small translations: each training image is also encoded moved by every (dy, dx) with |dy|, |dx| <= P pixels, (2P +
1)^2 code maps per image. The prior is class-conditional when the data set has labels, unless --unconditional.

Per epoch: train and held-out bits per code (metrics.jsonl), a grid of decoded samples (samples.png, one row per
class), prior.pt, the epoch with the lowest held-out bits per code so far (what generate reads), and prior-last.pt,
the last epoch with the training state that --resume continues. --patience N stops the fit once the held-out bits
per code have not improved for N epochs. The fit itself: vqvae_prior.training.fit_prior, which Python calls with a
PriorFit of these options.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines import cli
from vqvae_prior.registry import MODALITIES
from vqvae_prior.training import PriorFit, fit_prior


def get_args_parser() -> argparse.ArgumentParser:
    return cli.parser_for(PriorFit, __doc__, {name: m.prior_defaults for name, m in MODALITIES.items()})


def fit(out: str | Path, vqvae: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Fit a prior over the codes of the VQ-VAE checkpoint ``vqvae`` (or, with ``pixels=LEVELS`` and ``dataset=``,
    over pixels) into the folder ``out`` from Python, ``options`` as :class:`PriorFit`'s fields."""
    return fit_prior(PriorFit.of(out=str(out), vqvae=None if vqvae is None else str(vqvae), **options))


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the prior; returns the last epoch's metrics (with ``kept`` and ``best_epoch``, as logged)."""
    return fit_prior(PriorFit(**vars(args)))

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
