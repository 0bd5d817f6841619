"""How well an audio VQ-VAE's reconstructions survive Griffin-Lim: the held-out log-spectral distance that
``pipelines.fit_vqvae`` reports for audio data sets and ``pipelines.audio_eval`` reports for a fitted checkpoint.

On a fixed subset of held-out clips, spread evenly over the split (Griffin-Lim is slow): the log-spectral distance in
dB between each original clip and the Griffin-Lim waveform of its reconstructed spectrogram (``test_lsd_db``),
beside the same distance for the original spectrogram (``ceiling_lsd_db``: what Griffin-Lim alone costs, computed
once). The inversion and the distance are :func:`vqvae_prior.audio.invert` and
:func:`vqvae_prior.audio.log_spectral_distance`.

Reference: Griffin & Lim 1984, "Signal Estimation from Modified Short-Time Fourier Transform".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import data
from vqvae_prior.audio import SpectrogramConfig, invert, log_spectral_distance, read_clip
from vqvae_prior.vqvae import VQVAE
from vqvae_prior.vqvae2 import VQVAE2

__all__ = ["HeldOutLSD", "griffin_lim_lsd"]


class HeldOutLSD:
    """The log-spectral distances of a fit, on ``clips`` held-out clips (all when ``clips`` < 1).

    Args:
        splits: a data set of recordings (:class:`vqvae_prior.audio.Spectrograms`), whose held-out items know
            their files.
        x_test: (N, 1, T, F) its held-out spectrograms.
        clips: how many held-out clips to use.
        every: report every ``every`` epochs (0: never) and after the last, ``epochs``.
    """

    def __init__(self, splits: data.DatasetSplits, x_test: Tensor, clips: int, every: int, epochs: int,
                 batch_size: int, device: torch.device) -> None:
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

    def metrics(self, model: VQVAE | VQVAE2, epoch: int) -> dict[str, Any]:
        """``test_lsd_db``, ``ceiling_lsd_db`` and ``lsd_clips`` when the epoch reports them, else nothing."""
        if not self.due(epoch):
            return {}
        lsd = griffin_lim_lsd(model, self.x, self.clips, self.cfg, self.batch_size, self.device)
        return {"test_lsd_db": lsd, "ceiling_lsd_db": self.ceiling, "lsd_clips": len(self.clips)}


@torch.no_grad()
def griffin_lim_lsd(
    model: VQVAE | VQVAE2 | None, x: Tensor, clips: list, cfg: Any, batch_size: int, device: torch.device
) -> float:
    """Mean log-spectral distance (dB) between ``clips`` and the Griffin-Lim waveforms of their spectrograms.

    Args:
        model: reconstructs the spectrograms first (a VQ-VAE of one level or two); None: inverts ``x`` itself (the
            ceiling).
        x: (N, 1, T, F) normalized spectrograms of the clips.
        clips: N waveforms (T_samples,), the originals padded / trimmed as for the spectrograms.
        cfg: the data set's :class:`vqvae_prior.audio.SpectrogramConfig`.
    """
    if model is not None:
        model.eval()
        x = torch.cat([model(xb.to(device)).reconstruction.cpu() for xb in x.split(batch_size)])  # (N, 1, T, F)
    specs = x.clamp(0, 1)[:, 0].numpy()  # (N, T, F)
    return sum(log_spectral_distance(c, invert(s, cfg), cfg) for s, c in zip(specs, clips)) / len(clips)
