"""Waveforms <-> normalized log spectrograms, and the metrics used to judge a reconstruction.

Representation: a clip is first padded with zeros at the end (or trimmed from the end) to a fixed
``cfg.num_samples``, then turned into either

* ``"stft"``: the log-magnitude STFT (Hann window, ``n_fft`` samples, ``hop_length`` hop, centered frames), or
* ``"mel"``: the log-magnitude mel spectrogram (librosa's Slaney mel filters applied to the STFT magnitude).

Magnitudes go to decibels as ``20 log10(max(|S|, 1e-5))`` (floor -100 dB), are clipped to ``[db_min, db_max]``
and mapped linearly to ``[0, 1]``. The result is an image ``(n_frames, F)`` for the VQ-VAE, whose encoder
downsamples both axes by 8 by default for audio, so the defaults give F and ``n_frames`` divisible by 8.

Layout: time runs down the rows and frequency along them (the transpose of librosa's ``(F, n_frames)``), so that
the prior's raster scan, row by row, moves forward in time: each code is predicted from every earlier moment of
the clip and from the lower frequencies of its own moment, the order speech is produced in. With frequency as rows
the scan would instead lay down the lowest band for the whole clip before any higher one, and a code would not
see the formants of its own moment. :func:`picture` turns images back into the usual drawing for PNGs.

Defaults (Free Spoken Digit Dataset, 8 kHz): ``representation="mel"`` with ``n_mels=64``: half the rows of the
STFT, so the VQ-VAE trains about twice as fast on 2 CPU cores and the prior has half the codes per clip,
for a Griffin-Lim ceiling 1.3 dB higher (on the 64 held-out FSDD clips that ``pipelines.fit_vqvae`` reports on:
4.66 dB mel, 3.39 dB stft). ``n_fft=254`` gives ``254 // 2 + 1 = 128`` frequency bins (31.5 Hz apart), under
64 mel bands none of which is empty (checked in ``__post_init__``); ``hop_length=64`` (75 % overlap, which
Griffin-Lim needs for a clean inversion); ``n_frames=80`` gives ``num_samples = (80 - 1) * 64 = 5056`` samples =
0.632 s, which covers the 95th percentile of FSDD durations (0.62 s): FSDD gives 80 x 64 mel images (10 x 8
codes), or 80 x 128 stft images (10 x 16 codes). ``db_min=-50, db_max=35``: the FSDD stft range (loudest bin
32.6 dB) with 85 dB below it. These are only for direct use of an stft config; ``data.audio.load_audio_folder``
computes them from the train split (and for mel, whose Slaney filters average rather than sum, the loudest FSDD
bin is near 2 dB, so its range sits lower: -78.2 to 1.8 dB).

Inversion: denormalize, undo the dB, for mel solve for an STFT magnitude by non-negative least squares
(``librosa.feature.inverse.mel_to_stft``), then Griffin-Lim with a fixed random start (``random_state=0``):
the same spectrogram always gives the same waveform. A normalized 0 (a bin clipped at ``db_min``) comes back as
silence (magnitude 0), not as a noise floor at ``db_min``: padding and pauses stay silent. This lowers the
Griffin-Lim ceiling (original -> ``invert`` -> LSD against the original) on the 250 FSDD held-out clips from 11.0
to 3.1 dB (stft, the loader's range [-47.4, 32.6] dB), and on 30 of them from 9.4 to 3.6 dB (mel). Deviation: no
phase is stored, so a round trip never gives back the waveform, only its magnitudes.

A model's spectrogram is not exactly 0 where the original is: a VQ-VAE decoder puts small positive values in the bins
that should be silent (44.7 % of the bins of the 64 FSDD held-out clips below are 0 in the original), each of which
the inversion would turn into a floor at ``db_min``, spread by the mel inversion over every frequency. So ``invert``
treats every normalized value <= ``silence_below`` (0.01: within 0.8 dB of ``db_min`` at an 80 dB range) as
silence. On the 64 held-out clips that ``pipelines.fit_vqvae`` reports on, the default FSDD VQ-VAE's
reconstructions go from 11.07 to 6.13 dB log-spectral distance, the originals (the ceiling) from 4.66 to 4.79 dB;
at 0.02 / 0.03 / 0.05: 6.32 / 6.55 / 6.96 dB (ceilings 4.93 / 5.08 / 5.41)
(``python -m pipelines.audio_eval --vqvae runs/fsdd/vqvae.pt --silence-below T``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf
import torch
from einops import rearrange
from torch import Tensor

from vqvae_prior.errors import CheckpointError, DataError
from vqvae_prior.modality import Modality, Outputs

__all__ = [
    "AMIN",
    "AUDIO_EXTENSIONS",
    "SpectrogramConfig",
    "Spectrograms",
    "invert",
    "log_spectral_distance",
    "magnitude",
    "magnitude_db",
    "mel_envelope",
    "picture",
    "read_clip",
    "read_wave",
    "spectral_convergence",
    "spectrogram",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")

AMIN = 1e-5  # magnitude floor before the dB conversion: -100 dB
LSD_FLOOR_DB = -80.0  # log_spectral_distance floors powers at this far below the reference's peak power


@dataclass(frozen=True)
class SpectrogramConfig:
    """How waveforms become ``(n_frames, F)`` images in ``[0, 1]`` and back; see the module docstring.

    Attributes:
        sample_rate: samples per second of the waveforms.
        representation: ``"stft"`` (log magnitude, F = n_fft // 2 + 1) or ``"mel"`` (log mel, F = n_mels).
        n_fft: FFT size (and Hann window length) in samples.
        hop_length: samples between frames.
        n_mels: mel bands (used only when representation is ``"mel"``).
        n_frames: frames per clip; clips are padded/trimmed to ``num_samples = (n_frames - 1) * hop_length``.
        db_min: dB mapped to 0 (lower values are clipped to it).
        db_max: dB mapped to 1 (higher values are clipped to it).
        griffin_lim_iters: Griffin-Lim iterations used by :func:`invert`.
        silence_below: normalized values <= this are inverted as silence (magnitude 0) by :func:`invert`, in
            ``[0, 1)``; 0: only exact zeros.
        mel_fill: :func:`invert` raises each STFT magnitude that the mel inversion gives to at least this fraction
            of :func:`mel_envelope` (the band levels interpolated in dB), in ``[0, 1]``; 0: the least-squares
            magnitudes as they are. Used only when representation is ``"mel"``.
    """

    sample_rate: int = 8000
    representation: str = "mel"
    n_fft: int = 254
    hop_length: int = 64
    n_mels: int = 64
    n_frames: int = 80
    db_min: float = -50.0
    db_max: float = 35.0
    griffin_lim_iters: int = 64
    silence_below: float = 0.01
    mel_fill: float = 0.3

    def __post_init__(self) -> None:
        if self.representation not in ("stft", "mel"):
            raise ValueError(f"SpectrogramConfig.representation must be 'stft' or 'mel', got {self.representation!r}")
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "griffin_lim_iters"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SpectrogramConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if not 0.0 <= self.silence_below < 1.0:
            raise ValueError(f"SpectrogramConfig.silence_below must be in [0, 1), got {self.silence_below!r}")
        if not 0.0 <= self.mel_fill <= 1.0:
            raise ValueError(f"SpectrogramConfig.mel_fill must be in [0, 1], got {self.mel_fill!r}")
        if not isinstance(self.n_frames, int) or self.n_frames < 2:
            raise ValueError(f"SpectrogramConfig.n_frames must be an int >= 2, got {self.n_frames!r}")
        if self.hop_length > self.n_fft:
            raise ValueError(f"SpectrogramConfig.hop_length ({self.hop_length}) must be <= n_fft ({self.n_fft})")
        if not float(self.db_min) < float(self.db_max):
            raise ValueError(f"SpectrogramConfig needs db_min < db_max, got {self.db_min} and {self.db_max}")
        if self.representation == "mel":
            with warnings.catch_warnings():  # librosa warns about empty filters; the error below says more
                warnings.simplefilter("ignore", UserWarning)
                empty = int((self.mel_basis().max(axis=1) == 0).sum())
            if empty:
                raise ValueError(
                    f"SpectrogramConfig: n_mels={self.n_mels} leaves {empty} mel filters empty with n_fft={self.n_fft} "
                    f"at sample_rate={self.sample_rate}; use fewer mel bands or a larger n_fft"
                )

    @property
    def num_samples(self) -> int:
        """Clip length in samples: centered frames give exactly ``n_frames`` frames for this many samples."""
        return (self.n_frames - 1) * self.hop_length

    @property
    def n_bins(self) -> int:
        """F, the number of rows of a spectrogram."""
        return self.n_mels if self.representation == "mel" else self.n_fft // 2 + 1

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_frames, F)`` of one spectrogram image: time down the rows."""
        return (self.n_frames, self.n_bins)

    def mel_basis(self) -> np.ndarray:
        """The mel filter bank ``(n_mels, n_fft // 2 + 1)`` (librosa defaults: Slaney scale and area norm)."""
        return librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels)


def _check_wave(wave: np.ndarray, name: str = "wave") -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim < 1 or not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"{name} must be a float array (..., T), got dtype {wave.dtype} and shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return wave


def magnitude(wave: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Linear magnitudes (STFT or mel) of a clip padded with zeros / trimmed at the end to ``cfg.num_samples``.

    Args:
        wave: float waveform ``(T,)``, or a batch ``(N, T)``.
    Returns:
        float32 ``(F, n_frames)``, or ``(N, F, n_frames)``.
    """
    wave = librosa.util.fix_length(_check_wave(wave), size=cfg.num_samples, axis=-1)
    mag = np.abs(librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length))  # (..., n_fft // 2 + 1, n_frames)
    if cfg.representation == "mel":
        mag = np.einsum("mf,...ft->...mt", cfg.mel_basis(), mag)  # (..., n_mels, n_frames)
    return mag.astype(np.float32)


def magnitude_db(wave: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """``20 log10(max(magnitude, 1e-5))``, not clipped: ``(T,)`` -> ``(F, n_frames)`` (or batched) float32 dB."""
    return librosa.amplitude_to_db(magnitude(wave, cfg), ref=1.0, amin=AMIN, top_db=None).astype(np.float32)


def normalize_db(db: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Clip dB values to ``[db_min, db_max]`` and map them linearly to ``[0, 1]`` (float32, same shape)."""
    lo, hi = np.float32(cfg.db_min), np.float32(cfg.db_max)
    return ((np.clip(db, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def spectrogram(wave: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Normalized log spectrogram of a clip.

    Args:
        wave: float waveform ``(T,)`` (or a batch ``(N, T)``) at ``cfg.sample_rate``; padded with zeros at the end
            or trimmed from the end to ``cfg.num_samples``.
    Returns:
        float32 ``(n_frames, F)`` (or ``(N, n_frames, F)``) in ``[0, 1]``: time down the rows.
    """
    return rearrange(normalize_db(magnitude_db(wave, cfg), cfg), "... f t -> ... t f")


def invert(spec: np.ndarray, cfg: SpectrogramConfig, n_iter: int | None = None) -> np.ndarray:
    """Waveform of a normalized spectrogram by Griffin-Lim (deterministic: fixed random start).

    Args:
        spec: float ``(n_frames, F)`` in ``[0, 1]``, as made by :func:`spectrogram` (or by a model); values
            <= ``cfg.silence_below`` are silence.
        n_iter: Griffin-Lim iterations; ``cfg.griffin_lim_iters`` when None.
    Returns:
        float32 ``(cfg.num_samples,)``.
    """
    spec = np.asarray(spec, dtype=np.float32)
    n_iter = cfg.griffin_lim_iters if n_iter is None else n_iter
    if n_iter < 1:
        raise ValueError(f"invert: n_iter must be >= 1, got {n_iter}")
    if spec.shape != cfg.shape:
        raise ValueError(f"invert: spec must have shape {cfg.shape} (n_frames, F) for this config, got {spec.shape}")
    if not (np.all(np.isfinite(spec)) and spec.min() >= 0.0 and spec.max() <= 1.0):
        raise ValueError("invert: spec values must be finite and in [0, 1]; clamp a model's output first")
    spec = rearrange(spec, "t f -> f t")  # librosa's layout
    db = spec * np.float32(cfg.db_max - cfg.db_min) + np.float32(cfg.db_min)  # (F, n_frames)
    mag = np.where(spec > cfg.silence_below, librosa.db_to_amplitude(db), np.float32(0))  # silence, not db_min
    if cfg.representation == "mel":
        mel = mag  # (n_mels, n_frames)
        mag = librosa.feature.inverse.mel_to_stft(mel, sr=cfg.sample_rate, n_fft=cfg.n_fft, power=1.0)  # (K, frames)
        if cfg.mel_fill > 0:
            mag = np.maximum(mag, np.float32(cfg.mel_fill) * mel_envelope(mel, cfg))  # (K, n_frames)
    wave = librosa.griffinlim(
        mag, n_iter=n_iter, hop_length=cfg.hop_length, n_fft=cfg.n_fft,
        length=cfg.num_samples, init="random", random_state=0,
    )
    return wave.astype(np.float32)


def mel_envelope(mel: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """The STFT magnitudes ``(n_fft // 2 + 1, n_frames)`` of a flat spectrum within each mel band, interpolated in dB
    (geometrically) between the bands' centre frequencies and held beyond the first and last, of linear mel
    magnitudes ``(n_mels, n_frames)``; a bin beside a silent band (0) stays silent.

    The least-squares inversion of a mel spectrogram (``librosa.feature.inverse.mel_to_stft``) leaves many bins
    between the filters' peaks at or near 0, which a log-spectral distance counts as silence where the speech has
    energy; :func:`invert` raises them to ``cfg.mel_fill`` of this envelope (docs/audio.md gives what it changes).
    """
    basis = cfg.mel_basis()  # (n_mels, K)
    level = mel / basis.sum(axis=1, keepdims=True)  # (n_mels, n_frames): a flat spectrum's magnitude in each band
    centres = librosa.mel_frequencies(cfg.n_mels + 2, fmax=cfg.sample_rate / 2)[1:-1]  # (n_mels,) ascending
    freqs = librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)  # (K,)
    hi = np.clip(np.searchsorted(centres, freqs), 1, len(centres) - 1)  # (K,) the centre at or above each bin
    w = np.clip((freqs - centres[hi - 1]) / (centres[hi] - centres[hi - 1]), 0.0, 1.0)[:, None]  # (K, 1)
    return (level[hi - 1] ** (1 - w) * level[hi] ** w).astype(np.float32)  # (K, n_frames); 0 ** 0 == 1


def check_wav_length(path: str | Path) -> None:
    """Refuse a WAV file whose data chunk holds fewer bytes than its header declares (a copy or download cut off);
    other formats, and WAVs written by streams (size 0 or 0xFFFFFFFF), pass."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        return
    with open(path, "rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            return  # not RIFF/WAVE: left to the decoder
        while len(header := f.read(8)) == 8:
            kind, size = header[:4], int.from_bytes(header[4:], "little")
            if kind == b"data":
                held = path.stat().st_size - f.tell()
                if size not in (0, 0xFFFFFFFF) and held < size:
                    raise DataError(f"audio file {path} is truncated: its header declares {size} bytes of samples, "
                                    f"the file holds {held}")
                return
            f.seek(size + size % 2, os.SEEK_CUR)  # chunks are padded to an even size


def read_wave(path: str | Path, sample_rate: int) -> np.ndarray:
    """The whole recording at ``path``: mono float32 ``(T,)`` at ``sample_rate``; a WAV file cut short (fewer bytes
    of samples than its header declares) is refused rather than read as a shorter clip."""
    check_wav_length(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:  # soundfile raises LibsndfileError (a RuntimeError) and others for undecodable files
        raise DataError(f"cannot decode audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise DataError(f"audio file {path} has no samples")
    wave = data.mean(axis=1)  # (T,)
    if rate != sample_rate:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate)
    return wave.astype(np.float32)


def read_clip(path: str | Path, cfg: SpectrogramConfig) -> np.ndarray:
    """The waveform behind a spectrogram of a data set: mono float32 ``(cfg.num_samples,)`` at
    ``cfg.sample_rate``, padded with zeros / trimmed at the end as :func:`spectrogram` does."""
    return librosa.util.fix_length(read_wave(path, cfg.sample_rate), size=cfg.num_samples)


def picture(images: torch.Tensor) -> torch.Tensor:
    """Spectrogram images ``(N, 1, n_frames, F)`` drawn as usual, for PNGs: ``(N, 1, F, n_frames)``, time to the
    right and the lowest frequency at the bottom."""
    return rearrange(images, "n c t f -> n c f t").flip(-2)


def spectral_convergence(reference_mag: np.ndarray, estimate_mag: np.ndarray) -> float:
    """``||S_ref - S_est||_F / ||S_ref||_F`` of two linear magnitude spectrograms of the same shape (0 = equal)."""
    ref, est = np.asarray(reference_mag, np.float64), np.asarray(estimate_mag, np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"spectral_convergence: shapes differ, {ref.shape} and {est.shape}")
    norm = np.linalg.norm(ref)
    if norm == 0:
        raise ValueError("spectral_convergence: the reference magnitudes are all zero")
    return float(np.linalg.norm(ref - est) / norm)


def log_spectral_distance(reference: np.ndarray, estimate: np.ndarray, cfg: SpectrogramConfig) -> float:
    """Log-spectral distance in dB between two waveforms, on their STFT power spectra (``cfg.n_fft``/``hop``).

    Per frame ``sqrt(mean over bins of (10 log10(P_ref / P_est))^2)``, averaged over frames. Both powers are
    floored at 80 dB below the reference's peak power (``LSD_FLOOR_DB``), so silent frames count as equal
    instead of exploding, and the distance does not depend on the overall level.

    Args:
        reference: float ``(T,)``.
        estimate: float ``(T,)``, same length (not padded or trimmed).
    Returns:
        the distance in dB (0 = identical spectra).
    """
    ref, est = _check_wave(reference, "reference"), _check_wave(estimate, "estimate")
    if ref.ndim != 1 or ref.shape != est.shape:
        raise ValueError(f"log_spectral_distance: expected (T,) waves of one length, got {ref.shape} {est.shape}")
    p_ref, p_est = (np.abs(librosa.stft(w, n_fft=cfg.n_fft, hop_length=cfg.hop_length)) ** 2 for w in (ref, est))
    floor = max(float(p_ref.max()), 1e-20) * 10 ** (LSD_FLOOR_DB / 10)
    diff = 10 * np.log10(np.maximum(p_ref, floor) / np.maximum(p_est, floor))  # (F, frames)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


class Spectrograms(Modality):
    """Recordings as normalized log spectrograms ``(N, 1, n_frames, F)``, time down the rows (module docstring).

    Args:
        config: the spectrogram settings of the data set (its spec's ``spectrogram``).
        label_pattern: the regex whose group ``label`` gives a file stem's class (its spec's ``label_pattern``),
            or None.
    """

    name = "audio"
    noun = "recording"
    extensions = AUDIO_EXTENSIONS
    # Audio data sets are small (FSDD: 2,250 train clips), so smaller batches give more steps. fit_vqvae: audio is
    # downsampled by 8 (FSDD: 80 x 64 spectrograms -> 10 x 8 codes): a quarter of the codes of downsample 4 makes the
    # prior's task easier, and its samples far more intelligible (docs/results.md); FSDD with these: 24 epochs in
    # about 7 to 13 minutes on 2 CPU cores. fit_prior: dropout and 8 shifts (one code row of the audio VQ-VAE) keep
    # the prior from overfitting: FSDD without them overfits after 9 epochs (held-out 4.95 -> 5.78 bits per code at
    # 22); with them it still improves at 60 (4.16). FSDD with these: 60 epochs in 18 to 34 minutes on 2 CPU cores
    # (docs/results.md). One level at 2e-3 on a cosine against 1e-3 held constant: 4.151 against 4.207 bits per
    # code, unguided samples recognized 89.6% and 90.1% (two fits) against 86.6% (audio_check, 150 a digit).
    # two levels: bottom codes 20 x 16 and top codes 10 x 8 of FSDD's 80 x 64; the bottom prior smaller, the pair
    # fitted in about the one level's minutes (docs/results.md). Their prior at 2e-3 against 1e-3: 3.754 bits per
    # code against 4.024 and 4.250 (other fits of the VQ-VAE), samples recognized more often guided and unguided.
    # Their VQ-VAE at 2e-3 on a cosine, as the pairs whose priors measured best: 5.50 and 5.52 dB against 5.56 and
    # 5.43 at 1e-3 held constant (the log-spectral distance; each two fits), the same minutes.
    # Two levels are the default: against one level, a pair of 64 bands reconstructs closer (log-spectral distance 5.4
    # to 5.6 against 6.2 dB) and, drawn at (0.7, 0.6), its samples are recognized more often, guided (the bottom level
    # alone, 98.7% against 97.9 to 98.3%) and unguided (92.2% against 89.6 to 90.1%), and are closer to real clips.
    # Two levels of 72 mel bands (20 x 18 bottom codes), batch 16 for 40 epochs: 5.25 dB against 5.52 for 64 bands at
    # 32 for 24 epochs (inverted without the mel fill; 5.19 and 5.48 with it); 72 bands alone: 5.42, batch 16 for 40
    # epochs alone: 5.46 (the bands' Griffin-Lim ceiling 4.54 against 4.79 dB; 80 bands' is 7.35 dB, 96 bands' 4.53).
    vqvae_defaults = {"epochs": {1: 24, 2: 40}, "batch_size": {1: 32, 2: 16}, "n_mels": {1: 64, 2: 72},
                      "downsample": {1: 8, 2: 4}, "levels": 2,
                      "lr": {1: 1e-3, 2: 2e-3}, "lr_schedule": {1: "constant", 2: "cosine"}, "channels": 128,
                      "residual_channels": 64, "codebook_size": 256}
    prior_defaults = {"epochs": {1: 60, 2: 24}, "batch_size": 32, "lr": 2e-3, "lr_schedule": "cosine",
                      "dropout": {1: 0.5, 2: 0.3}, "label_dropout": 0.1, "shifts": 8, "jitter": 0,
                      "bottom_layers": {2: 6}, "ema": 0.0}
    # The two-level prior's dropout 0.3 against 0.5, on the default VQ-VAE's codes: 4.434 bits per code against 4.470
    # (top 5.699 / 5.759, bottom 4.117 / 4.147) and unguided samples recognized 93.3% against 91.96% at (0.6, 0.6)
    # (93.4% against 92.4% at (0.6, 0.5); audio_check at 150 a digit, the lower family), the same minutes; 0.2:
    # 4.418 bits per code, 93.1%, further from real clips.
    # sampling: a two-level prior's samples are more often recognized, and closer to real clips, drawn cooler at both
    # levels (FSDD, a pair of 64 bands, unguided, audio_check at 150 clips a digit, the lower family: 92.2% at
    # (0.7, 0.6), 91.4% at (0.8, 0.6), 88.3% at (1, 0.7); 81.9% at 1 (50 a digit); (0.7, 0.5) no better and further
    # from real clips); one level's gain less (the shipped prior at 0.7: 91.3% against 89.6% at 1, and further from
    # real clips by one family). docs/results.md has each figure.
    # The default two-level pair (72 bands, batch 16 for 40 epochs), whose codes hold more (4.47 bits per code against
    # 3.47), its prior at dropout 0.5: at (0.6, 0.6) 92.7% / 91.96% unguided and, guided at the bottom (--guidance
    # 0 2), 98.7% / 98.5% with every digit at least 96%; at (0.7, 0.6) 93.3% / 91.9% and 99.1% / 99.0% with "two" at
    # 94% by log-mel; (0.6, 0.5) and (0.7, 0.5) within a point. At dropout 0.3 (the default), at (0.6, 0.6): 93.9% /
    # 93.3% unguided (another draw 95.3% / 93.6%), 99.5% / 98.6% guided, every digit at least 96%.
    sampling_defaults = {"temperature": {1: 1.0, 2: (0.6, 0.6)}}

    def __init__(self, config: SpectrogramConfig, label_pattern: str | None = None) -> None:
        self.config, self.label_pattern = config, label_pattern

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Spectrograms:
        return cls(SpectrogramConfig(**spec["spectrogram"]), spec.get("label_pattern"))

    def picture(self, x: Tensor) -> Tensor:
        return picture(x)  # (N, 1, F, n_frames)

    def inputs(self, x: Tensor | np.ndarray, sample_shape: tuple[int, int, int]) -> Tensor:
        """Spectrograms (N, 1, n_frames, F), or waveforms (N, T) at the config's sample rate (padded or trimmed as
        in the data set) turned into them."""
        if np.ndim(x) == 2:
            waves = x.cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
            x = torch.from_numpy(spectrogram(waves, self.config)).unsqueeze(1)  # (N, 1, n_frames, F)
        return super().inputs(x, sample_shape)

    def _also_takes(self) -> str:
        return " or waveforms (N, T)"

    def outputs(self, x: Tensor) -> Outputs:
        """Griffin-Lim waveforms (N, T) of decoded spectrograms (N, 1, n_frames, F), and their sample rate."""
        waves = [invert(spec[0].numpy(), self.config) for spec in x.cpu()]  # each (T,) from (n_frames, F)
        return torch.from_numpy(np.stack(waves)).float(), self.config.sample_rate

    def read(self, path: Path, sample_shape: tuple[int, int, int]) -> Tensor:
        """The recording as a waveform (T,), read as the data set's were."""
        return torch.from_numpy(read_clip(path, self.config))

    def label_of(self, path: Path) -> str | None:
        match = re.fullmatch(self.label_pattern, path.stem) if self.label_pattern else None
        return match["label"] if match else None

    def where_label(self) -> str:
        return "its name"

    def write_outputs(self, outputs: Outputs, paths: Sequence[Path]) -> None:
        """One WAV file of each waveform."""
        waveforms, sample_rate = outputs
        for wave, path in zip(waveforms, paths):
            sf.write(path, wave.numpy(), sample_rate)

    def check_sample_shape(self, sample_shape: Sequence[int], path: str | Path) -> None:
        """Refuse a VQ-VAE fitted on spectrograms of another layout than these settings give today, ``(1,
        n_frames, F)``: frequency-major ``(1, F, n_frames)`` ones were made before time ran down the rows."""
        expected = [1, *self.config.shape]
        if list(sample_shape) != expected:
            raise CheckpointError(f"{path}: an audio VQ-VAE fitted on {list(sample_shape)} spectrograms, but its settings "
                            f"now give {expected} (1, n_frames, F: time down the rows); refit it with "
                                  "pipelines.fit_vqvae")
