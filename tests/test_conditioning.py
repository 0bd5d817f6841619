"""Location-dependent conditioning of the gated PixelCNN on a top code map (vqvae_prior.conditioning): the bottom
prior at a position sees the whole top map and no later bottom code; its cached sampler draws the reference's
codes; the conditioning changes what it models; wrong conditioning maps are refused."""

from __future__ import annotations

import pytest
import torch

from test_prior import dependency_map, raster_masks
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.sampling import stepwise

K_TOP = 5


def conditioned_prior(num_classes: int = 0, label_dropout: float = 0.0, **fields) -> GatedPixelCNN:
    torch.manual_seed(0)
    config = PriorConfig(**{"codebook_size": 16, "num_classes": num_classes, "channels": 8, "num_layers": 3,
                            "head_channels": 16, "label_dropout": label_dropout, "condition_codebook_size": K_TOP,
                            **fields})
    model = GatedPixelCNN(config).eval()
    with torch.no_grad():  # weights far from their initialization: every path carries signal
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def top_maps(n: int, shape: tuple[int, int], scale: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(K_TOP, (n, shape[0] // scale, shape[1] // scale), generator=torch.Generator().manual_seed(seed))


def draw(model, shape, labels, condition, method, n=4, seed=3, **kw):
    return model.sample(n, shape, labels, generator=torch.Generator().manual_seed(seed), method=method,
                        condition=condition, **kw)


@pytest.mark.parametrize("shape,scale", [((6, 6), 2), ((8, 4), 2), ((4, 10), 2), ((8, 8), 4)])
def test_bottom_prior_sees_the_whole_top_map_and_no_later_bottom_code(shape, scale):
    """From the gradient: d logits at a position / d embedded bottom codes is exactly zero at and after it, and
    d logits / d embedded top codes is non-zero at every top position, the later ones included."""
    model = conditioned_prior(condition_scale=scale).double()
    top_shape = (shape[0] // scale, shape[1] // scale)
    for position in [(0, 0), (shape[0] // 2, 1), (shape[0] - 1, shape[1] - 1)]:
        top = torch.randn(1, 8, *top_shape, dtype=torch.float64, requires_grad=True)
        model.condition_map = lambda _: model.condition.from_embeddings(top)  # the top map, differentiable
        grad = dependency_map(lambda x: model.logits_from_embeddings(x, None, torch.zeros(1)), 8, shape, position)
        _, at_or_after = raster_masks(shape, position)
        assert torch.all(grad[at_or_after] == 0), f"position {position} sees later bottom codes: {grad}"
        top_grad = torch.autograd.grad(
            model.logits_from_embeddings(torch.randn(1, 8, *shape, dtype=torch.float64), None, torch.zeros(1))
            [0, :, position[0], position[1]].sum(), top)[0]
        assert torch.all(top_grad.abs().sum(1) > 0), f"position {position} misses part of the top map"


@pytest.mark.parametrize("shape,num_classes", [((6, 6), 0), ((4, 8), 3), ((8, 2), 3), ((2, 4), 0)])
def test_cached_sampler_returns_the_reference_samples_with_a_conditioning_map(shape, num_classes):
    model = conditioned_prior(num_classes, label_dropout=0.2 if num_classes else 0.0)
    labels = torch.tensor([0, 1, 2, 1]) if num_classes else None
    condition = top_maps(4, shape)
    given = torch.full((4, *shape), -1)
    given[:, 0], given[1, -1, -1] = 3, 7
    cases = [{}, {"temperature": 0.7}, {"given": given}] + ([{"guidance": 2.0}] if num_classes else [])
    for kw in cases:
        reference = draw(model, shape, labels, condition, "reference", **kw)
        assert torch.equal(draw(model, shape, labels, condition, "cached", **kw), reference), kw


def test_cached_logits_equal_a_full_forward_pass_with_a_conditioning_map(monkeypatch):
    model, shape = conditioned_prior(3), (6, 4)
    labels, condition = torch.tensor([2, 0, 1, 1]), top_maps(4, shape)
    steps = []
    original = stepwise.sample_from_logits
    monkeypatch.setattr(stepwise, "sample_from_logits", lambda l, u, t: steps.append(l.clone()) or original(l, u, t))
    samples = draw(model, shape, labels, condition, "cached")
    for step, logits in enumerate(steps):
        r, c = divmod(step, shape[1])
        partial = samples.clone().reshape(len(samples), -1)
        partial[:, step:] = 0
        full = model(partial.reshape(samples.shape), labels, condition)[:, :, r, c]  # (n, K)
        torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)


def test_row_replay_with_a_conditioning_map(monkeypatch):
    """The CUDA-graph driver's contract (the row's work recorded once, replayed for each later row) picks each row's
    conditioning through the state's row counter: the reference's samples."""
    monkeypatch.setattr(stepwise, "_use_graphs", lambda indices: True)
    monkeypatch.setattr(stepwise, "_capture", lambda work: work)
    model, shape = conditioned_prior(3, label_dropout=0.1), (8, 4)
    labels, condition = torch.tensor([0, 1, 2, 0]), top_maps(4, shape)
    for kw in ({}, {"guidance": 1.5}):
        reference = draw(model, shape, labels, condition, "reference", **kw)
        assert torch.equal(draw(model, shape, labels, condition, "cached", **kw), reference)


def test_the_conditioning_map_changes_the_logits_and_the_codes_compute_the_embeddings_function():
    model, shape = conditioned_prior(3), (6, 6)
    indices, labels = torch.randint(16, (4, *shape)), torch.tensor([0, 1, 2, 0])
    a, b = top_maps(4, shape, seed=1), top_maps(4, shape, seed=2)
    assert not torch.allclose(model(indices, labels, a), model(indices, labels, b))
    torch.testing.assert_close(model(indices, labels, a), model.code_map_logits(model.embed(indices), labels, a),
                               rtol=1e-5, atol=1e-5)
    model.train()
    loss = model.nll(indices, labels, a)
    loss.backward()
    assert model.condition.embedding.weight.grad.abs().sum() > 0
    assert all(layer.condition.weight.grad.abs().sum() > 0 for layer in model.layers)


def test_conditioning_maps_are_checked():
    model, shape = conditioned_prior(), (6, 4)
    with pytest.raises(ValueError, match="pass condition"):
        model.sample(2, shape)
    with pytest.raises(ValueError, match=r"condition must be integer code maps \(2, 3, 2\)"):
        model.sample(2, shape, condition=torch.zeros(2, 6, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"condition codes must be in \[0, 5\)"):
        model.sample(2, shape, condition=torch.full((2, 3, 2), 5))
    with pytest.raises(ValueError, match="divisible by 2"):
        model.sample(2, (5, 4), condition=torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="pass condition"):
        model(torch.zeros(2, *shape, dtype=torch.long))
    plain = GatedPixelCNN(PriorConfig(16, channels=8, num_layers=2, head_channels=16))
    with pytest.raises(ValueError, match="not conditioned"):
        plain.sample(2, shape, condition=torch.zeros(2, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="condition_codebook_size"):
        PriorConfig(16, condition_codebook_size=1)
    with pytest.raises(ValueError, match="condition_scale"):
        PriorConfig(16, condition_codebook_size=4, condition_scale=3)
