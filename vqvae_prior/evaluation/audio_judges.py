"""The audio check's judges: how they hear a clip, independently of the VQ-VAE's spectrograms (:class:`Hearing`,
:class:`LogMel`; recordings read and resampled to it by :func:`read_clips` and :func:`to_hearing`), and how they are
trained (:func:`train_judge`: each batch perturbed in time, speed and gain, heard, then masked in time and frequency
as :class:`AugmentSettings` says).

Reference: Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition" (the
time and frequency masks; one of each here, and no time warping).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.audio import read_wave
from vqvae_prior.evaluation import classifier

__all__ = ["AugmentSettings", "Hearing", "LogMel", "mask", "perturb", "read_clips", "to_hearing", "train_judge"]


@dataclass(frozen=True)
class Hearing:
    """The judges' own front end (:class:`LogMel`), independent of the VQ-VAE's spectrogram settings: ``seconds`` of
    audio at ``sample_rate``, ``n_fft``-sample FFTs every ``hop_length`` samples, ``n_mels`` mel bands of log power
    floored at ``floor_db``."""

    sample_rate: int = 8000
    seconds: float = 1.0  # clips are padded with silence or trimmed at the end to this
    n_fft: int = 512
    hop_length: int = 128
    n_mels: int = 40
    floor_db: float = -100.0  # log mel power floor (a full-scale sine: -6 dB in its band)

    @property
    def num_samples(self) -> int:
        return round(self.seconds * self.sample_rate)


class LogMel(nn.Module):
    """Waveforms (B, T) at ``hearing.sample_rate`` -> standardized log-mel power (B, 1, frames, n_mels), time down
    the rows: Hann-windowed STFT (centered frames) normalized so a full-scale sine has power 1/4 in its bin,
    triangular mel filters of peak 1 (librosa's, unnormalized), ``10 log10`` floored at ``hearing.floor_db``, then
    ``(x - mean) / std`` with the statistics of the train clips (:meth:`fit`)."""

    def __init__(self, hearing: Hearing) -> None:
        super().__init__()
        self.hearing = hearing
        mel = librosa.filters.mel(sr=hearing.sample_rate, n_fft=hearing.n_fft, n_mels=hearing.n_mels, norm=None)
        self.register_buffer("mel", torch.from_numpy(mel).float())  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("window", torch.hann_window(hearing.n_fft))
        self.register_buffer("stats", torch.tensor([0.0, 1.0]))  # mean, std

    def forward(self, wave: Tensor) -> Tensor:
        h = self.hearing
        spec = torch.stft(wave, h.n_fft, h.hop_length, window=self.window, center=True, return_complex=True)
        power = spec.abs().square() / self.window.sum().square()  # (B, F, frames)
        db = 10 * torch.log10((self.mel @ power).clamp(min=10 ** (h.floor_db / 10)))  # (B, n_mels, frames)
        return ((db - self.stats[0]) / self.stats[1]).transpose(1, 2)[:, None]  # (B, 1, frames, n_mels)

    @torch.no_grad()
    def fit(self, waves: Tensor) -> LogMel:
        """Set the standardization to the mean and deviation of the log-mel values of waves (N, T)."""
        self.stats = torch.tensor([0.0, 1.0])
        db = torch.cat([self(w) for w in waves.split(256)])  # (N, 1, frames, n_mels)
        self.stats = torch.stack([db.mean(), db.std()]).float()
        return self


@dataclass(frozen=True)
class AugmentSettings:
    """The judges' training augmentation, each drawn uniformly per clip: a time shift of up to ``shift_seconds``, a
    gain of up to ``gain_db`` and a speed of up to ``speed`` faster, each either way (:func:`perturb`); then one time
    mask of up to ``time_mask`` frames and one frequency mask of up to ``freq_mask`` mel bands (:func:`mask`)."""

    shift_seconds: float = 0.1
    gain_db: float = 6.0
    speed: float = 0.08
    time_mask: int = 8  # frames
    freq_mask: int = 6  # mel bands


def perturb(wave: Tensor, aug: AugmentSettings, sample_rate: int, generator: torch.Generator) -> Tensor:
    """Waveforms (B, T), each shifted in time, sped up or slowed down (resampled linearly) and scaled; silence
    where nothing is left to read."""
    B, T = wave.shape
    u = torch.rand(B, 3, generator=generator).to(wave.device) * 2 - 1  # (B, 3) in [-1, 1)
    shift = u[:, :1] * aug.shift_seconds * sample_rate  # (B, 1) samples; > 0: later
    speed = 1 + u[:, 1:2] * aug.speed  # (B, 1)
    source = (torch.arange(T, device=wave.device) - shift) * speed  # (B, T) where each output sample reads
    left = source.floor().long()
    frac = source - left
    padded = F.pad(wave, (1, 2))  # (B, T + 3): index i + 1 is sample i, zeros around
    before = padded.gather(1, (left + 1).clamp(0, T + 2))  # (B, T)
    after = padded.gather(1, (left + 2).clamp(0, T + 2))
    out = before * (1 - frac) + after * frac
    out = torch.where((source > -1) & (source < T), out, torch.zeros_like(out))  # (B, T)
    return out * 10 ** (u[:, 2:] * aug.gain_db / 20)


def mask(features: Tensor, aug: AugmentSettings, generator: torch.Generator) -> Tensor:
    """Log-mel features (B, 1, frames, n_mels) with one band of frames and one band of mel bands per clip set to
    0, the train mean (SpecAugment's time and frequency masks)."""
    B, _, T, M = features.shape
    out = features.clone()
    for size, length, axis in ((aug.time_mask, T, 2), (aug.freq_mask, M, 3)):
        width = torch.randint(0, size + 1, (B, 1), generator=generator)  # (B, 1)
        start = (torch.rand(B, 1, generator=generator) * (length - width + 1)).long()  # (B, 1)
        pos = torch.arange(length)[None]  # (1, length)
        hit = ((pos >= start) & (pos < start + width)).to(features.device)  # (B, length)
        shape = (B, 1, length, 1) if axis == 2 else (B, 1, 1, length)
        out = out.masked_fill(hit.view(shape), 0.0)
    return out


def train_judge(
    waves: Tensor, labels: Tensor, front: LogMel, config: classifier.ClassifierConfig,
    settings: classifier.TrainSettings, aug: AugmentSettings, device: torch.device,
) -> nn.Module:
    """A judge (:class:`vqvae_prior.evaluation.classifier.ConvClassifier`) trained on waveforms (N, T) at the front
    end's rate with labels (N,): each batch perturbed (:func:`perturb`), heard (``front``) and masked
    (:func:`mask`)."""
    return classifier.train_classifier(
        lambda: classifier.ConvClassifier(config), waves, labels, settings, device,
        lambda w, g: mask(front(perturb(w, aug, front.hearing.sample_rate, g)), aug, g),
    )


def to_hearing(waves: np.ndarray | Tensor, sample_rate: int, hearing: Hearing) -> Tensor:
    """Waveforms (N, T) at ``sample_rate`` -> (N, hearing.num_samples) at the judges' rate, float32."""
    waves = np.asarray(waves, dtype=np.float32)
    if sample_rate != hearing.sample_rate:
        waves = librosa.resample(waves, orig_sr=sample_rate, target_sr=hearing.sample_rate, axis=-1)
    return torch.from_numpy(librosa.util.fix_length(waves, size=hearing.num_samples, axis=-1)).float()


def read_clips(paths: list[Path], hearing: Hearing) -> Tensor:
    """The recordings at ``paths``, whole, as the judges hear them: (N, hearing.num_samples)."""
    return torch.stack([to_hearing(read_wave(p, hearing.sample_rate)[None], hearing.sample_rate, hearing)[0]
                        for p in paths])  # fmt: skip
