"""The plain masked PixelCNN (a second prior architecture) and the receptive fields of both: the plain stack's
blind spot, the gated stack's full coverage, causality, checkpoints, sampling and the fit."""

from __future__ import annotations

import pytest
import torch

from files import grid_tiles, png_pixels
from fits import run_prior
from pipelines import receptive_field as rf
from pipelines.receptive_field import before, receptive_field
from vqvae_prior import GatedPixelCNN, PlainPixelCNN, PlainPriorConfig, PriorConfig, load_prior, save_checkpoint
from vqvae_prior.errors import UsageError


def plain(**kw) -> PlainPixelCNN:
    torch.manual_seed(0)
    return PlainPixelCNN(PlainPriorConfig(**{"codebook_size": 16, "channels": 16, "num_layers": 5,
                                             "head_channels": 32, **kw}))


def gated(**kw) -> GatedPixelCNN:
    torch.manual_seed(0)
    return GatedPixelCNN(PriorConfig(**{"codebook_size": 16, "channels": 16, "num_layers": 5, "head_channels": 32,
                                        **kw}))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_plain_stack_has_a_blind_spot_and_the_gated_stack_none():
    """On the same 8 x 10 map, 5 layers each (a 7x7 first layer, then 3x3): the gated prior at (5, 3) sees every
    position before it; the plain one sees none after it and misses (4, 7), up one row and right four columns,
    which no chain of mask-B kernels reaches (each step right also goes up a row)."""
    shape, position = (8, 10), (5, 3)
    earlier = before(shape, position)
    assert torch.equal(receptive_field(gated(), shape, position), earlier)
    field = receptive_field(plain(), shape, position)
    assert not (field & ~earlier).any()  # causal
    assert not field[4, 7] and field[4, 6] and field[3, 7]
    assert (earlier & ~field).sum() > 0


@pytest.mark.parametrize("make", [plain, gated])
def test_causal_at_every_position(make):
    """The logits at each position depend on no input at or after it (raster order), conditional or not."""
    for model in (make(), make(num_classes=3, label_dropout=0.1)):
        for r in range(4):
            for c in range(5):
                assert not (receptive_field(model, (4, 5), (r, c)) & ~before((4, 5), (r, c))).any()


def test_the_picture_colours_each_kind_of_position(tmp_path):
    field = receptive_field(plain(), (8, 10), (5, 3))
    image = rf.picture(field, (5, 3), cell=4)  # (3, 32, 40)
    assert image.shape == (3, 32, 40)
    centre = lambda r, c: tuple(image[:, 4 * r + 2, 4 * c + 2].tolist())  # noqa: E731
    assert centre(5, 3) == pytest.approx(rf.COLOURS["position"])
    assert centre(4, 7) == pytest.approx(rf.COLOURS["blind"])
    assert centre(4, 6) == pytest.approx(rf.COLOURS["seen"])
    assert centre(6, 0) == pytest.approx(rf.COLOURS["after"])
    out = tmp_path / "rf.png"
    args = rf.get_args_parser().parse_args(["--arch", "plain", "--layers", "5", "--size", "8", "10",
                                            "--position", "5", "3", "--out", str(out)])
    assert torch.equal(rf.main(args), field)  # a property of the architecture: other widths, the same field
    drawn = rf.picture(field, (5, 3))  # (3, 8 cells, 10 cells) at the default cell size
    assert torch.equal(grid_tiles(out, 1, nrow=1, tile=drawn.shape[1:]), png_pixels(drawn[None]))


def test_receptive_field_refuses_bad_requests(tmp_path):
    parse = rf.get_args_parser().parse_args
    with pytest.raises(UsageError, match="--arch .* or --prior"):
        rf.main(parse(["--out", str(tmp_path / "a.png")]))
    with pytest.raises(UsageError, match=r"position \(9, 0\) is outside the 4 x 4"):
        rf.main(parse(["--arch", "gated", "--size", "4", "4", "--position", "9", "0", "--out", str(tmp_path / "a.png")]))


def test_a_plain_checkpoint_round_trips(tmp_path):
    model = plain(num_classes=3, label_dropout=0.1)
    save_checkpoint(tmp_path / "prior.pt", "prior", model, codebook_size=16)
    loaded, payload = load_prior(tmp_path / "prior.pt")
    assert payload["arch"] == "plain_pixelcnn" and isinstance(loaded, PlainPixelCNN)
    assert loaded.config == model.config
    x, y = torch.randint(16, (2, 5, 6)), torch.tensor([0, 2])
    assert torch.equal(loaded(x, y), model.eval()(x, y))


def test_a_plain_prior_samples_with_the_reference_sampler_only():
    model = plain(num_classes=3, label_dropout=0.1)
    reference = model.sample(4, (3, 4), [0, 1, 2, 0], generator=seeded(1), method="reference", guidance=2)
    assert torch.equal(model.sample(4, (3, 4), [0, 1, 2, 0], generator=seeded(1), guidance=2), reference)  # auto
    with pytest.raises(UsageError, match="PlainPixelCNN has no step-by-step form.*'reference'"):
        model.sample(4, (3, 4), [0, 1, 2, 0], method="cached")


def test_fit_prior_fits_and_resumes_a_plain_prior(mnist_sample_fit, tmp_path):
    metrics = run_prior(mnist_sample_fit.vqvae, tmp_path / "prior", "--arch", "plain")
    assert 0 < metrics["test_bits_per_code"] < 10
    prior, payload = load_prior(tmp_path / "prior" / "prior.pt")
    assert isinstance(prior, PlainPixelCNN) and payload["args"]["arch"] == "plain"
    grid_tiles(tmp_path / "prior" / "samples.png", 20, nrow=2, tile=(28, 28))  # a row per class, 2 samples each
    run_prior(mnist_sample_fit.vqvae, tmp_path / "none" / "prior", "--arch", "plain", "--samples-per-class", "0")
    assert isinstance(load_prior(tmp_path / "none" / "prior" / "prior.pt")[0], PlainPixelCNN)
    assert not (tmp_path / "none" / "prior" / "samples.png").exists()  # no samples asked for
    with pytest.raises(Exception, match="arch"):  # another architecture is another fit
        run_prior(mnist_sample_fit.vqvae, tmp_path / "prior", "--arch", "gated", "--resume", "--epochs", "2")
