"""RGB pixels in the gated PixelCNN: channel masks (R -> G -> B inside each pixel), causality over pixels and
channels, the full receptive field, and the cached sampler exactly equal to the reference with channels."""

from __future__ import annotations

import pytest
import torch

from pipelines.receptive_field import before, receptive_field
from vqvae_prior import GatedPixelCNN, PriorConfig
from vqvae_prior.layers import channel_groups, channel_mask


def rgb_prior(**kw) -> GatedPixelCNN:
    torch.manual_seed(0)
    config = {"codebook_size": 5, "channels": 24, "num_layers": 4, "head_channels": 48, "image_channels": 3, **kw}
    return GatedPixelCNN(PriorConfig(**config)).eval()


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_channel_groups_and_masks():
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert channel_groups(12, 3, halves=2).tolist() == [0, 0, 1, 1, 2, 2] * 2  # each half of a gate
    groups = torch.arange(3)
    assert channel_mask(groups, groups, "A").tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert channel_mask(groups, groups, "B").tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_each_channel_sees_the_pixels_before_it_and_the_channels_before_it_in_its_pixel():
    """Raster order over pixels, then R -> G -> B: at every pixel and channel of a 4 x 3 image, the gradient of
    the logits is exactly zero for every input at or after it, and (enough layers) non-zero for every one before."""
    for model in (rgb_prior(), rgb_prior(num_classes=2, label_dropout=0.1)):
        shape = (4, 3 * 3)  # (rows, pixels * channels)
        for r in range(4):
            for c in range(9):
                assert torch.equal(receptive_field(model, shape, (r, c)), before(shape, (r, c))), (r, c)


def test_the_first_channel_of_a_pixel_sees_nothing_of_it_and_the_last_sees_the_two_others():
    field_r = receptive_field(rgb_prior(), (3, 9), (1, 3))  # R of pixel (1, 1)
    field_b = receptive_field(rgb_prior(), (3, 9), (1, 5))  # B of pixel (1, 1)
    assert field_r[1, 3:6].tolist() == [False, False, False]
    assert field_b[1, 3:6].tolist() == [True, True, False]


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_the_cached_sampler_equals_the_reference_with_channels(guidance):
    model = rgb_prior(num_classes=3, label_dropout=0.1 if guidance else 0.0)
    labels = [0, 1, 2, 1]
    kwargs = {"labels": labels, "guidance": guidance} if guidance else {"labels": labels}
    reference = model.sample(4, (3, 12), generator=seeded(5), method="reference", **kwargs)
    cached = model.sample(4, (3, 12), generator=seeded(5), method="cached", **kwargs)
    assert torch.equal(cached, reference) and reference.shape == (4, 3, 12) and reference.max() < 5


def test_completion_keeps_given_channels_with_channels():
    model = rgb_prior()
    given = torch.full((2, 3, 6), -1)
    given[:, 0] = torch.randint(5, (2, 6))  # the first row of both images
    given[:, 1, 0] = 4  # and the red of the first pixel of the second row
    for method in ("reference", "cached"):
        out = model.sample(2, (3, 6), generator=seeded(1), given=given, method=method)
        assert torch.equal(out[:, 0], given[:, 0]) and (out[:, 1, 0] == 4).all()
    assert torch.equal(model.sample(2, (3, 6), generator=seeded(1), given=given, method="reference"),
                       model.sample(2, (3, 6), generator=seeded(1), given=given, method="cached"))


def test_an_rgb_config_needs_channels_divisible_by_the_image_channels():
    with pytest.raises(ValueError, match="multiples of image_channels"):
        PriorConfig(codebook_size=4, channels=10, head_channels=12, image_channels=3)
