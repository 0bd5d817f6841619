"""An audio VQ-VAE's held-out log-spectral distance after Griffin-Lim, as ``pipelines.fit_vqvae`` reports it for
audio data sets (:mod:`vqvae_prior.evaluation.lsd`), for a fitted checkpoint (its spectrogram settings, as the
inversion reads them today):

    python -m pipelines.audio_eval --vqvae runs/fsdd/vqvae.pt [--clips 64] [--data-root DIR] [--silence-below T]
        [--mel-fill R]
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pipelines import cli
from vqvae_prior.audio import Spectrograms
from vqvae_prior.checkpoint import load_vqvae
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation.lsd import HeldOutLSD
from vqvae_prior.registry import modality_of_spec
from vqvae_prior.training import batching

__all__ = ["get_args_parser", "main"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--vqvae", required=True, help="an audio VQ-VAE checkpoint of pipelines.fit_vqvae")
    parser.add_argument("--data-root", help="read its data set from this folder instead")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips, spread over the split (< 1: all)")
    parser.add_argument("--silence-below", type=float,
                        help="invert with this silence threshold instead of the checkpoint's (e.g. 0: as before it)")
    parser.add_argument("--mel-fill", type=float,
                        help="invert with this fraction of the mel envelope as the floor instead of the checkpoint's "
                             "(0: the least-squares magnitudes as they are)")
    parser.add_argument("--batch-size", type=int, default=32, help="clips a batch through the VQ-VAE")
    cli.add_device(parser)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Print and return ``test_lsd_db``, ``ceiling_lsd_db`` and ``lsd_clips`` of the checkpoint's held-out clips."""
    cli.at_least(args, 1, "batch_size")  # the project's check; --clips < 1 means all
    if args.silence_below is not None and not 0 <= args.silence_below < 1:
        raise UsageError(f"--silence-below must be in [0, 1), got {args.silence_below}")
    if args.mel_fill is not None and not 0 <= args.mel_fill <= 1:
        raise UsageError(f"--mel-fill must be in [0, 1], got {args.mel_fill}")
    device = cli.pick_device(args.device)
    cli.check_inputs(args, "data_root")
    model, payload = load_vqvae(args.vqvae, device)
    if not isinstance(modality_of_spec(payload.get("data", {})), Spectrograms):
        raise UsageError(f"--vqvae {args.vqvae}: expected an audio VQ-VAE (fitted on spectrograms)")
    splits = batching.load_splits(payload["data"], args.data_root)
    given = {name: getattr(args, name) for name in ("silence_below", "mel_fill") if getattr(args, name) is not None}
    if given:
        spectrogram = {**splits.spec["spectrogram"], **given}
        splits = dataclasses.replace(splits, spec={**splits.spec, "spectrogram": spectrogram})
    x_test, _ = batching.as_tensors(splits.test)
    lsd = HeldOutLSD(splits, x_test, args.clips, 0, 1, args.batch_size, device)
    result = lsd.metrics(model, 1)
    print(f"held-out log-spectral distance over {result['lsd_clips']} clips: {result['test_lsd_db']:.2f} dB "
          f"(Griffin-Lim of the originals: {result['ceiling_lsd_db']:.2f} dB)")
    return result

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
