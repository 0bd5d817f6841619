"""How well an audio VQ-VAE's reconstructions survive Griffin-Lim: the held-out log-spectral distance that
``pipelines.fit_vqvae`` reports for audio data sets, and, for a fitted checkpoint (its spectrogram settings, as
the inversion reads them today):

    python -m pipelines.audio_eval --vqvae runs/fsdd/vqvae.pt [--clips 64] [--data-root DIR] [--silence-below T]

On a fixed subset of held-out clips, spread evenly over the split (Griffin-Lim is slow): the log-spectral distance in
dB between each original clip and the Griffin-Lim waveform of its reconstructed spectrogram (``test_lsd_db``),
beside the same distance for the original spectrogram (``ceiling_lsd_db``: what Griffin-Lim alone costs, computed
once). Metrics of :mod:`vqvae_prior.audio`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch
from torch import Tensor

import data
from vqvae_prior.vqvae import VQVAE

__all__ = ["HeldOutLSD", "griffin_lim_lsd", "main"]


class HeldOutLSD:
    """The log-spectral distances of a fit, on ``clips`` held-out clips (all when ``clips`` < 1).

    Args:
        splits: an audio data set (``splits.modality == "audio"``), whose held-out items know their files.
        x_test: (N, 1, T, F) its held-out spectrograms.
        clips: how many held-out clips to use.
        every: report every ``every`` epochs (0: never) and after the last, ``epochs``.
    """

    def __init__(self, splits: data.DatasetSplits, x_test: Tensor, clips: int, every: int, epochs: int,
                 batch_size: int, device: torch.device) -> None:
        from vqvae_prior.audio import read_clip
        from vqvae_prior.audio import SpectrogramConfig

        self.cfg = SpectrogramConfig(**splits.spec["spectrogram"])
        n = len(x_test) if clips < 1 else min(clips, len(x_test))
        idx = torch.linspace(0, len(x_test) - 1, n).round().long()  # (n,) distinct
        self.x = x_test[idx]  # (n, 1, T, F)
        self.clips = [read_clip(splits.test.paths[i], self.cfg) for i in idx]  # n x (T_samples,), as padded/trimmed
        self.every, self.epochs, self.batch_size, self.device = every, epochs, batch_size, device
        self.ceiling = griffin_lim_lsd(None, self.x, self.clips, self.cfg, batch_size, device)

    def due(self, epoch: int) -> bool:
        """Whether epoch (from 1) reports the distance: every ``every`` epochs and the last one."""
        return epoch == self.epochs or (self.every > 0 and epoch % self.every == 0)

    def metrics(self, model: VQVAE, epoch: int) -> dict[str, Any]:
        """``test_lsd_db``, ``ceiling_lsd_db`` and ``lsd_clips`` when the epoch reports them, else nothing."""
        if not self.due(epoch):
            return {}
        lsd = griffin_lim_lsd(model, self.x, self.clips, self.cfg, self.batch_size, self.device)
        return {"test_lsd_db": lsd, "ceiling_lsd_db": self.ceiling, "lsd_clips": len(self.clips)}


@torch.no_grad()
def griffin_lim_lsd(
    model: VQVAE | None, x: Tensor, clips: list, cfg: Any, batch_size: int, device: torch.device
) -> float:
    """Mean log-spectral distance (dB) between ``clips`` and the Griffin-Lim waveforms of their spectrograms.

    Args:
        model: reconstructs the spectrograms first; None: inverts ``x`` itself (the ceiling).
        x: (N, 1, T, F) normalized spectrograms of the clips.
        clips: N waveforms (T_samples,), the originals padded / trimmed as for the spectrograms.
        cfg: the data set's :class:`vqvae_prior.audio.SpectrogramConfig`.
    """
    from vqvae_prior.audio import invert, log_spectral_distance

    if model is not None:
        model.eval()
        x = torch.cat([model(xb.to(device)).reconstruction.cpu() for xb in x.split(batch_size)])  # (N, 1, T, F)
    specs = x.clamp(0, 1)[:, 0].numpy()  # (N, T, F)
    return sum(log_spectral_distance(c, invert(s, cfg), cfg) for s, c in zip(specs, clips)) / len(clips)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, help="an audio VQ-VAE checkpoint of pipelines.fit_vqvae")
    parser.add_argument("--data-root", help="read its data set from this folder instead")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips, spread over the split (< 1: all)")
    parser.add_argument("--silence-below", type=float,
                        help="invert with this silence threshold instead of the checkpoint's (e.g. 0: as before it)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Print and return ``test_lsd_db``, ``ceiling_lsd_db`` and ``lsd_clips`` of the checkpoint's held-out clips."""
    from pipelines import cli
    from vqvae_prior.training import batching
    from vqvae_prior.checkpoint import load_vqvae
    from vqvae_prior.errors import UsageError

    cli.at_least(args, 1, "batch_size")  # the project's check; --clips < 1 means all
    if args.silence_below is not None and not 0 <= args.silence_below < 1:
        raise UsageError(f"--silence-below must be in [0, 1), got {args.silence_below}")
    device = cli.pick_device(args.device)
    model, payload = load_vqvae(args.vqvae, device)
    if payload.get("data", {}).get("modality") != "audio":
        raise UsageError(f"--vqvae {args.vqvae}: expected an audio VQ-VAE (fitted on spectrograms)")
    splits = batching.load_splits(payload["data"], args.data_root)
    if args.silence_below is not None:
        spectrogram = {**splits.spec["spectrogram"], "silence_below": args.silence_below}
        splits = dataclasses.replace(splits, spec={**splits.spec, "spectrogram": spectrogram})
    x_test, _ = batching.as_tensors(splits.test)
    lsd = HeldOutLSD(splits, x_test, args.clips, 0, 1, args.batch_size, device)
    result = lsd.metrics(model, 1)
    print(f"held-out log-spectral distance over {result['lsd_clips']} clips: {result['test_lsd_db']:.2f} dB "
          f"(Griffin-Lim of the originals: {result['ceiling_lsd_db']:.2f} dB)")
    return result


if __name__ == "__main__":
    from pipelines import cli

    cli.run(main, get_args_parser())
