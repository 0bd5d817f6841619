"""Every image entry point end to end on tiny models and the embedded data, in a temporary folder."""

from __future__ import annotations

import contextlib

import pytest
import torch
from einops import rearrange

from data.images import load_mnist_sample
from files import grid_tiles, png_pixels
from fits import (
    PRIOR_3_LAYERS, VQVAE_32_CODES, assert_equal_weights, assert_same_fits, logged_epochs, run_prior, run_vqvae,
)
from pipelines import cli, fit_prior, fit_vqvae, generate, quickstart
from vqvae_prior.checkpoint import CheckpointError, load_checkpoint, load_vqvae, save_checkpoint
from vqvae_prior.training import PriorFit
from vqvae_prior.training.codes import offsets, translate
from vqvae_prior.training.run_folder import RunFolder, RunFolderError
from vqvae_prior.errors import UsageError
from vqvae_prior.layers import shift_down
from vqvae_prior.modality import Images


@contextlib.contextmanager
def interrupted_after_first_epoch():
    """Within it, a fit is interrupted (KeyboardInterrupt) right after its first epoch is written."""
    original = RunFolder.save_epoch

    def save_then_interrupt(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    RunFolder.save_epoch = save_then_interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        RunFolder.save_epoch = original


def test_fit_vqvae_reports_held_out_metrics_and_writes_its_files(mnist_sample_fit):
    metrics, folder = mnist_sample_fit.vqvae_metrics, mnist_sample_fit.vqvae.parent
    for key in ("test_mse", "test_psnr", "test_commitment", "test_perplexity", "test_codes_used", "train_codes_used"):
        assert key in metrics
    assert 0 < metrics["test_codes_used"] <= 32 and metrics["test_psnr"] > 5
    assert logged_epochs(folder) == [1]
    # 32 held-out digits (rows 1, 3, 5, 7 of 8) above their reconstructions (rows 2, 4, 6, 8)
    tiles = grid_tiles(folder / "reconstructions.png", 64, nrow=8, tile=(28, 28))
    originals, reconstructions = rearrange(tiles, "(r two c) rgb h w -> two (r c) rgb h w", two=2, c=8)
    x = load_mnist_sample().test.images[:32].float() / 255  # (32, 1, 28, 28)
    assert torch.equal(originals, png_pixels(x))
    vqvae, _ = load_vqvae(mnist_sample_fit.vqvae)
    assert (reconstructions.int() - png_pixels(vqvae(x).reconstruction.clamp(0, 1)).int()).abs().max() <= 1
    ckpt = load_checkpoint(mnist_sample_fit.vqvae, "vqvae")
    assert ckpt["data"]["name"] == "mnist-sample" and ckpt["config"]["codebook_size"] == 32


def test_fit_prior_reports_bits_per_code_and_caches_codes(mnist_sample_fit):
    metrics, folder = mnist_sample_fit.prior_metrics, mnist_sample_fit.prior.parent
    assert 0 < metrics["test_bits_per_code"] < 10
    assert len(list(folder.glob("codes-*.pt"))) == 1  # in the fit's folder, not the VQ-VAE's
    assert not list(mnist_sample_fit.vqvae.parent.glob("codes-*.pt"))
    ckpt = load_checkpoint(mnist_sample_fit.prior, "prior")
    assert ckpt["codebook_size"] == 32 and ckpt["label_names"] == [str(d) for d in range(10)]
    assert ckpt["config"]["num_classes"] == 10 and ckpt["code_shape"] == [7, 7]
    grid_tiles(folder / "samples.png", 20, nrow=2, tile=(28, 28))  # a row per class, --samples-per-class 2


def test_generate_returns_images_and_is_reproducible(mnist_sample_fit, tmp_path):
    vq, prior = mnist_sample_fit.vqvae, mnist_sample_fit.prior
    out = generate.generate(vq, prior, 3, labels=[7, 7, 3], seed=0, device="cpu")
    assert out.images.shape == (3, 1, 28, 28) and out.codes.shape == (3, 7, 7)
    assert out.images.min() >= 0 and out.images.max() <= 1 and out.waveforms is None
    again = generate.generate(vq, prior, 3, labels=[7, 7, 3], seed=0, device="cpu", method="reference")
    assert torch.equal(out.codes, again.codes)
    png = tmp_path / "grid.png"
    grid = generate.main(generate.get_args_parser().parse_args(
        ["--vqvae", str(vq), "--prior", str(prior), "--labels", "all", "--seed", "1", "--out", str(png)]))
    assert torch.equal(grid_tiles(png, 10, nrow=8, tile=(28, 28)), png_pixels(grid.images))  # 8 to a row


def test_generate_refuses_bad_requests(mnist_sample_fit, tmp_path):
    vq, prior = mnist_sample_fit.vqvae, mnist_sample_fit.prior
    with pytest.raises(ValueError, match="class-conditional"):
        generate.generate(vq, prior, 2, device="cpu")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        generate.generate(vq, prior, 2, labels=[3, 10], device="cpu")
    # a prior whose K differs from the VQ-VAE's codebook
    payload = load_checkpoint(prior)
    other = tmp_path / "other_prior.pt"
    from vqvae_prior.checkpoint import load_prior
    model, _ = load_prior(prior)
    import dataclasses
    from vqvae_prior.prior import GatedPixelCNN
    wrong = GatedPixelCNN(dataclasses.replace(model.config, codebook_size=64))
    save_checkpoint(other, "prior", wrong, **{k: payload[k] for k in ("label_names", "code_shape", "vqvae", "vqvae_digest")})
    with pytest.raises(CheckpointError, match="K=64 codes but .* K=32"):
        generate.generate(vq, other, 2, labels=[1, 2], device="cpu")
    # a prior fitted on another VQ-VAE's codes
    save_checkpoint(other, "prior", model, **{**{k: payload[k] for k in ("label_names", "code_shape", "vqvae")},
                                               "vqvae_digest": "0" * 16})
    with pytest.raises(CheckpointError, match="other VQ-VAE weights"):
        generate.generate(vq, other, 2, labels=[1, 2], device="cpu")


def test_refuses_to_overwrite_a_fit_and_resume_continues_it_exactly(tmp_path, digit_folder):
    folder = ["--dataset", "image-folder", "--data-root", str(digit_folder), "--batch-size", "16"]
    run_vqvae(tmp_path / "vq", "--epochs", "2", *folder)
    with pytest.raises(RunFolderError, match="pass --resume"):
        run_vqvae(tmp_path / "vq", *folder)
    resumed_dir = tmp_path / "resumed"
    with interrupted_after_first_epoch():
        run_vqvae(resumed_dir / "vq", "--epochs", "2", *folder)
    assert load_checkpoint(resumed_dir / "vq" / "vqvae-last.pt")["epoch"] == 1
    run_vqvae(resumed_dir / "vq", "--epochs", "2", "--resume", *folder)
    assert load_checkpoint(resumed_dir / "vq" / "vqvae-last.pt")["epoch"] == 2
    assert_same_fits(tmp_path / "vq", resumed_dir / "vq", "vqvae")


@pytest.mark.parametrize("ema", ["0", "0.9"])
def test_prior_resume_continues_exactly(tmp_path, digit_folder_fit, ema):
    args = ["--vqvae", str(digit_folder_fit.vqvae), "--no-progress", "--device", "cpu", "--batch-size", "16",
            "--ema", ema, *PRIOR_3_LAYERS]
    parse = fit_prior.get_args_parser().parse_args
    fit_prior.main(parse(args + ["--out", str(tmp_path / "a"), "--epochs", "2"]))
    with interrupted_after_first_epoch():
        fit_prior.main(parse(args + ["--out", str(tmp_path / "b"), "--epochs", "2"]))
    fit_prior.main(parse(args + ["--out", str(tmp_path / "b"), "--epochs", "2", "--resume"]))
    assert_same_fits(tmp_path / "a", tmp_path / "b", "prior")
    if ema != "0":  # the trained weights go on from where they were, not from the average
        a, b = (load_checkpoint(tmp_path / name / "prior-last.pt") for name in "ab")
        assert all(torch.equal(a["trained_model"][k], v) for k, v in b["trained_model"].items())
        assert not all(torch.equal(a["trained_model"][k], v) for k, v in a["model"].items())
    with pytest.raises(RunFolderError, match="no fit to resume"):
        fit_prior.main(parse(args + ["--out", str(tmp_path / "c"), "--resume"]))


def test_quickstart_writes_samples_png(tmp_path, digit_folder):
    # later arguments win in argparse: the quickstart runs on the small digit folder instead of mnist-sample
    vqvae_args = VQVAE_32_CODES + ["--dataset", "image-folder", "--data-root", str(digit_folder)]
    args = quickstart.get_args_parser().parse_args([
        "--out", str(tmp_path / "qs"), "--samples", str(tmp_path / "samples.png"), "--vqvae-epochs", "1",
        "--prior-epochs", "1", "--no-progress", "--device", "cpu",
        "--vqvae-args", " ".join(vqvae_args), "--prior-args", " ".join(PRIOR_3_LAYERS)])
    out = quickstart.main(args)
    assert out.images.shape == (30, 1, 28, 28)  # 3 classes x 10
    assert torch.equal(grid_tiles(tmp_path / "samples.png", 30, nrow=10, tile=(28, 28)), png_pixels(out.images))
    prior = load_checkpoint(tmp_path / "qs" / "prior" / "prior.pt", "prior")  # the quick start's prior recipe
    assert prior["jitter"] == 1 and prior["config"]["label_dropout"] == 0.1
    quickstart.main(args)  # a second run reuses the finished fits


def test_jitter_offsets_and_translation():
    """--jitter P: every (dy, dx) in [-P, P]^2, the image as it is first; translate moves pixels and fills zeros."""
    moves = offsets(jitter=1)
    assert moves[0] == (0, 0) and len(set(moves)) == 9 and all(max(map(abs, m)) <= 1 for m in moves)
    assert offsets(shifts=3) == [(0, 0), (1, 0), (2, 0)]
    for bad, match in (({"shifts": 2, "jitter": 1}, "pass one of them"), ({"jitter": -1}, "--jitter must be >= 0")):
        with pytest.raises(ValueError, match=match):
            offsets(**bad)
    x = torch.arange(1, 13, dtype=torch.float32).view(1, 1, 3, 4)  # (B, C, H, W)
    for dy, dx in [(1, 0), (-1, 2), (2, -3), (0, -1)]:
        moved = translate(x, dy, dx)
        assert moved.shape == x.shape
        for r in range(3):
            for c in range(4):
                src = (r - dy, c - dx)
                inside = 0 <= src[0] < 3 and 0 <= src[1] < 4
                assert moved[0, 0, r, c] == (x[0, 0, src[0], src[1]] if inside else 0)
    assert torch.equal(translate(x, 2, 0), shift_down(x, 2))  # what --shifts did before --jitter


def test_prior_fits_on_jittered_encodings(mnist_sample_fit, tmp_path):
    """A fit with --jitter 1 trains on 9 encodings per image; its checkpoint records the jitter, resume checks it."""
    run_prior(mnist_sample_fit.vqvae, tmp_path / "prior", "--jitter", "1")
    ckpt = load_checkpoint(tmp_path / "prior" / "prior.pt", "prior")
    assert ckpt["jitter"] == 1 and ckpt["shifts"] == 1
    with pytest.raises(ValueError, match="with --jitter 1; this call asks for --jitter 0"):
        run_prior(mnist_sample_fit.vqvae, tmp_path / "prior", "--jitter", "0", "--resume")


def test_generate_complete_writes_inputs_kept_parts_and_completions(mnist_sample_fit, tmp_path):
    """--complete a folder of digits (class = folder name): the top code rows kept, the rest sampled."""
    from PIL import Image

    test = load_mnist_sample().test
    for i in (0, 60, 130):  # digits 0, 1, 2
        (tmp_path / "digits" / str(int(test.labels[i]))).mkdir(parents=True)
        Image.fromarray(test.images[i, 0].numpy()).save(tmp_path / "digits" / str(int(test.labels[i])) / f"{i}.png")
    args = ["--vqvae", str(mnist_sample_fit.vqvae), "--prior", str(mnist_sample_fit.prior), "--device",
            "cpu", "--complete", str(tmp_path / "digits"), "--keep-rows", "3", "--repeat", "2", "--seed", "0",
            "--out", str(tmp_path / "completions.png")]
    done = generate.main(generate.get_args_parser().parse_args(args))
    assert done.labels.tolist() == [0, 1, 2] and done.images.shape == (3, 2, 1, 28, 28)
    rows = torch.cat([done.inputs[:, None], done.kept[:, None], done.images], dim=1)  # (3, 4, 1, 28, 28)
    tiles = grid_tiles(tmp_path / "completions.png", 12, nrow=4, tile=(28, 28))  # a row per input
    assert torch.equal(tiles, png_pixels(rows.flatten(0, 1)))
    vqvae, _ = load_vqvae(mnist_sample_fit.vqvae)
    x = test.images[[0, 60, 130]].float() / 255
    assert torch.equal(done.codes[:, :, :3], vqvae.encode(x)[:, None, :3].expand(-1, 2, -1, -1))
    parse = generate.get_args_parser().parse_args
    with pytest.raises(ValueError, match="--complete needs --keep-rows"):
        generate.main(parse([a for a in args if a not in ("--keep-rows", "3")]))
    with pytest.raises(ValueError, match="one label per input"):
        generate.main(parse(args + ["--labels", "1", "2"]))
    Image.new("L", (32, 32)).save(tmp_path / "digits" / "0" / "big.png")
    with pytest.raises(ValueError, match=r"big\.png is 32x32, expected 28x28"):
        generate.main(parse(args))
    (tmp_path / "loose").mkdir()
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "loose" / "x.png")
    with pytest.raises(ValueError, match="gives .*x.png no class"):
        generate.main(parse([*args[:-1], str(tmp_path / "c.png"), "--complete", str(tmp_path / "loose")]))


def test_fits_from_python_take_the_command_line_options_as_keywords(tmp_path, digit_folder):
    """fit_vqvae.fit / fit_prior.fit: keyword options, the rest at the parser's defaults; the same fits as the
    command line's."""
    folder = ["--dataset", "image-folder", "--data-root", str(digit_folder), "--batch-size", "16"]
    run_vqvae(tmp_path / "cli" / "vq", *folder)
    run_prior(tmp_path / "cli" / "vq" / "vqvae.pt", tmp_path / "cli" / "prior", "--batch-size", "16")
    tiny_vqvae = {"channels": 16, "residual_channels": 8, "codebook_size": 32, "code_dim": 8}
    fit_vqvae.fit(tmp_path / "py" / "vq", dataset="image-folder", data_root=str(digit_folder), batch_size=16,
                  epochs=1, no_progress=True, device="cpu", **tiny_vqvae)
    fit_prior.fit(tmp_path / "py" / "prior", tmp_path / "py" / "vq" / "vqvae.pt", batch_size=16, epochs=1,
                  no_progress=True, device="cpu", layers=3, channels=16, head_channels=32, samples_per_class=2)
    for path in ("vq/vqvae.pt", "prior/prior.pt"):
        by_cli, by_py = load_checkpoint(tmp_path / "cli" / path), load_checkpoint(tmp_path / "py" / path)
        assert by_cli["config"] == by_py["config"]
        assert_equal_weights(by_cli, by_py, path)
    with pytest.raises(UsageError, match="unknown options batchsize"):
        fit_vqvae.fit(tmp_path / "x", batchsize=16)
    with pytest.raises(UsageError, match="--quantizer 'kmeans' is not one of"):
        fit_vqvae.fit(tmp_path / "x", quantizer="kmeans")
    with pytest.raises(UsageError, match="pass --vqvae CHECKPOINT .* or --pixels LEVELS"):
        fit_prior.fit(tmp_path / "x")
    assert cli.given_options(PriorFit, ["--layers", "3", "--unconditional"]) == {
        "layers": 3, "unconditional": True}
    assert not (tmp_path / "x").exists()


def test_label_dropout_fit_and_guided_generation(mnist_sample_fit, tmp_path):
    """fit_prior --label-dropout records it (default: the modality's for a class-conditional prior, 0 for an
    unconditional one) and gives the prior a null class; generate --guidance samples with it, and refuses guidance
    for a prior fitted without label dropout."""
    vqvae = mnist_sample_fit.vqvae
    run_prior(vqvae, tmp_path / "prior", "--label-dropout", "0.2")
    ckpt = load_checkpoint(tmp_path / "prior" / "prior.pt", "prior")
    assert ckpt["config"]["label_dropout"] == 0.2
    args = ["--vqvae", str(vqvae), "--prior", str(tmp_path / "prior" / "prior.pt"),
            "--labels", "all", "--seed", "0", "--device", "cpu", "--out", str(tmp_path / "g.png")]
    guided = generate.main(generate.get_args_parser().parse_args([*args, "--guidance", "2"]))
    plain = generate.main(generate.get_args_parser().parse_args(args))
    assert guided.codes.shape == plain.codes.shape and not torch.equal(guided.codes, plain.codes)
    with pytest.raises(UsageError, match="--guidance must be"):
        generate.main(generate.get_args_parser().parse_args([*args, "--guidance", "-1"]))
    plain_prior = ["--vqvae", str(vqvae), "--epochs", "1", "--no-progress", "--device", "cpu",
                   *PRIOR_3_LAYERS]
    for out, extra, expected in (("default", [], Images.prior_defaults["label_dropout"]),
                                 ("default-unconditional", ["--unconditional"], 0.0)):
        fit_prior.main(fit_prior.get_args_parser().parse_args([*plain_prior, "--out", str(tmp_path / out), *extra]))
        assert load_checkpoint(tmp_path / out / "prior.pt", "prior")["config"]["label_dropout"] == expected
    fit_prior.main(fit_prior.get_args_parser().parse_args(
        [*plain_prior, "--out", str(tmp_path / "plain"), "--label-dropout", "0"]))
    args[3] = str(tmp_path / "plain" / "prior.pt")
    with pytest.raises(UsageError, match="label dropout"):
        generate.main(generate.get_args_parser().parse_args([*args, "--guidance", "2"]))
    with pytest.raises(UsageError, match="--label-dropout"):
        run_prior(vqvae, tmp_path / "prior", "--label-dropout", "0.1", "--unconditional")
