"""Every entry point end to end on a few synthesized clips: fit_vqvae -> fit_prior -> generate -> audio_check.

Clips are tones and chirps whose pitch depends on the digit label, named like the Free Spoken Digit Dataset
(``{digit}_{speaker}_{index}.wav``: index 0-4 held out). Small spectrogram settings (24 frames x 32 frequency bins
-> 6 x 8 codes: non-square) and tiny models keep the whole module to seconds on a CPU.
"""

import json
from dataclasses import asdict
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft
import soundfile as sf
import torch

from files import grid_tiles, png_pixels
from fits import (  # the tiny audio fit's settings
    AUDIO_ARGS, COMMON_ARGS, DIGITS, FIXTURE_VQVAE_ARGS, PRIOR_ARGS, SR, VQVAE_ARGS, fit_audio_pair, logged,
    write_chirps,
)
from fits import chirp as _clip
from pipelines import audio_check, audio_eval, fit_prior, fit_vqvae, generate
from vqvae_prior.audio import SpectrogramConfig, Spectrograms, picture
from vqvae_prior.modality import Images
from vqvae_prior.training import PriorFit, VQVAEFit, batching
from vqvae_prior.training.codes import draw_shifts, encode_splits
from vqvae_prior.checkpoint import CheckpointError, load_vqvae, save_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation import audio_judges
from vqvae_prior.vqvae import VQVAE, VQVAEConfig


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """21 clips: digits 0-2 x indices 0, 1 (held out) and 5-9 (train), two speakers (``fits.write_chirps``)."""
    return write_chirps(tmp_path_factory.mktemp("recordings"))


@pytest.fixture(scope="module")
def fitted(recordings: Path, tmp_path_factory) -> dict:
    """An audio VQ-VAE and a class-conditional prior over its codes, each fitted for one epoch
    (``fits.fit_audio_pair``)."""
    return fit_audio_pair(recordings, tmp_path_factory.mktemp("runs"))


def test_fit_vqvae_audio(fitted):
    metrics = fitted["vq_metrics"]
    for key in ("test_mse", "test_lsd_db", "ceiling_lsd_db", "test_perplexity"):
        assert np.isfinite(metrics[key]), key
    assert metrics["lsd_clips"] == 4 and metrics["test_lsd_db"] > 0 and metrics["ceiling_lsd_db"] > 0
    epochs = logged(fitted["runs"] / "vq")
    assert len(epochs) == 1 and epochs[0]["test_lsd_db"] == metrics["test_lsd_db"]
    vqvae, ckpt = load_vqvae(fitted["vqvae"])
    spec = ckpt["data"]
    # the 6 held-out clips above their reconstructions, drawn with time to the right: 32 bins x 24 frames each
    tiles = grid_tiles(fitted["runs"] / "vq" / "reconstructions.png", 12, nrow=6, tile=(32, 24))
    x = batching.as_tensors(batching.load_splits(spec).test)[0]  # (6, 1, 24, 32)
    assert torch.equal(tiles[:6], png_pixels(picture(x)))
    assert (tiles[6:].int() - png_pixels(picture(vqvae(x).reconstruction.clamp(0, 1))).int()).abs().max() <= 1
    assert spec["name"] == "audio-folder" and ckpt["label_names"] == ["0", "1", "2"]
    assert ckpt["sample_shape"] == [1, 24, 32]  # non-square, time down the rows
    assert (spec["n_fft"], spec["hop_length"], spec["n_frames"]) == (62, 16, 24)
    assert spec["spectrogram"]["n_fft"] == 62 and spec["spectrogram"]["representation"] == "stft"


def test_audio_eval_of_a_checkpoint_reports_what_the_fit_logged(fitted, capsys):
    """python -m pipelines.audio_eval --vqvae V: the fit's held-out LSD of the same clips, from the checkpoint."""
    args = audio_eval.get_args_parser().parse_args(["--vqvae", str(fitted["vqvae"]), "--clips", "4",
                                                    "--device", "cpu"])
    result = audio_eval.main(args)
    assert result == {k: fitted["vq_metrics"][k] for k in ("test_lsd_db", "ceiling_lsd_db", "lsd_clips")}
    assert "held-out log-spectral distance over 4 clips" in capsys.readouterr().out
    args.silence_below = 0.5  # the quieter half of every spectrogram's range inverted as silence: other waveforms
    assert audio_eval.main(args)["test_lsd_db"] != result["test_lsd_db"]
    args.silence_below = 1.0
    with pytest.raises(UsageError, match="--silence-below must be in"):
        audio_eval.main(args)
    args.silence_below, args.mel_fill = None, 1.5
    with pytest.raises(UsageError, match=r"--mel-fill must be in \[0, 1\], got 1.5"):
        audio_eval.main(args)


def test_fit_vqvae_mel(recordings, tmp_path):
    """The default representation (mel), levels (2) and downsampling (4); the LSD only every --lsd-every epochs and
    after the last."""
    args = ["--dataset", "audio-folder", "--data-root", str(recordings), "--out", str(tmp_path), "--lsd-clips", "2",
            "--n-fft", "126", "--n-mels", "16", "--hop-length", "16", "--n-frames", "24", "--lsd-every", "2",
            *VQVAE_ARGS, *COMMON_ARGS, "--epochs", "3"]
    metrics = fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(args))
    assert np.isfinite(metrics["test_lsd_db"]) and np.isfinite(metrics["ceiling_lsd_db"]) and metrics["lsd_clips"] == 2
    assert ["test_lsd_db" in m for m in logged(tmp_path)] == [False, True, True]
    ckpt = load_vqvae(tmp_path / "vqvae.pt")[1]
    assert ckpt["sample_shape"] == [1, 24, 16] and ckpt["data"]["spectrogram"]["representation"] == "mel"
    assert ckpt["arch"] == "vqvae2" and ckpt["config"]["downsample"] == 4  # 6 x 4 bottom codes, 3 x 2 top codes
    plain = audio_eval.main(audio_eval.get_args_parser().parse_args(  # the least-squares magnitudes as they are
        ["--vqvae", str(tmp_path / "vqvae.pt"), "--clips", "2", "--device", "cpu", "--mel-fill", "0"]))
    assert plain["test_lsd_db"] != metrics["test_lsd_db"] and plain["ceiling_lsd_db"] != metrics["ceiling_lsd_db"]


def test_fit_vqvae_with_two_levels(recordings, tmp_path):
    """24 x 32 spectrograms at --downsample 4: 6 x 8 bottom codes, 3 x 4 top codes; the held-out LSD of the two-level
    reconstructions, and audio_eval of its checkpoint."""
    args = ["--dataset", "audio-folder", "--data-root", str(recordings), "--out", str(tmp_path), "--lsd-clips", "2",
            *AUDIO_ARGS, *FIXTURE_VQVAE_ARGS, *COMMON_ARGS, "--levels", "2"]
    metrics = fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(args))
    assert metrics["test_lsd_db"] > 0 and np.isfinite(metrics["test_lsd_db"]) and metrics["lsd_clips"] == 2
    for key in ("train_top_perplexity", "train_top_codes_used", "test_top_perplexity", "test_top_codes_used"):
        assert 0 < logged(tmp_path)[0][key] <= 16, key
    vqvae, ckpt = load_vqvae(tmp_path / "vqvae.pt")
    assert ckpt["arch"] == "vqvae2" and vqvae.level_shapes(vqvae.code_shape((1, 24, 32))) == [(3, 4), (6, 8)]
    evaluated = audio_eval.main(audio_eval.get_args_parser().parse_args(
        ["--vqvae", str(tmp_path / "vqvae.pt"), "--clips", "2", "--device", "cpu"]))
    assert evaluated["test_lsd_db"] == metrics["test_lsd_db"]


def test_defaults_by_kind_of_data():
    """--epochs and --batch-size not given take the defaults of the kind of data; given ones are kept."""
    audio = VQVAEFit(dataset="audio-folder").resolved()
    assert (audio.epochs, audio.batch_size) == (40, 16)  # two levels of codes, the audio default
    image = VQVAEFit(dataset="mnist", epochs=3).resolved()
    assert (image.epochs, image.batch_size) == (3, Images.vqvae_defaults["batch_size"])
    args = fit_prior.get_args_parser().parse_args(["--vqvae", "x.pt"])
    assert PriorFit(**vars(args)) == PriorFit(vqvae="x.pt")  # the command line and Python agree


def test_defaults_may_differ_by_levels():
    """A modality's default given per number of levels takes the value of the levels asked for, or of its default
    levels; a value given is kept; the help names each."""
    default = VQVAEFit(dataset="audio-folder").resolved()
    assert (default.levels, default.downsample) == (2, 4)  # recordings: two levels unless told
    one = VQVAEFit(dataset="audio-folder", levels=1).resolved()
    assert (default.n_mels, default.epochs, default.batch_size, one.n_mels, one.epochs, one.batch_size) == (
        72, 40, 16, 64, 24, 32)
    assert VQVAEFit(dataset="audio-folder", n_mels=40).resolved().dataset_options() == {"n_mels": 40}
    assert VQVAEFit(dataset="mnist").resolved().dataset_options() == {}  # images take no mel bands
    assert VQVAEFit(dataset="audio-folder", levels=1).resolved().downsample == 8
    assert VQVAEFit(dataset="audio-folder", levels=2, downsample=2).resolved().downsample == 2
    one, two = VQVAEFit(dataset="audio-folder", levels=1).resolved(), VQVAEFit(dataset="audio-folder").resolved()
    assert (one.lr, one.lr_schedule, two.lr, two.lr_schedule) == (1e-3, "constant", 2e-3, "cosine")
    assert VQVAEFit(dataset="mnist", levels=2).resolved().downsample == 2
    one, two = VQVAEFit(dataset="mnist").resolved(), VQVAEFit(dataset="mnist", levels=2).resolved()
    assert (one.codebook_size, two.codebook_size) == (256, 512)  # images: a smaller codebook for one level
    assert VQVAEFit(dataset="mnist", codebook_size=512).resolved().codebook_size == 512
    help_text = " ".join(fit_vqvae.get_args_parser().format_help().split())
    assert "audio 8 with one level, 4 with two levels" in help_text
    assert "image 256 with one level, 512 with two levels" in help_text
    one, _ = PriorFit(vqvae="x.pt").resolved_for(Spectrograms, 256, levels=1)
    two, _ = PriorFit(vqvae="x.pt").resolved_for(Spectrograms, 256, levels=2)
    assert (one.dropout, one.epochs, two.dropout, two.epochs) == (0.5, 60, 0.3, 24)  # priors by levels too
    assert PriorFit(vqvae="x.pt", dropout=0.5).resolved_for(Spectrograms, 256, levels=2)[0].dropout == 0.5
    assert "audio 0.5 with one level, 0.3 with two levels" in " ".join(fit_prior.get_args_parser().format_help().split())


def test_frequency_major_audio_checkpoint_is_refused(fitted, tmp_path):
    """A VQ-VAE fitted before spectrograms ran time down the rows ((1, F, n_frames) images) does not load."""
    ckpt = torch.load(fitted["vqvae"], weights_only=True)
    torch.save({**ckpt, "sample_shape": [1, 32, 24]}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt.*\[1, 32, 24\].*\[1, 24, 32\].*refit"):
        load_vqvae(tmp_path / "old.pt")


def test_fit_prior_audio(fitted):
    assert np.isfinite(fitted["prior_metrics"]["test_bits_per_code"])
    prior = torch.load(fitted["prior"], weights_only=True)
    assert prior["code_shape"] == [6, 8] and prior["config"]["num_classes"] == 3
    assert prior["shifts"] == Spectrograms.prior_defaults["shifts"] == 8
    grid_tiles(fitted["runs"] / "prior" / "samples.png", 6, nrow=2, tile=(32, 24))  # a row per digit, 2 samples


def test_prior_trains_on_shifted_encodings(fitted, tmp_path):
    """--shifts S: the cache holds (S, N, h, w) train codes, shift s being the code map of the input delayed by s
    frames (silence in front); held-out codes are those of the inputs as they are."""
    vqvae, ckpt = load_vqvae(fitted["vqvae"])
    splits = batching.load_splits(ckpt["data"])
    codes = encode_splits(vqvae, tmp_path, ckpt["data"], None, torch.device("cpu"), shifts=3)
    train_codes, train_labels = codes["train"]
    x_train, y_train = batching.as_tensors(splits.train)  # (N, 1, 24, 32)
    assert train_codes.shape == (3, len(x_train), 6, 8) and torch.equal(train_labels, y_train)
    for s in range(3):
        delayed = torch.cat([torch.zeros_like(x_train[:, :, :s]), x_train[:, :, : 24 - s]], dim=2)
        assert torch.equal(train_codes[s], vqvae.encode(delayed))
    assert torch.equal(codes["test"][0], vqvae.encode(batching.as_tensors(splits.test)[0]))
    assert not torch.equal(train_codes[0], train_codes[2])


def test_draw_shifts():
    """One of the S code maps of every input, each with its own draw; S = 1 draws no random numbers."""
    codes = torch.arange(4).view(4, 1, 1, 1).expand(4, 500, 2, 3)  # (S, N, h, w): value = shift
    generator = torch.Generator().manual_seed(0)
    drawn = draw_shifts(codes, generator)  # (N, h, w)
    assert drawn.shape == (500, 2, 3) and (drawn == drawn[:, :1, :1]).all()  # a whole map from one shift
    assert sorted(drawn[:, 0, 0].unique().tolist()) == [0, 1, 2, 3]
    state = generator.get_state()
    assert torch.equal(draw_shifts(codes[:1], generator), codes[0])
    assert torch.equal(generator.get_state(), state)


def test_resume_refuses_other_shifts(fitted, tmp_path):
    args = ["--vqvae", str(fitted["vqvae"]), "--out", str(tmp_path), *PRIOR_ARGS, *COMMON_ARGS,
            "--lr-schedule", "constant"]  # a constant rate lets --resume add epochs
    fit_prior.main(fit_prior.get_args_parser().parse_args([*args, "--shifts", "2"]))
    with pytest.raises(ValueError, match="with --shifts 2; this call asks for --shifts 3"):
        fit_prior.main(fit_prior.get_args_parser().parse_args([*args, "--shifts", "3", "--epochs", "2", "--resume"]))
    # a checkpoint written before --shifts existed was fitted without shifts
    ckpt = torch.load(tmp_path / "prior-last.pt", weights_only=True)
    del ckpt["shifts"], ckpt["args"]["shifts"]
    torch.save(ckpt, tmp_path / "prior-last.pt")
    with pytest.raises(ValueError, match="with --shifts 1; this call asks for --shifts 2"):
        fit_prior.main(fit_prior.get_args_parser().parse_args([*args, "--shifts", "2", "--epochs", "2", "--resume"]))
    metrics = fit_prior.main(fit_prior.get_args_parser().parse_args([*args, "--shifts", "1", "--epochs", "2", "--resume"]))
    assert metrics["epoch"] == 2


def test_generate_waveforms(fitted):
    out = generate.generate(fitted["vqvae"], fitted["prior"], 4, [2, 2, 0, 1], seed=0, device="cpu")
    assert out.images.shape == (4, 1, 24, 32) and out.codes.shape == (4, 6, 8)
    assert out.waveforms.shape == (4, 23 * 16) and out.waveforms.dtype == torch.float32
    assert out.sample_rate == SR and torch.isfinite(out.waveforms).all()
    again = generate.generate(fitted["vqvae"], fitted["prior"], 4, [2, 2, 0, 1], seed=0, device="cpu")
    assert torch.equal(again.waveforms, out.waveforms)  # seeded sampling, deterministic Griffin-Lim


def test_generate_main_writes_wavs_and_png(fitted, tmp_path):
    args = ["--vqvae", str(fitted["vqvae"]), "--prior", str(fitted["prior"]), "--labels", "all", "--repeat", "2",
            "--seed", "0", "--device", "cpu", "--out", str(tmp_path / "samples.png")]
    result = generate.main(generate.get_args_parser().parse_args(args))
    tiles = grid_tiles(tmp_path / "samples.png", 6, nrow=2, tile=(32, 24))  # a row per digit
    assert torch.equal(tiles, png_pixels(picture(result.images)))
    wavs = sorted(tmp_path.glob("samples_*.wav"))
    assert [w.name for w in wavs] == [f"samples_{i:03d}_{d}.wav" for i, d in enumerate("001122")]
    wave, rate = sf.read(wavs[0], dtype="float32")
    assert rate == SR and wave.shape == (23 * 16,)
    np.testing.assert_allclose(wave, result.waveforms[0].numpy(), atol=1e-4)  # 16-bit PCM


def check_args(fitted: dict, out: Path, *extra: str) -> list[str]:
    """audio_check on the fixture with tiny judges: 3 clips per digit, 2 judges of width 4, 2 epochs."""
    return ["--vqvae", str(fitted["vqvae"]), "--prior", str(fitted["prior"]), "--per-class", "3", "--seeds", "2",
            "--classifier-epochs", "2", "--classifier-batch-size", "8", "--classifier-channels", "4", "--device",
            "cpu", "--cache-dir", str(fitted["runs"] / "cache"), "--out", str(out), *extra]


def test_audio_check(fitted, tmp_path):
    args = audio_check.get_args_parser().parse_args(check_args(fitted, tmp_path / "check.json"))
    report = audio_check.main(args)
    assert json.loads((tmp_path / "check.json").read_text()) == report
    families = report["families"]
    assert list(families) == ["log-mel", "mfcc"] == args.families  # both by default
    sets = {"real": 6, "real_griffin_lim": 6, "reconstructed_griffin_lim": 6, "generated": 9}
    for name, family in families.items():
        judges = family["classifier"]
        assert judges["family"] == name and judges["hearing"] == asdict(audio_judges.FAMILIES[name].hearing)
        assert len(family["per_seed"]) == 2 and judges["seeds"] == [0, 1]
        assert judges["cached"] == [False, False] and judges["train_clips"] == 15
        assert judges["config"]["in_channels"] == audio_judges.FAMILIES[name].front.channels
        for figures in (*family["per_seed"], family["mean"]):
            assert set(figures) == set(sets)
            for set_name, n in sets.items():
                assert figures[set_name]["n"] == n and 0 <= figures[set_name]["accuracy"] <= 1
                assert sorted(figures[set_name]["per_class"]) == ["0", "1", "2"]
                assert 1 - 1e-9 <= figures[set_name]["inception_score"] <= 3 + 1e-9
                if set_name != "real":  # m = min(9 generated, 6 // 2)
                    assert figures[set_name]["frechet"]["m"] == 3 and figures[set_name]["frechet"]["floor"] > 0
        confusion = np.array(family["per_seed"][0]["generated"]["confusion"])
        assert confusion.shape == (3, 3) and confusion.sum(axis=1).tolist() == [3, 3, 3]
        for set_name in sets:
            values = [r[set_name]["accuracy"] for r in family["per_seed"]]
            assert family["mean"][set_name]["accuracy"] == pytest.approx(np.mean(values))
            assert family["std"][set_name]["accuracy"] == pytest.approx(np.std(values))
    for set_name, headline in report["recognized"].items():  # the lower family's mean, and which family gave it
        means = {name: family["mean"][set_name]["accuracy"] for name, family in families.items()}
        assert headline["by_family"] == means and headline["accuracy"] == min(means.values())
        assert means[headline["family"]] == headline["accuracy"]
        assert headline["std"] == families[headline["family"]]["std"][set_name]["accuracy"]
    copying = report["copying"]
    assert copying["generated_n"] == 9 and 0 <= copying["generated_exact_copies"] <= 9
    assert 0 <= copying["generated_mean_distance"] <= 1 and 0 <= copying["held_out_mean_distance"] <= 1
    assert {"data", "griffin_lim", "generate", "classifiers", "figures", "copying"} == set(report["seconds"])
    again = audio_check.main(audio_check.get_args_parser().parse_args(check_args(fitted, tmp_path / "again.json")))
    for name, family in again["families"].items():
        assert family["classifier"]["cached"] == [True, True]  # seeded, cached judges: the same figures
        for key in ("mean", "std", "per_seed"):
            assert family[key] == families[name][key], (name, key)
    assert again["recognized"] == report["recognized"] and again["copying"] == report["copying"]
    one = audio_check.main(audio_check.get_args_parser().parse_args(
        check_args(fitted, tmp_path / "one.json", "--families", "mfcc")))
    assert list(one["families"]) == ["mfcc"] and one["families"]["mfcc"]["mean"] == families["mfcc"]["mean"]
    assert {r["family"] for r in one["recognized"].values()} == {"mfcc"}


def _heard(hearing) -> torch.Tensor:
    """(9, 8000): the fixture's clips of every digit at three offsets, as the judges hear them (silence after)."""
    waves = np.stack([np.pad(_clip(d, 5), (i * 500, 2650 - i * 500)) for d in DIGITS for i in range(3)])  # (9, 3000)
    return audio_judges.to_hearing(waves, SR, hearing)


def test_hearing_is_its_own():
    """The judges' log-mel front end: 1 s at 8 kHz -> 63 frames x 40 bands, standardized on the clips it was
    fitted on, silence at its floor; none of its settings is the VQ-VAE's."""
    hearing = audio_judges.Hearing()
    model = SpectrogramConfig()
    assert (hearing.n_fft, hearing.hop_length, hearing.n_mels) != (model.n_fft, model.hop_length, model.n_mels)
    waves = _heard(hearing)
    assert waves.shape == (9, 8000)
    front = audio_judges.LogMel(hearing).fit(waves)
    features = front(waves)
    assert features.shape == (9, 1, 63, 40)
    assert abs(float(features.mean())) < 1e-4 and float(features.std()) == pytest.approx(1.0, abs=1e-4)
    silent = front(torch.zeros(1, 8000))
    assert torch.all(silent == silent.flatten()[0]) and float(silent.max()) < float(features.max())
    half_rate = audio_judges.to_hearing(waves[:, ::2].numpy(), SR // 2, hearing)  # resampled to 8 kHz
    assert half_rate.shape == (9, 8000)


def test_cepstra_shape_and_standardization():
    """The second family's front end: 1 s at 8 kHz every 10 ms -> 3 channels (cepstra, deltas, delta-deltas) x
    101 frames x 20 coefficients, each channel and coefficient standardized on the clips it was fitted on; its
    resolution is neither the log-mel judges' nor the VQ-VAE's."""
    hearing = audio_judges.CepstralHearing()
    others = (audio_judges.Hearing(), SpectrogramConfig())
    assert all((hearing.n_fft, hearing.hop_length) != (h.n_fft, h.hop_length) for h in others)
    waves = _heard(hearing)
    front = audio_judges.MFCC(hearing).fit(waves)
    features = front(waves)
    assert features.shape == (9, 3, 101, 20) and front.channels == 3
    torch.testing.assert_close(features.mean((0, 2)), torch.zeros(3, 20), atol=1e-4, rtol=0)
    torch.testing.assert_close(features.std((0, 2)), torch.ones(3, 20), atol=1e-4, rtol=0)
    silent = front(torch.zeros(1, 8000))  # constant over time: each channel the same in every frame
    assert torch.equal(silent, silent[:, :, :1].expand_as(silent))


def test_cepstra_are_the_dct_of_log_mel_and_deltas_librosa_s():
    """The DCT is scipy's orthonormal DCT-II (librosa's MFCC); the delta is librosa's inside the clip, the slope
    of a ramp up to its ends, and the edge frames are repeated beyond them."""
    reference = scipy.fft.dct(np.eye(40), type=2, norm="ortho", axis=0)[:20]  # (20, 40)
    np.testing.assert_allclose(audio_judges.dct_matrix(40, 20).numpy(), reference, atol=1e-6)
    x = torch.randn(2, 5, 30, generator=torch.Generator().manual_seed(0))  # (B, C, frames)
    d = audio_judges.delta(x, 9)
    assert d.shape == x.shape
    np.testing.assert_allclose(d[..., 4:-4].numpy(), librosa.feature.delta(x.numpy(), width=9)[..., 4:-4], atol=1e-5)
    ramp = 0.5 * torch.arange(30.0).expand(1, 2, 30)
    slope = audio_judges.delta(ramp, 9)
    torch.testing.assert_close(slope[..., 4:-4], torch.full((1, 2, 22), 0.5))
    torch.testing.assert_close(slope[0, 0, [0, -1]], torch.tensor([0.25, 0.25]))  # 0.5 (1 + 4 + 9 + 16) / 60


def test_perturb_and_mask():
    g = torch.Generator().manual_seed(0)
    wave = torch.zeros(64, 4000)
    wave[:, 2000] = 1.0  # a click
    still = audio_judges.AugmentSettings(shift_seconds=0, gain_db=0, speed=0)
    torch.testing.assert_close(audio_judges.perturb(wave, still, SR, g), wave)
    gain = audio_judges.perturb(wave, audio_judges.AugmentSettings(shift_seconds=0, gain_db=6, speed=0), SR, g)
    scale = gain[:, 2000]
    assert torch.all((scale >= 10 ** (-6 / 20) - 1e-6) & (scale <= 10 ** (6 / 20) + 1e-6)) and scale.std() > 0
    moving = audio_judges.AugmentSettings(shift_seconds=0.01, gain_db=0, speed=0.05)
    moved = audio_judges.perturb(wave, moving, SR, g)
    where = (moved.abs() > 0).float().argmax(1)  # the click's first sample
    assert torch.all((where - 2000).abs() <= 0.01 * SR + 0.05 * 2000 + 1) and where.unique().numel() > 10
    torch.testing.assert_close(moved.sum(1), torch.ones(64), atol=0.1, rtol=0.1)  # moved, not lost
    features = torch.ones(64, 1, 63, 40)
    masked = audio_judges.mask(features, audio_judges.AugmentSettings(time_mask=8, freq_mask=6), g)
    zero_frames = (masked == 0).all(3).sum((1, 2))  # (64,) whole frames zeroed
    zero_bands = (masked == 0).all(2).sum((1, 2))
    assert zero_frames.max() <= 8 and zero_bands.max() <= 6 and zero_frames.float().mean() > 2
    unmasked = audio_judges.AugmentSettings(time_mask=0, freq_mask=0)
    assert torch.equal(audio_judges.mask(features, unmasked, g), features)


def test_audio_options_only_for_audio():
    parser = fit_vqvae.get_args_parser()

    def dataset_options(argv):
        return VQVAEFit(**vars(parser.parse_args(argv))).dataset_options()

    assert dataset_options(["--dataset", "audio-folder", "--representation", "mel"]) == {"representation": "mel"}
    assert dataset_options(["--dataset", "audio-folder"]) == {}  # the loader's defaults
    with pytest.raises(ValueError, match="--n-fft does not apply to --dataset mnist"):
        dataset_options(["--dataset", "mnist", "--n-fft", "126"])
    with pytest.raises(ValueError, match="--image-size does not apply to --dataset audio-folder"):
        dataset_options(["--dataset", "audio-folder", "--image-size", "32"])


def test_audio_check_refusals(fitted, tmp_path):
    image_vqvae = tmp_path / "image.pt"
    config = VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=16)
    save_checkpoint(image_vqvae, "vqvae", VQVAE(config), data={"name": "mnist-sample"})
    parser = audio_check.get_args_parser()
    with pytest.raises(ValueError, match="not on recordings"):
        audio_check.main(parser.parse_args(["--vqvae", str(image_vqvae), "--prior", str(fitted["prior"])]))
    prior_args = ["--vqvae", str(fitted["vqvae"]), "--out", str(tmp_path / "unconditional"), "--unconditional",
                  *PRIOR_ARGS, *COMMON_ARGS]
    fit_prior.main(fit_prior.get_args_parser().parse_args(prior_args))
    with pytest.raises(ValueError, match="unconditional"):
        audio_check.main(parser.parse_args(
            ["--vqvae", str(fitted["vqvae"]), "--prior", str(tmp_path / "unconditional" / "prior.pt")]
        ))
    for option in ("--per-class", "--seeds"):
        with pytest.raises(ValueError, match=f"{option} must be >= 1, got 0"):
            audio_check.main(parser.parse_args(check_args(fitted, tmp_path / "r.json", option, "0")))
    with pytest.raises(UsageError, match="^--given-top: --prior .* models one level of codes"):
        audio_check.main(parser.parse_args(check_args(fitted, tmp_path / "r.json", "--given-top")))
    for families, message in ((["stft"], "--families stft: unknown; the families are log-mel, mfcc"),
                              (["mfcc", "log-mel", "mfcc"], "--families mfcc: given twice")):
        with pytest.raises(UsageError, match=f"^{message}$"):
            audio_check.main(parser.parse_args(check_args(fitted, tmp_path / "r.json", "--families", *families)))
    assert not (tmp_path / "r.json").exists()


def test_generate_complete_recordings(fitted, recordings, tmp_path):
    """--complete a recording: its first code rows (frames) kept; the label read from its name; one WAV per
    completion."""
    args = ["--vqvae", str(fitted["vqvae"]), "--prior", str(fitted["prior"]), "--complete",
            str(recordings / "2_a_0.wav"), "--keep-rows", "3", "--repeat", "2", "--seed", "0", "--device", "cpu",
            "--out", str(tmp_path / "done.png")]
    done = generate.main(generate.get_args_parser().parse_args(args))
    assert done.labels.tolist() == [2] and done.codes.shape == (1, 2, 6, 8) and done.waveforms.shape == (1, 2, 368)
    rows = torch.cat([done.inputs[:, None], done.kept[:, None], done.images], dim=1)  # (1, 4, 1, 24, 32)
    assert torch.equal(grid_tiles(tmp_path / "done.png", 4, nrow=4, tile=(32, 24)), png_pixels(picture(rows[0])))
    assert sorted(w.name for w in tmp_path.glob("*.wav")) == ["done_000_2_a_0_0.wav", "done_000_2_a_0_1.wav"]
    vqvae, _ = load_vqvae(fitted["vqvae"])
    assert torch.equal(done.codes[0, :, :3], vqvae.encode(done.inputs)[:, :3].expand(2, -1, -1))


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name", list(audio_judges.FAMILIES))
def test_audio_judge_on_fsdd(shared_data, name):
    """audio_check's first default judge of each family on the real FSDD recordings recognizes at least 98% of the
    250 held-out clips (measured: log-mel 99.2%, mfcc 99.6%); a few CPU-minutes. Skips without ../shared/data/fsdd."""
    from data import load_dataset
    from vqvae_prior.evaluation import classifier

    splits = load_dataset("audio-folder", shared_data("fsdd", "recordings"))
    family = audio_judges.FAMILIES[name]
    x, y = audio_judges.read_clips(splits.train.paths, family.hearing), splits.train.labels
    front = family.front(family.hearing).fit(x)
    config = classifier.ClassifierConfig(family.front.channels, 10)
    defaults = audio_check.get_args_parser().parse_args(["--vqvae", "v.pt", "--prior", "p.pt"])
    settings = classifier.TrainSettings(defaults.classifier_epochs, defaults.classifier_batch_size)
    model = audio_judges.train_judge(x, y, front, config, settings, family.augment, torch.device("cpu"))
    held_out = audio_judges.read_clips(splits.test.paths, family.hearing)
    prediction = classifier.predict(model, held_out, torch.device("cpu"), prepare=front)
    assert float((prediction.labels == splits.test.labels).float().mean()) >= 0.98

