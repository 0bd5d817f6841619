"""Two levels of codes end to end, as the commands run them: a two-level VQ-VAE (fit_vqvae --levels 2) of images
and of recordings, the two-level prior that fit_prior fits on its codes, and every way of sampling it (the
pipeline, completion, generate), in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fits import VQVAE_16_CODES, logged, run_prior, run_vqvae
from pipelines import audio_check, audio_eval, generate
from fits import AUDIO_ARGS, COMMON_ARGS, SR, VQVAE_ARGS
from fits import chirp as _clip
from test_audio_pipeline import check_args
from test_image_check import run_check
from vqvae_prior import VQPriorPipeline
from vqvae_prior.pipeline import seeded
from vqvae_prior.checkpoint import CheckpointError
from vqvae_prior.errors import UsageError
from vqvae_prior.hierarchy import HierarchicalPrior
from vqvae_prior.training import PriorFit

PRIOR_ARGS = ["--layers", "2", "--channels", "8", "--head-channels", "16", "--samples-per-class", "1"]


@pytest.fixture(scope="module")
def image_fit(digit_folder: Path, tmp_path_factory) -> dict:
    """Digits 28 x 28 -> bottom codes 14 x 14, top codes 7 x 7; a one-level VQ-VAE beside it."""
    runs = tmp_path_factory.mktemp("two-levels")
    data = ["--dataset", "image-folder", "--data-root", str(digit_folder)]
    vq_metrics = run_vqvae(runs / "vq", *data, *VQVAE_16_CODES, "--levels", "2", "--downsample", "2")
    prior_metrics = run_prior(runs / "vq" / "vqvae.pt", runs / "prior", *PRIOR_ARGS)
    run_vqvae(runs / "vq1", *data, *VQVAE_16_CODES)
    return {"runs": runs, "vqvae": runs / "vq" / "vqvae.pt", "prior": runs / "prior" / "prior.pt",
            "vq_metrics": vq_metrics, "prior_metrics": prior_metrics, "one_level": runs / "vq1" / "vqvae.pt"}


def test_fits_log_each_level(image_fit):
    vq, prior = image_fit["vq_metrics"], image_fit["prior_metrics"]
    assert 0 < vq["test_top_codes_used"] <= 16 and vq["test_top_perplexity"] >= 1
    assert 0 < vq["test_codes_used"] <= 16
    top, bottom = prior["test_top_bits_per_code"], prior["test_bottom_bits_per_code"]
    assert prior["test_bits_per_code"] == pytest.approx((top * 49 + bottom * 196) / 245)
    assert logged(image_fit["runs"] / "prior")[-1]["test_bottom_bits_per_code"] == pytest.approx(bottom)
    assert (image_fit["runs"] / "prior" / "samples.png").is_file()


def test_pipeline_samples_top_then_bottom_and_decodes_both(image_fit):
    pipe = VQPriorPipeline.from_checkpoints(image_fit["vqvae"], image_fit["prior"], "cpu")
    assert isinstance(pipe.prior, HierarchicalPrior) and pipe.code_shape == (14, 14)
    out = pipe(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (3, 1, 28, 28) and out.codes.shape == (3, 14, 14) and out.top_codes.shape == (3, 7, 7)
    assert torch.equal(out.images, pipe.decode((out.top_codes, out.codes)))
    again = pipe(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.codes, out.codes) and torch.equal(again.top_codes, out.top_codes)
    assert pipe.default_temperature == 1.0  # images: drawn at temperature 1 unless told
    at_one = pipe(3, labels=[0, 1, 2], temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(at_one.codes, out.codes) and torch.equal(at_one.top_codes, out.top_codes)


def test_completion_keeps_the_kept_rows_of_both_levels(image_fit, digit_folder):
    pipe = VQPriorPipeline.from_checkpoints(image_fit["vqvae"], image_fit["prior"], "cpu")
    x = torch.rand(2, 1, 28, 28)
    top, bottom = pipe.vqvae.encode_levels(x)
    done = pipe.complete(x, keep=5, labels=[0, 2], completions=3, generator=torch.Generator().manual_seed(1))
    assert done.codes.shape == (2, 3, 14, 14) and done.top_codes.shape == (2, 3, 7, 7)
    assert torch.equal(done.codes[:, :, :5], bottom[:, None, :5].expand(2, 3, 5, 14))
    assert torch.equal(done.top_codes[:, :, :2], top[:, None, :2].expand(2, 3, 2, 7))  # rows wholly within 5 kept
    assert done.images.shape == (2, 3, 1, 28, 28)


def test_generate_writes_a_two_level_models_samples(image_fit, tmp_path):
    args = ["--vqvae", str(image_fit["vqvae"]), "--prior", str(image_fit["prior"]), "--labels", "all", "--repeat",
            "2", "--seed", "0", "--device", "cpu", "--out", str(tmp_path / "samples.png")]
    result = generate.main(generate.get_args_parser().parse_args(args))
    assert result.images.shape == (6, 1, 28, 28) and (tmp_path / "samples.png").is_file()


def test_temperature_and_guidance_per_level_from_the_command_line(image_fit, tmp_path):
    """``--temperature 1 0.5 --guidance 1 0`` draws what the pipeline draws with those (top, bottom) settings."""
    args = ["--vqvae", str(image_fit["vqvae"]), "--prior", str(image_fit["prior"]), "--labels", "all",
            "--seed", "0", "--device", "cpu", "--out", str(tmp_path / "samples.png")]
    parse = generate.get_args_parser().parse_args
    result = generate.main(parse([*args, "--temperature", "1", "0.5", "--guidance", "1", "0"]))
    pipe = VQPriorPipeline.from_checkpoints(image_fit["vqvae"], image_fit["prior"], "cpu")
    expected = pipe(3, [0, 1, 2], (1.0, 0.5), seeded(0, pipe.device), guidance=(1.0, 0.0))
    assert torch.equal(result.top_codes, expected.top_codes) and torch.equal(result.codes, expected.codes)
    other = pipe(3, [0, 1, 2], (1.0, 1.0), seeded(0, pipe.device), guidance=(1.0, 1.0))
    assert not torch.equal(other.codes, expected.codes)  # the bottom's settings were used
    same = generate.main(parse([*args, "--temperature", "1", "--guidance", "1"]))
    assert torch.equal(same.codes, other.codes)  # one number: every level
    with pytest.raises(UsageError, match=r"guidance: 3 values \[1, 0, 0\] for a prior of 2 levels"):
        pipe(3, [0, 1, 2], guidance=[1, 0, 0])


def test_image_check_judges_a_two_level_models_samples(image_fit, tmp_path):
    report = run_check(image_fit, tmp_path / "check.json", "--per-class", "3")
    assert report["generated"]["n"] == 9 and 0 <= report["generated"]["accuracy"] <= 1
    assert report["copying"]["generated_n"] == 9 and report["args"]["temperature"] == 1.0  # as drawn


def test_a_prior_of_other_levels_is_refused(image_fit, tmp_path):
    with pytest.raises(CheckpointError, match="models 2 level"):
        VQPriorPipeline.from_checkpoints(image_fit["one_level"], image_fit["prior"], "cpu")


def test_the_bottom_network_sizes_need_two_levels(image_fit, tmp_path):
    with pytest.raises(UsageError, match="--bottom-layers and --bottom-channels size the bottom level.*has one level"):
        run_prior(image_fit["one_level"], tmp_path / "prior", "--bottom-layers", "1")
    assert not (tmp_path / "prior").exists()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recordings")
    for digit in (0, 1, 2):
        for index in (0, 1, 5, 6, 7, 8):
            sf.write(root / f"{digit}_{'ab'[index % 2]}_{index}.wav", _clip(digit, index), SR)
    return root


def test_two_levels_of_recordings_end_to_end(recordings, tmp_path):
    """24 x 32 spectrograms -> bottom codes 6 x 8, top codes 3 x 4; the pipeline returns waveforms."""
    from pipelines import fit_prior, fit_vqvae

    vq_args = ["--dataset", "audio-folder", "--data-root", str(recordings), "--out", str(tmp_path / "vq"),
               "--lsd-clips", "4", "--levels", "2", "--downsample", "4", *AUDIO_ARGS, *VQVAE_ARGS, *COMMON_ARGS]
    vq = fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(vq_args))
    assert np.isfinite(vq["test_lsd_db"]) and vq["test_top_codes_used"] > 0
    defaults, _ = PriorFit(vqvae=str(tmp_path / "vq" / "vqvae.pt")).resolved()  # the two-level recipe of recordings
    assert (defaults.epochs, defaults.lr_schedule, defaults.layers, defaults.bottom_layers) == (24, "cosine", 12, 6)
    prior_args = ["--vqvae", str(tmp_path / "vq" / "vqvae.pt"), "--out", str(tmp_path / "prior"), *PRIOR_ARGS,
                  "--bottom-layers", "1", "--bottom-channels", "4", *COMMON_ARGS]
    prior = fit_prior.main(fit_prior.get_args_parser().parse_args(prior_args))
    assert np.isfinite(prior["test_top_bits_per_code"]) and np.isfinite(prior["test_bottom_bits_per_code"])
    pipe = VQPriorPipeline.from_checkpoints(tmp_path / "vq" / "vqvae.pt", tmp_path / "prior" / "prior.pt", "cpu")
    top, bottom = pipe.prior.config.top, pipe.prior.config.bottom  # the bottom level sized apart
    assert (top.num_layers, top.channels, bottom.num_layers, bottom.channels) == (2, 8, 1, 4)
    out = pipe(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0), guidance=1.0)
    assert out.codes.shape == (3, 6, 8) and out.top_codes.shape == (3, 3, 4)
    assert pipe.default_temperature == (0.6, 0.6)  # recordings with two levels: drawn cooler unless told
    cooler = pipe(3, labels=[0, 1, 2], temperature=(0.6, 0.6), generator=torch.Generator().manual_seed(0),
                  guidance=1.0)
    assert torch.equal(cooler.codes, out.codes) and torch.equal(cooler.top_codes, out.top_codes)
    assert out.waveforms.shape[0] == 3 and torch.isfinite(out.waveforms).all()
    x = pipe.inputs(np.stack([_clip(d, 5) for d in (0, 1, 2)]))  # (3, 1, 24, 32) of waveforms
    real_top, real_bottom = pipe.vqvae.encode_levels(x)  # audio_check --given-top's maps: the clips' own top codes
    assert torch.equal(pipe.vqvae(x).level_indices[0], real_top)  # as audio_check reads them, from the forward pass
    top, bottom = audio_check.bottoms_given_top(pipe, real_top, torch.tensor([0, 1, 2]), 1.0, 0.0, seeded(0, "cpu"))
    assert torch.equal(top, real_top) and bottom.shape == real_bottom.shape == (3, 6, 8)
    assert 0 <= int(bottom.min()) and int(bottom.max()) < pipe.prior.config.bottom.codebook_size
    again = audio_check.bottoms_given_top(pipe, real_top, torch.tensor([0, 1, 2]), 1.0, 0.0, seeded(0, "cpu"))
    assert torch.equal(again[0], top) and torch.equal(again[1], bottom)  # seeded
    fitted = {"vqvae": tmp_path / "vq" / "vqvae.pt", "prior": tmp_path / "prior" / "prior.pt", "runs": tmp_path}
    lsd = audio_eval.main(audio_eval.get_args_parser().parse_args(["--vqvae", str(fitted["vqvae"]), "--clips", "4",
                                                                   "--device", "cpu"]))
    assert lsd["test_lsd_db"] == pytest.approx(vq["test_lsd_db"])
    report = audio_check.main(audio_check.get_args_parser().parse_args(
        check_args(fitted, tmp_path / "check.json", "--given-top")))
    assert report["copying"]["generated_n"] == 9 and tuple(report["args"]["temperature"]) == (0.6, 0.6)  # as drawn
    given = report["recognized"]["generated_given_top"]  # one for each of the 6 held-out clips
    assert set(given["by_family"]) == {"log-mel", "mfcc"} and 0 <= given["accuracy"] <= 1
    assert all(family["mean"]["generated_given_top"]["n"] == 6 for family in report["families"].values())


def test_the_pipeline_samples_a_batch_at_a_time(image_fit, monkeypatch):
    """More maps than SAMPLE_BATCH are drawn a batch at a time, each batch as the prior draws it alone (so memory
    does not grow with n)."""
    import vqvae_prior.pipeline as pipeline

    pipe = VQPriorPipeline.from_checkpoints(image_fit["vqvae"], image_fit["prior"], "cpu")
    monkeypatch.setattr(pipeline, "SAMPLE_BATCH", 2)
    labels = torch.tensor([0, 1, 2, 0, 1])
    out = pipe(5, labels, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    parts = [pipe.prior.sample(len(batch), pipe.code_shape, batch, 1.0, generator) for batch in labels.split(2)]
    assert torch.equal(out.top_codes, torch.cat([top for top, _ in parts]))
    assert torch.equal(out.codes, torch.cat([bottom for _, bottom in parts]))
