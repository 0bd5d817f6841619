"""Tests of vqvae_prior/audio.py (spectrograms, Griffin-Lim, metrics) and data/audio.py (the audio-folder loader)."""

from dataclasses import replace
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from data import DataError, load_dataset
from data.audio import load_audio_folder
from vqvae_prior.audio import (
    SpectrogramConfig,
    invert,
    log_spectral_distance,
    magnitude,
    magnitude_db,
    mel_envelope,
    picture,
    spectral_convergence,
    spectrogram,
)

SR = 8000


def _tone(seconds: float, freq: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))).astype(np.float32)


def _chirp_harmonics(n: int) -> np.ndarray:
    """A 200-2000 Hz chirp plus four harmonics of 300 Hz under a smooth envelope, (n,) float32."""
    t = np.arange(n) / SR
    y = 0.3 * librosa.chirp(fmin=200, fmax=2000, sr=SR, length=n)
    y += sum(0.2 / k * np.sin(2 * np.pi * 300 * k * t) for k in range(1, 5))
    return (y * np.sqrt(np.hanning(n))).astype(np.float32)


# ---------------------------------------------------------------------------------------------- library


def test_default_shapes_divisible_by_4():
    mel, stft = SpectrogramConfig(), SpectrogramConfig(representation="stft")
    assert mel.representation == "mel" and mel.shape == (80, 64) and stft.shape == (80, 128)  # (n_frames, F)
    assert mel.num_samples == 5056
    for cfg in (stft, mel):
        x = spectrogram(_tone(0.5), cfg)
        assert x.shape == cfg.shape and x.dtype == np.float32
        assert x.shape[0] % 4 == 0 and x.shape[1] % 4 == 0


@pytest.mark.parametrize("representation", ["stft", "mel"])
def test_time_runs_down_the_rows(representation):
    """A low tone in the first half of the clip, then silence: early rows are loud, late rows silent, and within a
    row the loudest column is a low frequency; picture() draws it with time to the right, low frequencies at the
    bottom."""
    cfg = SpectrogramConfig(representation=representation)
    x = spectrogram(_tone(cfg.num_samples / 2 / SR, freq=300.0), cfg)  # (n_frames, F)
    frames = cfg.n_frames
    assert (x[frames // 8 : frames // 3].max(axis=1) > 0.5).all() and x[-frames // 4 :].max() == 0.0
    assert x[frames // 4].argmax() < cfg.n_bins // 4  # 300 Hz of 4 kHz
    drawn = picture(torch.from_numpy(x)[None, None])  # (1, 1, F, n_frames)
    assert drawn.shape == (1, 1, cfg.n_bins, frames)
    assert torch.equal(drawn[0, 0, -1], torch.from_numpy(x[:, 0]))  # bottom row: the lowest bin over time
    assert torch.equal(drawn[0, 0, :, 3], torch.from_numpy(x[3, ::-1].copy()))  # column: one frame, low at bottom


def test_normalization_maps_into_unit_interval():
    cfg = SpectrogramConfig(representation="stft", db_min=-20.0, db_max=10.0)  # narrow: noise and padding clip
    noise = np.random.default_rng(0).normal(0, 1, 3000).astype(np.float32)
    x = spectrogram(noise, cfg)
    assert x.min() == 0.0 and x.max() == 1.0  # padding (silence) -> 0, loud bins -> 1
    db = magnitude_db(noise, cfg)
    inside = (db > cfg.db_min) & (db < cfg.db_max)
    np.testing.assert_allclose(x.T[inside], (db[inside] + 20) / 30, atol=1e-6)  # db: (F, n_frames), librosa's


def test_pad_and_trim_at_the_end():
    cfg = SpectrogramConfig()
    y = _chirp_harmonics(cfg.num_samples + 500)
    np.testing.assert_array_equal(spectrogram(y, cfg), spectrogram(y[: cfg.num_samples], cfg))
    short = y[:1000]
    padded = np.concatenate([short, np.zeros(cfg.num_samples - 1000, np.float32)])
    np.testing.assert_array_equal(spectrogram(short, cfg), spectrogram(padded, cfg))


@pytest.mark.parametrize(
    "representation, sc_bound, lsd_bound",
    # measured with 64 iterations: stft SC 0.049, LSD 1.5 dB; mel SC 0.048 (mel magnitudes), LSD 3.7 dB
    [("stft", 0.08, 2.5), ("mel", 0.08, 5.0)],
)
def test_griffin_lim_round_trip(representation, sc_bound, lsd_bound):
    cfg = SpectrogramConfig(representation=representation)
    y = _chirp_harmonics(cfg.num_samples)
    peak = float(magnitude_db(y, cfg).max())
    cfg = replace(cfg, db_min=peak - 80, db_max=peak)
    w = invert(spectrogram(y, cfg), cfg)
    assert w.shape == (cfg.num_samples,) and w.dtype == np.float32
    assert spectral_convergence(magnitude(y, cfg), magnitude(w, cfg)) < sc_bound
    assert log_spectral_distance(y, w, cfg) < lsd_bound
    np.testing.assert_array_equal(w, invert(spectrogram(y, cfg), cfg))  # seeded: deterministic


def test_invert_zero_is_silence():
    cfg = SpectrogramConfig()
    assert not invert(np.zeros(cfg.shape, np.float32), cfg).any()  # not a noise floor at db_min
    y = _chirp_harmonics(cfg.num_samples // 2)  # then padding: the second half of the clip is silent
    w = invert(spectrogram(y, cfg), cfg)
    tail = slice(cfg.num_samples // 2 + cfg.n_fft, None)  # past the last frame that overlaps the chirp
    assert np.abs(w[tail]).max() < 1e-6 * np.abs(w).max()  # a floor at db_min gives 2e-3


def test_values_at_or_below_silence_below_are_silence():
    """A model's near-zero bins (a decoder rarely outputs exactly 0) invert to silence, not to a floor at db_min;
    silence_below=0 keeps them, as before the setting existed."""
    cfg = SpectrogramConfig()
    y = _chirp_harmonics(cfg.num_samples // 2)
    spec = spectrogram(y, cfg)
    hiss = np.where(spec == 0, np.float32(cfg.silence_below), spec)  # every silent bin just at the threshold
    tail = slice(cfg.num_samples // 2 + cfg.n_fft, None)  # past the last frame that overlaps the chirp
    w = invert(hiss, cfg)
    assert np.abs(w[tail]).max() < 1e-6 * np.abs(w).max()
    kept = invert(hiss, replace(cfg, silence_below=0.0))
    assert np.abs(kept[tail]).max() > 1e-4 * np.abs(kept).max()  # the floor at db_min comes back
    np.testing.assert_array_equal(invert(spec, cfg),  # the same as zeroing those bins first
                                  invert(np.where(spec > cfg.silence_below, spec, 0), replace(cfg, silence_below=0.0)))
    with pytest.raises(ValueError, match="silence_below"):
        SpectrogramConfig(silence_below=1.0)


def test_mel_fill_raises_what_the_least_squares_inversion_leaves_empty():
    """The envelope of a flat spectrum's mel bands is that flat spectrum; filling the least-squares magnitudes up to
    0.3 of the envelope brings a broadband clip back closer to the original than the magnitudes as they are."""
    cfg = SpectrogramConfig()
    flat = np.full((cfg.n_fft // 2 + 1, 3), 0.5, np.float32)  # (K, frames)
    np.testing.assert_allclose(mel_envelope(cfg.mel_basis() @ flat, cfg), flat, rtol=1e-5)
    noise = 0.1 * np.random.default_rng(0).standard_normal(cfg.num_samples) * np.hanning(cfg.num_samples)
    noise = noise.astype(np.float32)
    spec = spectrogram(noise, cfg)
    filled, plain = (log_spectral_distance(noise, invert(spec, replace(cfg, mel_fill=r)), cfg) for r in (0.3, 0.0))
    assert filled < plain - 0.3  # 9.57 against 10.01 dB
    for wrong in (-0.1, 1.5):
        with pytest.raises(ValueError, match="mel_fill"):
            SpectrogramConfig(mel_fill=wrong)


def test_metrics():
    cfg = SpectrogramConfig()
    y = _chirp_harmonics(4000)
    assert spectral_convergence(magnitude(y, cfg), magnitude(y, cfg)) == 0.0
    assert log_spectral_distance(y, y, cfg) == 0.0
    assert log_spectral_distance(y, np.zeros_like(y), cfg) > 10  # silence vs signal: bounded by the -80 dB floor
    noise = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)  # broadband: no bin at the floor
    assert log_spectral_distance(noise, 0.5 * noise, cfg) == pytest.approx(20 * np.log10(2), abs=1e-3)
    with pytest.raises(ValueError, match="shapes differ"):
        spectral_convergence(np.ones((4, 4)), np.ones((4, 5)))


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="representation"):
        SpectrogramConfig(representation="cqt")
    with pytest.raises(ValueError, match="db_min < db_max"):
        SpectrogramConfig(db_min=10.0, db_max=0.0)
    with pytest.raises(ValueError, match="mel filters empty"):
        SpectrogramConfig(representation="mel", n_mels=256)
    cfg = SpectrogramConfig()
    with pytest.raises(ValueError, match=r"\(80, 64\)"):
        invert(np.zeros((64, 80), np.float32), cfg)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        invert(np.full(cfg.shape, 1.5, np.float32), cfg)


# ---------------------------------------------------------------------------------------------- loader


def _write(folder: Path, name: str, wave: np.ndarray, sr: int = SR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / name, wave, sr, subtype="FLOAT" if name.lower().endswith(".wav") else None)


@pytest.fixture
def fsdd_like(tmp_path: Path) -> Path:
    """Digits 0 and 2, speaker 's', indices 0, 1 (test) and 5, 6, 7 (train); 2_s_6 is stereo; 2_s_8 at 16 kHz."""
    for digit, freq in ((0, 300.0), (2, 900.0)):
        for index in (0, 1, 5, 6, 7):
            _write(tmp_path / "sub", f"{digit}_s_{index}.wav", _tone(0.2 + 0.05 * index, freq))
    _write(tmp_path / "sub", "2_s_6.wav", np.stack([2 * _tone(0.5, 900.0), np.zeros(4000, np.float32)], axis=1))
    _write(tmp_path, "2_s_8.WAV", _tone(0.55, 900.0, sr=16000), sr=16000)
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def test_fsdd_like_folder(fsdd_like):
    splits = load_audio_folder(fsdd_like)
    n_frames = splits.spec["n_frames"]
    assert n_frames % 4 == 0 and (n_frames - 1) * 64 >= 0.95 * 0.55 * SR  # covers the long train clips
    assert splits.sample_shape == (1, n_frames, 64) and splits.label_names == ("0", "2")
    assert (len(splits.train), len(splits.test)) == (7, 4)  # index 0-4 held out
    assert splits.train.images.dtype == torch.float32 and splits.train.labels.dtype == torch.int64
    assert splits.test.labels.tolist() == [0, 0, 1, 1]
    x, label = splits.train[0]
    assert x.shape == (1, n_frames, 64) and isinstance(label, int)
    assert 0 <= splits.train.images.min() and splits.train.images.max() == 1.0  # db_max = train maximum
    assert splits.spec["db_min"] == splits.spec["db_max"] - 80
    # train order follows sorted paths: 2_s_8.WAV (root), then sub/0_s_5..7, sub/2_s_5..7
    cfg = SpectrogramConfig(**splits.spec["spectrogram"])
    stereo, resampled = splits.train.images[5, 0].numpy(), splits.train.images[0, 0].numpy()
    np.testing.assert_allclose(stereo, spectrogram(_tone(0.5, 900.0), cfg), atol=1e-5)  # mean of channels
    reference = spectrogram(_tone(0.55, 900.0), cfg)
    assert resampled.mean(axis=0).argmax() == reference.mean(axis=0).argmax()  # 900 Hz stays at 900 Hz
    assert np.abs(resampled - reference)[reference > 0.5].mean() < 0.02


def test_spec_round_trip(fsdd_like):
    splits = load_dataset("audio-folder", fsdd_like, representation="stft")
    assert splits.sample_shape[2] == 128 and splits.spec["name"] == "audio-folder" and splits.modality.name == "audio"
    again = load_dataset(**splits.spec)
    assert torch.equal(again.train.images, splits.train.images) and torch.equal(again.test.images, splits.test.images)
    assert again.spec == splits.spec
    older = {k: v for k, v in splits.spec["spectrogram"].items() if k != "silence_below"}  # a spec from before it
    assert load_dataset(**dict(splits.spec, spectrogram=older)).spec["spectrogram"]["silence_below"] == 0.01
    older = {k: v for k, v in splits.spec["spectrogram"].items() if k != "mel_fill"}
    assert load_dataset(**dict(splits.spec, spectrogram=older)).spec["spectrogram"]["mel_fill"] == 0.3
    bad = dict(splits.spec, spectrogram=dict(splits.spec["spectrogram"], n_fft=256))
    with pytest.raises(DataError, match="n_fft"):
        load_dataset(**bad)
    with pytest.raises(DataError, match="holds audio data, but its spec says modality='image'"):
        load_dataset(**dict(splits.spec, modality="image"))


def test_custom_pattern_stratified_split(tmp_path):
    for i in range(5):
        _write(tmp_path, f"dog_{i}.flac", _tone(0.3, 500.0))
        _write(tmp_path, f"cat_{i}.ogg", _tone(0.3, 1200.0))
    pattern = r"(?P<label>[a-z]+)_\d+"
    splits = load_audio_folder(tmp_path, label_pattern=pattern, test_fraction=0.2, seed=3)
    assert splits.label_names == ("cat", "dog") and (len(splits.train), len(splits.test)) == (8, 2)
    assert sorted(splits.test.labels.tolist()) == [0, 1]  # one of each class
    again = load_audio_folder(tmp_path, label_pattern=pattern, test_fraction=0.2, seed=3)
    assert torch.equal(again.test.images, splits.test.images)


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="not an existing folder"):
        load_audio_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no audio files \(\.wav, \.flac, \.ogg.*empty"):
        load_audio_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(DataError, match="x.wav.*label_pattern"):
        load_audio_folder(tmp_path / "bad")
    with pytest.raises(DataError, match=r"cannot decode audio file .*x\.wav") as info:
        load_audio_folder(tmp_path / "bad", label_pattern=r"(?P<label>.+)")
    assert info.value.__cause__ is not None
    _write(tmp_path / "train_only", "3_s_9.wav", _tone(0.3))
    with pytest.raises(DataError, match="test split .* is empty"):
        load_audio_folder(tmp_path / "train_only")


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_fsdd(shared_data):
    splits = load_dataset("audio-folder", root=shared_data("fsdd", "recordings"))
    assert len(splits.train) + len(splits.test) == 2500
    assert (len(splits.train), len(splits.test)) == (2250, 250)
    assert splits.sample_shape == (1, 80, 64) and splits.label_names == tuple("0123456789")
    assert torch.bincount(splits.test.labels).tolist() == [25] * 10
