"""Pixels as codes: the codec, the binarization, and a prior fitted on pixels end to end (fit, held-out NLL in the
papers' units, generate with no VQ-VAE), with the refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fits import logged
from pipelines import fit_prior, generate
from vqvae_prior import VQPriorPipeline, load_prior
from vqvae_prior.errors import UsageError
from vqvae_prior.pixels import PixelCodec, PixelConfig, binarize


def test_256_levels_are_the_8_bit_values_and_decode_back():
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    codec = PixelCodec(PixelConfig(256))
    levels = codec.encode(values.float() / 255)  # (1, 16, 16)
    assert torch.equal(levels, values[:, 0].long())
    assert torch.equal((codec.decode_indices(levels) * 255).round().to(torch.uint8), values)


def test_fewer_levels_quantize_uniformly():
    codec = PixelCodec(PixelConfig(4))
    x = torch.tensor([0.0, 0.24, 0.25, 0.6, 0.99, 1.0]).reshape(1, 1, 1, 6)
    assert codec.encode(x).tolist() == [[[0, 0, 1, 2, 3, 3]]]
    assert codec.decode_indices(torch.tensor([[[0, 3]]])).tolist() == [[[[0.0, 1.0]]]]


def test_binarization_is_drawn_once_per_seed_with_the_intensity_as_probability():
    images = torch.full((200, 1, 10, 10), 64, dtype=torch.uint8)  # intensity 0.251
    bits = binarize(images, seed=0)
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(bits, binarize(images, seed=0)) and not torch.equal(bits, binarize(images, seed=1))
    assert bits.mean().item() == pytest.approx(64 / 255, abs=0.01)


def test_pixel_config_refuses_what_it_cannot_model():
    with pytest.raises(ValueError, match="levels must be in 2 .. 256"):
        PixelConfig(1)
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        PixelConfig(256, in_channels=0)


def test_rgb_pixels_lie_side_by_side_in_raster_then_channel_order():
    codec = PixelCodec(PixelConfig(256, in_channels=3))
    x = torch.randint(256, (2, 3, 4, 5), dtype=torch.uint8)
    levels = codec.encode(x.float() / 255)  # (2, 4, 15)
    assert levels.shape == (2, 4, 15) and levels[1, 2, 3 * 4 + 1] == x[1, 1, 2, 4]  # G of pixel (2, 4)
    assert torch.equal((codec.decode_indices(levels) * 255).round().to(torch.uint8), x)
    assert codec.decoded_shape((4, 15)) == (3, 4, 5)


@pytest.fixture
def rgb_folder(tmp_path):
    """24 random 6 x 6 RGB images in two classes, as PNG files."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for label in ("cats", "dogs"):
        (tmp_path / "rgb" / label).mkdir(parents=True)
        for i in range(12):
            pixels = torch.randint(256, (6, 6, 3), generator=generator, dtype=torch.uint8).numpy()
            Image.fromarray(pixels, "RGB").save(tmp_path / "rgb" / label / f"{i}.png")
    return tmp_path / "rgb"


def test_a_gated_prior_on_rgb_pixels_fits_and_generates_images(tmp_path, rgb_folder):
    args = ["--pixels", "4", "--dataset", "image-folder", "--data-root", str(rgb_folder), "--out",
            str(tmp_path / "prior"), "--epochs", "1", "--no-progress", "--device", "cpu", "--layers", "2",
            "--channels", "12", "--head-channels", "12", "--samples-per-class", "2"]
    metrics = fit_prior.main(fit_prior.get_args_parser().parse_args(args))
    assert 0 < metrics["test_bits_per_dim"] < 4 and "test_nats_per_image" not in metrics  # 4 levels: 2 bits
    prior, payload = load_prior(tmp_path / "prior" / "prior.pt")
    assert prior.config.image_channels == 3 and payload["code_shape"] == [6, 18]
    out = generate.generate(None, tmp_path / "prior" / "prior.pt", n=2, labels=[0, 1], seed=0, device="cpu")
    assert out.images.shape == (2, 3, 6, 6) and out.codes.shape == (2, 6, 18)
    with pytest.raises(UsageError, match="only --arch gated models"):
        fit_prior.main(fit_prior.get_args_parser().parse_args(
            [*args[:6], "--out", str(tmp_path / "plain"), "--arch", "plain"]))
    with pytest.raises(UsageError, match=r"multiples of image_channels \(3\)"):
        fit_prior.main(fit_prior.get_args_parser().parse_args([*args[:6], "--out", str(tmp_path / "c")]))


def fit_pixels(tmp_path, digit_folder, *extra: str) -> dict:
    args = ["--pixels", "2", "--dataset", "image-folder", "--data-root", str(digit_folder), "--out",
            str(tmp_path / "prior"), "--epochs", "1", "--no-progress", "--device", "cpu", "--layers", "3",
            "--channels", "8", "--head-channels", "16", "--samples-per-class", "2", *extra]
    return fit_prior.main(fit_prior.get_args_parser().parse_args(args))


@pytest.fixture(scope="module")
def binarized_fit(tmp_path_factory, digit_folder) -> tuple[dict, Path]:
    """A prior on the binarized pixels of the digit folder, fitted for one epoch: its metrics and its checkpoint."""
    root = tmp_path_factory.mktemp("binarized")
    return fit_pixels(root, digit_folder), root / "prior" / "prior.pt"


def test_a_prior_on_binarized_pixels_fits_reports_nats_and_generates_without_a_vqvae(binarized_fit):
    metrics, checkpoint = binarized_fit
    assert 0 < metrics["test_bits_per_dim"] == metrics["test_bits_per_code"] < 2  # about a bit: two levels
    assert metrics["test_nats_per_image"] == pytest.approx(metrics["test_bits_per_code"] * math.log(2) * 28 * 28)
    assert logged(checkpoint.parent)[-1]["test_nats_per_image"] == pytest.approx(metrics["test_nats_per_image"])
    prior, payload = load_prior(checkpoint)
    assert payload["pixels"]["levels"] == 2 and "sampled once" in payload["pixels"]["quantization"]
    assert payload["code_shape"] == [28, 28] and "vqvae" not in payload

    out = generate.generate(None, checkpoint, n=3, labels=[0, 1, 2], seed=0, device="cpu")
    assert out.images.shape == (3, 1, 28, 28) and set(out.images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.images[:, 0], out.codes.float())  # level 1 decodes to 1, level 0 to 0
    again = VQPriorPipeline.from_checkpoints(None, checkpoint, "cpu")
    assert torch.equal(again(3, [0, 1, 2], generator=torch.Generator().manual_seed(0)).codes, out.codes)


def test_pixel_fits_and_pipelines_refuse_what_does_not_fit(tmp_path, digit_folder, binarized_fit):
    parse = fit_prior.get_args_parser().parse_args
    with pytest.raises(UsageError, match="--vqvae CHECKPOINT .* or --pixels LEVELS"):
        fit_prior.main(parse(["--out", str(tmp_path / "a")]))
    with pytest.raises(UsageError, match="--pixels needs --dataset"):
        fit_prior.main(parse(["--pixels", "2", "--out", str(tmp_path / "a")]))
    with pytest.raises(UsageError, match="--pixels must be a number of levels in 2 .. 256, got 1"):
        fit_prior.main(parse(["--pixels", "1", "--dataset", "mnist", "--out", str(tmp_path / "a")]))
    with pytest.raises(UsageError, match="--pixels models images; --dataset audio-folder holds recordings"):
        fit_prior.main(parse(["--pixels", "2", "--dataset", "audio-folder", "--out", str(tmp_path / "a")]))
    with pytest.raises(UsageError, match="--vqvae CHECKPOINT .* one of them"):
        fit_prior.main(parse(["--pixels", "2", "--vqvae", "x.pt", "--out", str(tmp_path / "a")]))
    with pytest.raises(UsageError, match="--jitter"):
        fit_pixels(tmp_path, digit_folder, "--jitter", "1")
    assert not (tmp_path / "a").exists() and not (tmp_path / "prior").exists()  # refused before any work
    with pytest.raises(UsageError, match="models the pixels of images.*pass no VQ-VAE"):
        VQPriorPipeline.from_checkpoints("runs/vq.pt", binarized_fit[1], "cpu")
