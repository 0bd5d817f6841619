"""The prior over two levels of codes (vqvae_prior.hierarchy): its likelihood is the two levels', it samples the
top maps then the bottom maps given them (every sampler alike), and its checkpoint round-trips."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vqvae_prior.checkpoint import load_prior, save_checkpoint
from vqvae_prior.hierarchy import HierarchicalPrior, HierarchicalPriorConfig, per_level
from vqvae_prior.prior import PriorConfig


def two_level_prior(num_classes: int = 3, label_dropout: float = 0.2) -> HierarchicalPrior:
    torch.manual_seed(0)
    config = PriorConfig(12, num_classes, channels=8, num_layers=2, head_channels=16, label_dropout=label_dropout)
    model = HierarchicalPrior(HierarchicalPriorConfig.of(config)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def test_config_round_trips_through_a_dict_and_refuses_mismatched_levels():
    config = two_level_prior().config
    assert HierarchicalPriorConfig(**dataclasses.asdict(config)) == config
    assert config.bottom.condition_codebook_size == config.top.codebook_size == config.codebook_size == 12
    with pytest.raises(ValueError, match="conditioned on the top codes"):
        HierarchicalPriorConfig(config.top, config.top)
    with pytest.raises(ValueError, match="same classes"):
        HierarchicalPriorConfig(config.top, dataclasses.replace(config.bottom, num_classes=2))


def test_likelihood_is_the_two_levels_weighted_by_their_codes():
    model = two_level_prior()
    top, bottom = torch.randint(12, (4, 3, 2)), torch.randint(12, (4, 6, 4))
    labels = torch.tensor([0, 1, 2, 0])
    bits_top, bits_bottom = model.level_bits((top, bottom), labels)
    torch.testing.assert_close(bits_top, model.top.bits_per_code(top, labels))
    torch.testing.assert_close(bits_bottom, model.bottom.bits_per_code(bottom, labels, top))
    expected = (bits_top * 6 + bits_bottom * 24) / 30
    torch.testing.assert_close(model.bits_per_code((top, bottom), labels), expected)
    torch.testing.assert_close(model.nll((top, bottom), labels), expected * math.log(2))


@pytest.mark.parametrize("kw", [{}, {"guidance": 2.0}, {"temperature": (0.8, 1.0)}, {"guidance": (0.0, 1.5)}])
def test_samples_the_top_then_the_bottom_given_it_alike_with_every_sampler(kw):
    model, labels = two_level_prior(), torch.tensor([0, 1, 2, 2])
    drawn = {method: model.sample(4, (6, 4), labels, generator=torch.Generator().manual_seed(7), method=method, **kw)
             for method in ("reference", "cached")}
    (top, bottom), (top_c, bottom_c) = drawn["reference"], drawn["cached"]
    assert top.shape == (4, 3, 2) and bottom.shape == (4, 6, 4)
    assert torch.equal(top, top_c) and torch.equal(bottom, bottom_c)


def test_given_codes_of_both_levels_are_kept():
    model = two_level_prior()
    top_given, bottom_given = torch.full((2, 3, 2), -1), torch.full((2, 6, 4), -1)
    top_given[:, 0], bottom_given[:, :2] = 5, 9
    top, bottom = model.sample(2, (6, 4), [0, 1], given=(top_given, bottom_given))
    assert torch.all(top[:, 0] == 5) and torch.all(bottom[:, :2] == 9)


def test_checkpoint_round_trip(tmp_path):
    model = two_level_prior()
    save_checkpoint(tmp_path / "prior.pt", "prior", model)
    loaded, payload = load_prior(tmp_path / "prior.pt")
    assert payload["arch"] == "hierarchical" and isinstance(loaded, HierarchicalPrior)
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    generator = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = model.sample(3, (6, 4), [0, 1, 2], generator=generator())
    b = loaded.sample(3, (6, 4), [0, 1, 2], generator=generator())
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_compile_compiles_each_level(monkeypatch):
    """fit_prior --compile calls model.compile(): for two levels, each level's network is compiled (the compiler
    itself replaced by a record of the call, as in test_precision)."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    two_level_prior().compile()
    assert compiled == ["GatedPixelCNN", "GatedPixelCNN"]


def test_sampling_arguments_per_level_are_checked():
    assert per_level(0.5, 2, "temperature") == (0.5, 0.5)
    assert per_level([1.0, 0.7], 2, "temperature") == (1.0, 0.7)
    with pytest.raises(ValueError, match="one per level"):
        per_level((1.0, 0.7, 0.5), 2, "temperature")
    with pytest.raises(ValueError, match="divisible by 2"):
        two_level_prior().sample(2, (5, 4), [0, 1])
