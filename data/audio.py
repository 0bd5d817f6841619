"""A folder of recordings -> normalized spectrograms ``(1, T, F)`` (time down the rows) in ``[0, 1]``, held in memory.

Files: ``.wav``, ``.flac`` and ``.ogg`` (any case), found recursively and sorted by path, read with soundfile,
mixed down to mono (mean over channels) and resampled with librosa when their rate is not ``sample_rate``.
Spectrograms are made by :mod:`vqvae_prior.audio`; the settings that are not given are computed from the train
split and written, resolved, into ``spec`` so that ``load_dataset(**splits.spec)`` rebuilds the same tensors:

* ``n_frames``: enough frames for the 95th percentile of train clip lengths (longer clips are trimmed at the end,
  shorter padded with silence), rounded up to a multiple of 8 for the audio VQ-VAE (its default ``downsample``).
  FSDD: 80 frames = 0.632 s.
* ``db_max``: the loudest bin over the train spectrograms, so no train value is clipped at the top and inversion
  is faithful there; ``db_min = db_max - 80``: the usual 80 dB dynamic range (librosa's ``top_db``). A percentile
  was not used for ``db_min``: its value would depend on how much of each clip is padding (silence, -100 dB).

Labels come from file stems by ``label_pattern`` (a regex, matched against the whole stem, with a named group
``label``). With a group ``index`` the data set's own split is used: index 0-4 held out, the rest train (the Free
Spoken Digit Dataset convention); without one, a seeded split that holds out ``test_fraction`` of each class.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from data import DataError, DatasetSplits
from vqvae_prior.audio import AUDIO_EXTENSIONS, SpectrogramConfig, magnitude_db, normalize_db, read_wave

__all__ = ["FSDD_PATTERN", "SpectrogramDataset", "load_audio_folder"]

FSDD_PATTERN = r"(?P<label>\d+)_(?P<speaker>[^_]+)_(?P<index>\d+)"
FSDD_TEST_INDICES = range(5)  # files with index 0-4 are the held-out split
DYNAMIC_RANGE_DB = 80.0  # db_min = db_max - 80 when db_min is not given
_CHUNK = 256  # clips per batched STFT
INVERSION_SETTINGS = ("griffin_lim_iters", "silence_below", "mel_fill")  # how spectrograms are inverted, not computed


class SpectrogramDataset(Dataset):
    """Spectrograms held in memory; items are ``(images[i], int(labels[i]))``.

    Args:
        images: float32 ``(N, 1, T, F)`` in ``[0, 1]``.
        labels: int64 ``(N,)``.
        paths: the file of each spectrogram (``read_clip(paths[i], cfg)`` gives its waveform back), or None.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, paths: list[Path] | None = None) -> None:
        if images.ndim != 4 or images.shape[1] != 1 or labels.shape != (images.shape[0],):
            shapes = f"{tuple(images.shape)} and {tuple(labels.shape)}"
            raise ValueError(f"expected images (N, 1, T, F) and labels (N,), got {shapes}")
        if paths is not None and len(paths) != images.shape[0]:
            raise ValueError(f"expected {images.shape[0]} paths, got {len(paths)}")
        self.images, self.labels, self.paths = images, labels, paths

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def _split(stems: list[str], labels: np.ndarray, pattern: re.Pattern, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean ``(N,)``: True for held-out files."""
    if "index" in pattern.groupindex:
        return np.array([int(pattern.fullmatch(s)["index"]) in FSDD_TEST_INDICES for s in stems])
    rng, test = np.random.default_rng(seed), np.zeros(len(stems), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: round(test_fraction * len(members))]] = True
    return test


def load_audio_folder(
    root: str | Path | None,
    sample_rate: int = SpectrogramConfig.sample_rate,
    representation: str = SpectrogramConfig.representation,
    n_fft: int = SpectrogramConfig.n_fft,
    hop_length: int = SpectrogramConfig.hop_length,
    n_mels: int = SpectrogramConfig.n_mels,
    n_frames: int | None = None,
    db_min: float | None = None,
    db_max: float | None = None,
    label_pattern: str = FSDD_PATTERN,
    test_fraction: float = 0.1,
    seed: int = 0,
    spectrogram: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Load every recording under ``root`` as a normalized spectrogram; see the module docstring.

    Args:
        root: folder searched recursively for .wav/.flac/.ogg files.
        sample_rate, representation, n_fft, hop_length, n_mels: the :class:`SpectrogramConfig` fields.
        n_frames: frames per clip; None -> covers the 95th percentile of train lengths, a multiple of 8.
        db_min, db_max: normalization range in dB; None -> ``db_max`` = train maximum, ``db_min = db_max - 80``.
        label_pattern: regex matched against each file stem, with a named group ``label`` (and optionally
            ``index``: then index 0-4 is held out).
        test_fraction: fraction of each class held out when the pattern has no ``index`` group.
        seed: seed of that split.
        spectrogram: ``dataclasses.asdict`` of the :class:`SpectrogramConfig` found in a spec; checked against the
            resolved settings (its inversion settings, ``griffin_lim_iters``, ``silence_below`` and ``mel_fill``,
            are kept; the defaults where a spec written before them lacks them).
    Returns:
        DatasetSplits of :class:`SpectrogramDataset`, items ``(1, n_frames, F)`` float32 in ``[0, 1]``; ``spec``
        holds every option resolved plus ``spectrogram`` (the config as a dict).
    """
    if root is None or not Path(root).is_dir():
        raise DataError(f"audio-folder: root {root!r} is not an existing folder")
    if not 0 < test_fraction < 1:
        raise DataError(f"audio-folder: test_fraction must be in (0, 1), got {test_fraction}")
    try:
        SpectrogramConfig(sample_rate, representation, n_fft, hop_length, n_mels)  # fail before reading any file
        pattern = re.compile(label_pattern)
    except re.error as e:
        raise DataError(f"audio-folder: label_pattern {label_pattern!r} is not a valid regex: {e}") from e
    except ValueError as e:
        raise DataError(f"audio-folder: {e}") from e
    if "label" not in pattern.groupindex:
        raise DataError(f"audio-folder: label_pattern {label_pattern!r} has no named group 'label'")

    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"audio-folder: no audio files ({', '.join(AUDIO_EXTENSIONS)}, any case) under {root}")
    for p in files:
        if pattern.fullmatch(p.stem) is None:
            raise DataError(f"audio-folder: file name {p} does not match label_pattern {label_pattern!r}")
    stems = [p.stem for p in files]
    names = sorted({pattern.fullmatch(s)["label"] for s in stems})
    if all(n.isdigit() for n in names):
        names.sort(key=int)
    labels = np.array([names.index(pattern.fullmatch(s)["label"]) for s in stems], dtype=np.int64)  # (N,)
    waves = [read_wave(p, sample_rate) for p in files]
    test = _split(stems, labels, pattern, test_fraction, seed)  # (N,) bool
    for split, mask in (("train", ~test), ("test", test)):
        if not mask.any():  # e.g. an index pattern whose files all have index >= 5, or too few files per class
            raise DataError(
                f"audio-folder: the {split} split of {root} is empty ({len(files)} files, pattern {label_pattern!r})"
            )
    if n_frames is None:
        p95 = np.percentile([len(w) for w, t in zip(waves, test) if not t], 95)
        n_frames = 8 * math.ceil((math.ceil(p95 / hop_length) + 1) / 8)
    try:
        cfg = SpectrogramConfig(sample_rate, representation, n_fft, hop_length, n_mels, int(n_frames))
        batch = np.stack([librosa.util.fix_length(w, size=cfg.num_samples) for w in waves])  # (N, num_samples)
        db = np.concatenate([magnitude_db(batch[i : i + _CHUNK], cfg) for i in range(0, len(batch), _CHUNK)])
        db_max = float(db[~test].max()) if db_max is None else float(db_max)  # db: (N, F, n_frames)
        db_min = db_max - DYNAMIC_RANGE_DB if db_min is None else float(db_min)
        cfg = replace(cfg, db_min=db_min, db_max=db_max)
        if spectrogram is not None:
            spectrogram = {**{k: getattr(cfg, k) for k in INVERSION_SETTINGS}, **spectrogram}
            expected = asdict(replace(cfg, **{k: spectrogram[k] for k in INVERSION_SETTINGS}))
            wrong = sorted(k for k in expected.keys() | spectrogram.keys() if spectrogram.get(k) != expected.get(k))
            if wrong:
                raise DataError(
                    f"audio-folder: spectrogram {spectrogram} disagrees with the other options on {wrong}; "
                    f"they resolve to {expected}"
                )
            cfg = SpectrogramConfig(**spectrogram)
    except DataError:
        raise
    except ValueError as e:
        raise DataError(f"audio-folder: {e}") from e

    images = rearrange(torch.from_numpy(normalize_db(db, cfg)), "n f t -> n 1 t f")  # time down the rows
    labels_t = torch.from_numpy(labels)
    mask_test = torch.from_numpy(test)
    spec = dict(
        name="audio-folder", root=str(root), sample_rate=sample_rate, representation=representation, n_fft=n_fft,
        hop_length=hop_length, n_mels=n_mels, n_frames=cfg.n_frames, db_min=cfg.db_min, db_max=cfg.db_max,
        label_pattern=label_pattern, test_fraction=test_fraction, seed=seed, spectrogram=asdict(cfg),
    )
    return DatasetSplits(
        train=SpectrogramDataset(images[~mask_test], labels_t[~mask_test], [f for f, t in zip(files, test) if not t]),
        test=SpectrogramDataset(images[mask_test], labels_t[mask_test], [f for f, t in zip(files, test) if t]),
        label_names=tuple(names),
        spec=spec,
    )
