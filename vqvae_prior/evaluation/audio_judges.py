"""The audio check's judges: how they hear a clip, independently of the VQ-VAE's spectrograms, and how they are
trained, in families (:class:`Family`, the registered ones in :data:`FAMILIES`) that hear differently, so that no
figure hinges on one way of hearing.

- ``log-mel`` (:class:`Hearing`, :class:`LogMel`): log-mel power; trained with each batch perturbed in time, speed
  and gain (:func:`perturb`), heard, then masked in time and frequency (:func:`mask`) as :class:`AugmentSettings`
  says.
- ``mfcc`` (:class:`CepstralHearing`, :class:`MFCC`): cepstra of log-mel power at another resolution, with their
  deltas (:func:`delta`) as channels; the same perturbation and no masks. A judge trained with masks learns to do
  without a band of frames or of mel bands, which is much of the detail a VQ-VAE's reconstruction blurs; judges
  without them are the stricter listeners of reconstructed and generated clips.

Recordings are read and resampled to a family's hearing by :func:`read_clips` and :func:`to_hearing`; a judge is
trained by :func:`train_judge` and cached under :func:`judge_key`.

References: Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition" (the
time and frequency masks; one of each here, and no time warping); Davis & Mermelstein 1980, "Comparison of
Parametric Representations for Monosyllabic Word Recognition in Continuously Spoken Sentences" (mel cepstra);
Furui 1986, "Speaker-Independent Isolated Word Recognition Using Dynamic Features of Speech Spectrum" (deltas).
Deviation from librosa's MFCC: log power floored at an absolute -100 dB rather than 80 dB below each clip's peak,
and delta-deltas as the delta of the deltas (HTK's way) rather than librosa's second-order fit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.audio import read_wave
from vqvae_prior.evaluation import classifier

__all__ = [
    "FAMILIES", "MFCC", "AugmentSettings", "CepstralHearing", "Family", "Hearing", "LogMel", "dct_matrix", "delta",
    "judge_key", "log_mel", "mask", "perturb", "read_clips", "to_hearing", "train_judge",
]


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


def log_mel(wave: Tensor, mel: Tensor, window: Tensor, hop_length: int, floor_db: float) -> Tensor:
    """Waveforms (B, T) -> log mel power in dB (B, n_mels, frames): a ``window``-ed STFT (centered frames, FFTs of
    the window's length) normalized so a full-scale sine has power 1/4 in its bin, the mel filters ``mel``
    (n_mels, n_fft // 2 + 1), ``10 log10`` floored at ``floor_db``."""
    spec = torch.stft(wave, len(window), hop_length, window=window, center=True, return_complex=True)
    power = spec.abs().square() / window.sum().square()  # (B, F, frames)
    return 10 * torch.log10((mel @ power).clamp(min=10 ** (floor_db / 10)))  # (B, n_mels, frames)


class LogMel(nn.Module):
    """Waveforms (B, T) at ``hearing.sample_rate`` -> standardized log-mel power (B, 1, frames, n_mels), time down
    the rows: :func:`log_mel` with a Hann window and triangular mel filters of peak 1 (librosa's, unnormalized),
    then ``(x - mean) / std`` with the statistics of the train clips (:meth:`fit`)."""

    channels = 1  # of its output: the judges' input channels

    def __init__(self, hearing: Hearing) -> None:
        super().__init__()
        self.hearing = hearing
        mel = librosa.filters.mel(sr=hearing.sample_rate, n_fft=hearing.n_fft, n_mels=hearing.n_mels, norm=None)
        self.register_buffer("mel", torch.from_numpy(mel).float())  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("window", torch.hann_window(hearing.n_fft))
        self.register_buffer("stats", torch.tensor([0.0, 1.0]))  # mean, std

    def forward(self, wave: Tensor) -> Tensor:
        db = log_mel(wave, self.mel, self.window, self.hearing.hop_length, self.hearing.floor_db)  # (B, n_mels, frames)
        return ((db - self.stats[0]) / self.stats[1]).transpose(1, 2)[:, None]  # (B, 1, frames, n_mels)

    @torch.no_grad()
    def fit(self, waves: Tensor) -> LogMel:
        """Set the standardization to the mean and deviation of the log-mel values of waves (N, T)."""
        self.stats = torch.tensor([0.0, 1.0])
        db = torch.cat([self(w) for w in waves.split(256)])  # (N, 1, frames, n_mels)
        self.stats = torch.stack([db.mean(), db.std()]).float()
        return self


@dataclass(frozen=True)
class CepstralHearing:
    """The second family's front end (:class:`MFCC`), at another resolution than :class:`Hearing`'s: ``seconds``
    of audio at ``sample_rate``, ``n_fft``-sample FFTs every ``hop_length`` samples (32 ms every 10 ms at 8 kHz),
    ``n_mels`` mel bands of log power floored at ``floor_db``, their first ``n_mfcc`` cepstral coefficients, with
    deltas and delta-deltas over ``delta_width`` frames."""

    sample_rate: int = 8000
    seconds: float = 1.0
    n_fft: int = 256
    hop_length: int = 80
    n_mels: int = 40
    n_mfcc: int = 20
    floor_db: float = -100.0
    delta_width: int = 9  # frames, odd: the regression's window (librosa's default)

    @property
    def num_samples(self) -> int:
        return round(self.seconds * self.sample_rate)


def dct_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) the first ``n_out`` rows of the orthonormal DCT-II of length ``n_in`` (scipy's
    ``dct(type=2, norm="ortho")``, librosa's MFCC)."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]  # (n_out, 1)
    n = torch.arange(n_in, dtype=torch.float64)[None]  # (1, n_in)
    basis = torch.cos(torch.pi * k * (2 * n + 1) / (2 * n_in)) * (2 / n_in) ** 0.5  # (n_out, n_in)
    basis[0] /= 2**0.5
    return basis.float()


def delta(x: Tensor, width: int) -> Tensor:
    """The local slope of features (B, C, frames) along the frames: the least-squares regression over ``width``
    frames centered on each (librosa's ``feature.delta`` inside the clip), the edge frames repeated beyond it."""
    half = width // 2
    n = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)  # (width,)
    kernel = (n / n.square().sum()).expand(x.shape[1], 1, width)  # (C, 1, width): out[t] = sum_n n x[t + n] / sum n^2
    return F.conv1d(F.pad(x, (half, half), mode="replicate"), kernel, groups=x.shape[1])  # (B, C, frames)


def _unit_stats(n_mfcc: int) -> Tensor:
    """(2, 1, 3, 1, n_mfcc): a mean of 0 and a deviation of 1 for each channel and coefficient."""
    return torch.stack([torch.zeros(1, 3, 1, n_mfcc), torch.ones(1, 3, 1, n_mfcc)])


class MFCC(nn.Module):
    """Waveforms (B, T) at ``hearing.sample_rate`` -> standardized cepstra (B, 3, frames, n_mfcc), time down the
    rows, three channels: the cepstral coefficients (the DCT, :func:`dct_matrix`, of :func:`log_mel` at the hearing's
    resolution), their deltas and their delta-deltas (:func:`delta` twice); each channel and coefficient standardized
    by the mean and deviation over the train clips and their frames (:meth:`fit`)."""

    channels = 3

    def __init__(self, hearing: CepstralHearing) -> None:
        super().__init__()
        self.hearing = hearing
        mel = librosa.filters.mel(sr=hearing.sample_rate, n_fft=hearing.n_fft, n_mels=hearing.n_mels, norm=None)
        self.register_buffer("mel", torch.from_numpy(mel).float())  # (n_mels, n_fft // 2 + 1)
        self.register_buffer("dct", dct_matrix(hearing.n_mels, hearing.n_mfcc))  # (n_mfcc, n_mels)
        self.register_buffer("window", torch.hann_window(hearing.n_fft))
        self.register_buffer("stats", _unit_stats(hearing.n_mfcc))  # mean, std: (2, 1, 3, 1, n_mfcc)

    def forward(self, wave: Tensor) -> Tensor:
        h = self.hearing
        cepstra = self.dct @ log_mel(wave, self.mel, self.window, h.hop_length, h.floor_db)  # (B, n_mfcc, frames)
        d1 = delta(cepstra, h.delta_width)
        x = torch.stack([cepstra, d1, delta(d1, h.delta_width)], 1).transpose(2, 3)  # (B, 3, frames, n_mfcc)
        return (x - self.stats[0]) / self.stats[1]

    @torch.no_grad()
    def fit(self, waves: Tensor) -> MFCC:
        """Set the standardization to the mean and deviation of each channel and coefficient over waves (N, T)."""
        self.stats = _unit_stats(self.hearing.n_mfcc)
        x = torch.cat([self(w) for w in waves.split(256)])  # (N, 3, frames, n_mfcc)
        self.stats = torch.stack([x.mean((0, 2), keepdim=True), x.std((0, 2), keepdim=True)]).float()
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


@dataclass(frozen=True)
class Family:
    """A family of judges: the front end they hear through (``front`` built from ``hearing``) and their training
    augmentation. The registered ones are :data:`FAMILIES`."""

    name: str
    front: type[LogMel] | type[MFCC]
    hearing: Hearing | CepstralHearing
    augment: AugmentSettings

    def settings(self) -> dict[str, Any]:
        """Everything that defines the family, JSON-able (in the judges' cache key and in the report)."""
        return {"family": self.name, "front": self.front.__name__, "hearing": asdict(self.hearing),
                "augment": asdict(self.augment)}


FAMILIES = {
    "log-mel": Family("log-mel", LogMel, Hearing(), AugmentSettings()),
    "mfcc": Family("mfcc", MFCC, CepstralHearing(), AugmentSettings(time_mask=0, freq_mask=0)),
}  # fmt: skip


def judge_key(family: Family, data: str, label_names: list[str], config: classifier.ClassifierConfig,
              settings: classifier.TrainSettings) -> dict[str, Any]:
    """The cache key of a judge (:func:`vqvae_prior.evaluation.classifier.cached_classifier`): the family and all
    its settings, the digest ``data`` of the train waveforms and labels, the classes, the classifier and its
    training."""
    return {"kind": "audio-classifier", **family.settings(), "data": data, "label_names": label_names,
            "config": asdict(config), "train": asdict(settings)}


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
    waves: Tensor, labels: Tensor, front: LogMel | MFCC, config: classifier.ClassifierConfig,
    settings: classifier.TrainSettings, aug: AugmentSettings, device: torch.device,
) -> nn.Module:
    """A judge (:class:`vqvae_prior.evaluation.classifier.ConvClassifier`) trained on waveforms (N, T) at the front
    end's rate with labels (N,): each batch perturbed (:func:`perturb`), heard (``front``) and masked
    (:func:`mask`)."""
    return classifier.train_classifier(
        lambda: classifier.ConvClassifier(config), waves, labels, settings, device,
        lambda w, g: mask(front(perturb(w, aug, front.hearing.sample_rate, g)), aug, g),
    )


def to_hearing(waves: np.ndarray | Tensor, sample_rate: int, hearing: Hearing | CepstralHearing) -> Tensor:
    """Waveforms (N, T) at ``sample_rate`` -> (N, hearing.num_samples) at the judges' rate, float32."""
    waves = np.asarray(waves, dtype=np.float32)
    if sample_rate != hearing.sample_rate:
        waves = librosa.resample(waves, orig_sr=sample_rate, target_sr=hearing.sample_rate, axis=-1)
    return torch.from_numpy(librosa.util.fix_length(waves, size=hearing.num_samples, axis=-1)).float()


def read_clips(paths: list[Path], hearing: Hearing | CepstralHearing) -> Tensor:
    """The recordings at ``paths``, whole, as the judges hear them: (N, hearing.num_samples)."""
    return torch.stack([to_hearing(read_wave(p, hearing.sample_rate)[None], hearing.sample_rate, hearing)[0]
                        for p in paths])  # fmt: skip
