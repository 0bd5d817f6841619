"""Samplers: the cached sampler equals the reference sampler; seeds, temperature, given entries, conditioning."""

from __future__ import annotations

import pytest
import torch

from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.sampling import stepwise
from vqvae_prior.sampling.cached import prepared_weights


def draw(model, shape, labels=None, seed=0, method="cached", n=4, **kw):
    generator = torch.Generator().manual_seed(seed)
    return model.sample(n, shape, labels, generator=generator, method=method, **kw)


CASES = [((5, 5), 0), ((6, 3), 0), ((3, 8), 3), ((7, 7), 3), ((1, 4), 0), ((4, 1), 3)]


@pytest.mark.parametrize("shape,num_classes", CASES)
def test_cached_sampler_returns_the_reference_samples(shape, num_classes, tiny_prior):
    model = tiny_prior(num_classes)
    labels = torch.tensor([0, 1, 2, 1]) if num_classes else None
    for temperature in (1.0, 0.7):
        reference = draw(model, shape, labels, method="reference", temperature=temperature)
        cached = draw(model, shape, labels, method="cached", temperature=temperature)
        assert torch.equal(reference, cached)


@pytest.mark.parametrize("shape,num_classes", CASES)
def test_cached_logits_equal_a_full_forward_pass_at_every_step(shape, num_classes, monkeypatch, tiny_prior):
    model = tiny_prior(num_classes)
    labels = torch.tensor([2, 0, 1, 1]) if num_classes else None
    steps = []
    original = stepwise.sample_from_logits
    monkeypatch.setattr(stepwise, "sample_from_logits", lambda l, u, t: steps.append(l.clone()) or original(l, u, t))
    samples = draw(model, shape, labels, method="cached")
    assert len(steps) == shape[0] * shape[1]
    for step, logits in enumerate(steps):
        r, c = divmod(step, shape[1])
        partial = samples.clone().reshape(len(samples), -1)
        partial[:, step:] = 0  # positions not yet sampled at this step
        full = model(partial.reshape(samples.shape), labels)[:, :, r, c]  # (n, K)
        torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_classes,num_layers,first_kernel,shape,temperature,given_rows", [
    (3, 3, 7, (7, 7), 1.0, 0), (0, 4, 7, (5, 9), 1.0, 0), (3, 2, 3, (10, 8), 0.7, 0), (0, 1, 5, (3, 4), 1.0, 0),
    (3, 3, 7, (7, 7), 1.0, 3), (3, 2, 3, (10, 8), 1.0, 3),
])
def test_cached_sampler_returns_the_reference_samples_at_other_depths_and_kernels(
    num_classes, num_layers, first_kernel, shape, temperature, given_rows
):
    """One layer alone, first kernels 3, 5 and 7 (one to three rows cached above), completions of given rows."""
    config = PriorConfig(16, num_classes, channels=8, num_layers=num_layers, first_kernel_size=first_kernel,
                         head_channels=16)
    model = GatedPixelCNN(config).eval()
    labels = torch.arange(6) % num_classes if num_classes else None
    given = torch.full((6, *shape), -1)
    given[:, :given_rows] = torch.randint(0, 16, (6, given_rows, shape[1]))
    reference = draw(model, shape, labels, method="reference", n=6, seed=5, temperature=temperature, given=given)
    assert torch.equal(draw(model, shape, labels, n=6, seed=5, temperature=temperature, given=given), reference)


def test_sampling_weights_are_laid_out_once_and_again_after_any_change(tiny_prior):
    # the cached sampler's weights are laid out once per model (GatedPixelCNN.sampling_weights, kept by
    # prepared_weights) and again after an optimizer's step, load_state_dict, an in-place init or a replaced
    # parameter: its samples stay the reference sampler's
    model = tiny_prior(3)
    labels = torch.tensor([0, 1, 2, 1])
    weights = prepared_weights(model)
    assert prepared_weights(model) is weights  # nothing changed: kept
    assert torch.equal(draw(model, (5, 5), labels), draw(model, (5, 5), labels, method="reference"))

    def optimizer_step():
        model.train()
        model.nll(torch.randint(0, 16, (4, 5, 5)), labels).backward()
        torch.optim.Adam(model.parameters(), lr=0.1).step()
        model.eval()

    def replace_a_parameter():
        model.head[3].bias = torch.nn.Parameter(torch.randn_like(model.head[3].bias))

    changes = [optimizer_step, lambda: model.load_state_dict(tiny_prior(3).state_dict()), replace_a_parameter,
               lambda: torch.nn.init.normal_(model.layers[1].v_to_h.weight)]
    for change in changes:
        before = draw(model, (5, 5), labels)
        change()
        assert prepared_weights(model) is not weights
        weights = prepared_weights(model)
        cached, reference = draw(model, (5, 5), labels), draw(model, (5, 5), labels, method="reference")
        assert torch.equal(cached, reference) and not torch.equal(cached, before)


def test_dropout_model_samples_in_eval_mode_and_keeps_its_mode():
    """A prior with dropout, left in training mode: both samplers sample without dropout (and agree); the model's
    mode is restored; training-mode forward passes do drop units."""
    torch.manual_seed(0)
    model = GatedPixelCNN(PriorConfig(16, 3, 8, 4, head_channels=16, dropout=0.5)).train()
    labels = torch.tensor([0, 1, 2, 1])
    reference = draw(model, (5, 4), labels, method="reference")
    assert model.training and torch.equal(reference, draw(model, (5, 4), labels, method="cached"))
    x = torch.randint(0, 16, (4, 5, 4))
    assert not torch.equal(model(x, labels), model(x, labels))  # dropout active in training
    model.eval()
    assert torch.equal(model(x, labels), model(x, labels)) and torch.equal(reference, draw(model, (5, 4), labels))
    with pytest.raises(ValueError, match="dropout"):
        PriorConfig(16, dropout=1.0)


def test_same_seed_same_samples_other_seed_other_samples(tiny_prior):
    model = tiny_prior(num_classes=2)
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.equal(draw(model, (6, 6), labels, seed=3), draw(model, (6, 6), labels, seed=3))
    assert not torch.equal(draw(model, (6, 6), labels, seed=3), draw(model, (6, 6), labels, seed=4))


@pytest.mark.parametrize("method", ["cached", "reference"])
def test_given_entries_are_kept_and_conditioned_on(method, tiny_prior):
    model = tiny_prior(num_classes=2)
    labels = torch.tensor([1, 0, 1, 0])
    given = torch.full((4, 5, 6), -1)
    given[:, :2] = torch.randint(0, 16, (4, 2, 6))  # the top two rows are given
    given[:, 3, 4] = 7
    samples = draw(model, (5, 6), labels, method=method, given=given)
    kept = given >= 0
    assert torch.equal(samples[kept], given[kept])
    assert torch.equal(samples, draw(model, (5, 6), labels, method="reference", given=given))


def test_samples_are_valid_indices_and_low_temperature_concentrates(tiny_prior):
    model = tiny_prior()
    samples = draw(model, (4, 4), n=64)
    assert samples.dtype == torch.int64 and samples.shape == (64, 4, 4)
    assert samples.min() >= 0 and samples.max() < 16
    cold = draw(model, (4, 4), n=64, temperature=0.05)
    assert cold[:, 0, 0].unique().numel() < samples[:, 0, 0].unique().numel()


def test_sampler_argument_errors(tiny_prior):
    model = tiny_prior(num_classes=2)
    with pytest.raises(ValueError, match="temperature"):
        draw(model, (3, 3), [0, 1, 0, 1], temperature=0.0)
    with pytest.raises(ValueError, match="given must have shape"):
        draw(model, (3, 3), [0, 1, 0, 1], given=torch.zeros(4, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="method"):
        draw(model, (3, 3), [0, 1, 0, 1], method="fast")
    with pytest.raises(ValueError, match="class-conditional"):
        draw(model, (3, 3))


def guided_prior(label_dropout: float = 0.2) -> GatedPixelCNN:
    """A tiny class-conditional prior with a null label (3 classes + 1), its null-label bias made distinct."""
    model = GatedPixelCNN(PriorConfig(16, 3, 8, 4, head_channels=16, label_dropout=label_dropout)).eval()
    assert model.null_label == 3 and model.layers[0].label_bias.num_embeddings == 4
    return model


@pytest.mark.parametrize("shape", [(5, 5), (3, 8), (4, 1)])
def test_guided_cached_sampler_returns_the_guided_reference_samples(shape):
    model = guided_prior()
    labels = torch.tensor([0, 1, 2, 1])
    for guidance in (0.5, 3.0):
        reference = draw(model, shape, labels, method="reference", guidance=guidance)
        assert torch.equal(reference, draw(model, shape, labels, method="cached", guidance=guidance))
    given = torch.full((4, *shape), -1)
    given[:, 0] = 5  # the first row kept
    completed = draw(model, shape, labels, guidance=1.0, given=given)
    assert torch.equal(completed, draw(model, shape, labels, method="reference", guidance=1.0, given=given))
    assert (completed[:, 0] == 5).all()


def test_guided_logits_are_conditional_plus_w_times_the_difference(monkeypatch):
    """At each step the guided logits are l_c + w (l_c - l_u), l_u a full pass given the null label."""
    model, w = guided_prior(), 2.0
    labels = torch.tensor([2, 0, 1, 1])
    steps = []
    original = stepwise.sample_from_logits
    monkeypatch.setattr(stepwise, "sample_from_logits", lambda l, u, t: steps.append(l.clone()) or original(l, u, t))
    samples = draw(model, (3, 4), labels, guidance=w)
    null = torch.full_like(labels, model.null_label)
    for step, logits in enumerate(steps):
        r, c = divmod(step, 4)
        partial = samples.clone().reshape(4, -1)
        partial[:, step:] = 0
        partial = partial.reshape(samples.shape)
        l_c, l_u = model(partial, labels)[:, :, r, c], model(partial, null)[:, :, r, c]  # (n, K) each
        torch.testing.assert_close(logits, l_c + w * (l_c - l_u), rtol=1e-5, atol=1e-5)


def test_zero_guidance_samples_the_conditional_model_and_guidance_needs_a_null_label(tiny_prior):
    model = guided_prior()
    labels = torch.tensor([0, 1, 2, 1])
    assert torch.equal(draw(model, (4, 4), labels), draw(model, (4, 4), labels, guidance=0.0))
    assert not torch.equal(draw(model, (4, 4), labels), draw(model, (4, 4), labels, guidance=2.0))
    with pytest.raises(ValueError, match="label dropout"):
        draw(tiny_prior(3), (4, 4), labels, guidance=1.0)  # fitted without a null label
    with pytest.raises(ValueError, match="guidance must be a finite number >= 0"):
        draw(model, (4, 4), labels, guidance=float("nan"))
    with pytest.raises(ValueError, match="labels"):
        model.sample(4, (4, 4), torch.tensor([0, 1, 2, 3]))  # the null label is not a class one may ask for


def test_label_dropout_replaces_labels_by_the_null_class_in_training_only():
    model = guided_prior(label_dropout=0.5)
    x = torch.randint(0, 16, (64, 3, 3))
    labels = torch.randint(0, 3, (64,))
    null = torch.full_like(labels, 3)
    model.eval()
    assert torch.equal(model.nll(x, labels), torch.nn.functional.cross_entropy(model(x, labels), x))
    model.train()
    torch.manual_seed(1)
    loss = model.nll(x, labels)
    torch.manual_seed(1)
    dropped = torch.rand(labels.shape) < 0.5
    expected = torch.nn.functional.cross_entropy(model(x, torch.where(dropped, null, labels)), x)
    torch.testing.assert_close(loss, expected)
    assert 0 < int(dropped.sum()) < 64
