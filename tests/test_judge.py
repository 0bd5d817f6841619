"""The checks' evaluation machinery (vqvae_prior.evaluation): figures against closed forms, seeding, the classifier
cache."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from torch import nn

from vqvae_prior.checkpoint import weights_digest
from vqvae_prior.evaluation import audio_judges, classifier, copying, image_judges, metrics


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = torch.randn(300, 6)
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form():
    """Gaussians with diagonal covariances: |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2, from the sample moments."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5]) + 1
    expected = 3 * 1.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    # exactly: for simultaneously diagonal sample covariances the formula is exact
    a = torch.tensor([[1.0, 0], [-1, 0], [0, 2], [0, -2]])  # mean 0, cov diag(2/3, 8/3)
    b = a * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, 0.0])  # mean (1, 0), cov diag(8/3, 2/3)
    expected = 1 + (math.sqrt(2 / 3) - math.sqrt(8 / 3)) ** 2 * 2
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, abs=1e-9)
    assert metrics.frechet_distance(b, a) == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\(n, d\), \(m, d\)"):
        metrics.frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match=">= 2 items"):
        metrics.frechet_distance(torch.randn(1, 3), torch.randn(5, 3))


def test_floor_lies_below_a_shifted_set():
    """The real-vs-real floor is small; a judged set shifted away from the real data reads well above it."""
    real = torch.randn(1000, 8, generator=torch.Generator().manual_seed(0))
    halves = metrics.RealHalves.draw(len(real), n_judged=2000, seed=0)
    assert halves.m == 500 and not set(halves.a.tolist()) & set(halves.b.tolist())
    same = metrics.frechet_beside_floor(torch.randn(2000, 8), real, halves, seed=0)
    shifted = metrics.frechet_beside_floor(torch.randn(2000, 8) + 0.5, real, halves, seed=0)
    assert same["floor"] == shifted["floor"] > 0 and same["m"] == 500
    assert same["ratio"] < 2 and shifted["ratio"] > 5 and shifted["distance"] > shifted["floor"]


def test_real_halves_size_and_seed():
    halves = metrics.RealHalves.draw(10, n_judged=3, seed=1)
    assert halves.m == 3 and torch.equal(halves.a, metrics.RealHalves.draw(10, 3, seed=1).a)
    assert not torch.equal(halves.a, metrics.RealHalves.draw(10, 3, seed=2).a)
    with pytest.raises(ValueError, match="sets of 1"):
        metrics.RealHalves.draw(3, 10, seed=0)


def test_inception_score_bounds():
    C = 4
    assert metrics.inception_score(torch.full((10, C), 1 / C)) == pytest.approx(1.0)
    certain = torch.eye(C).repeat(5, 1)  # every class equally often, each input certain
    assert metrics.inception_score(certain) == pytest.approx(C)
    one_class = torch.eye(C)[[2] * 8]  # certain but always the same class
    assert metrics.inception_score(one_class) == pytest.approx(1.0)
    probs = torch.rand(50, C).softmax(1)
    assert 1 <= metrics.inception_score(probs) <= C


def test_accuracy_and_confusion():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    report = metrics.accuracy(pred, target, ["a", "b", "c", "d"])
    assert report["accuracy"] == pytest.approx(4 / 6) and report["n"] == 6
    assert report["per_class"] == {"a": 0.5, "b": 1.0, "c": 0.5}  # d is never a target
    assert report["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]


def test_nearest_code_map_distance():
    """0 for a copy of a reference, 1 / (h w) for one code changed, the closest reference counts."""
    references = torch.randint(0, 16, (50, 3, 4), generator=torch.Generator().manual_seed(0))
    queries = references[[7, 21]].clone()
    queries[1, 2, 3] = (queries[1, 2, 3] + 1) % 16
    for chunk in (1, None):
        np.testing.assert_allclose(copying.nearest(queries, references, chunk=chunk).numpy(), [0.0, 1 / 12])
    # over 255 positions (16 x 17) the counters are wider than a byte; against a brute-force count, each map's
    # nearest among the others
    wide = torch.randint(0, 2, (20, 16, 17), generator=torch.Generator().manual_seed(1))
    differ = (wide[:, None] != wide[None]).flatten(2).float().mean(2)  # (20, 20) every pair's fraction
    others = [wide[torch.arange(20) != i] for i in range(20)]
    expected = [float(differ[i][torch.arange(20) != i].min()) for i in range(20)]
    np.testing.assert_allclose([float(copying.nearest(wide[[i]], others[i])) for i in range(20)], expected)
    assert copying.nearest(wide[[3]], wide).tolist() == [0.0]
    report = copying.copying(queries, references[:3], references)
    assert report["generated_exact_copies"] == 1 and report["held_out_mean_distance"] == 0.0


def test_mean_and_std_over_seeds():
    reports = [{"acc": 0.5, "per_class": {"a": 1.0}, "confusion": [[1, 3]], "name": "x", "n": 7},
               {"acc": 0.7, "per_class": {"a": 0.0}, "confusion": [[3, 1]], "name": "x", "n": 7}]
    mean, std = metrics.mean_and_std(reports)
    assert mean == {"acc": pytest.approx(0.6), "per_class": {"a": 0.5}, "confusion": [[2.0, 2.0]], "name": "x", "n": 7}
    assert isinstance(mean["n"], int) and std["n"] == 0.0
    assert std["acc"] == pytest.approx(0.1) and std["confusion"] == [[1.0, 1.0]] and std["name"] is None


def test_lowest_mean_picks_the_lower_family_set_by_set():
    """The headline of each set is the lowest family mean, with that family's deviation and name; a tie goes to the
    first family."""

    def family(real: float, generated: float, std: float) -> dict:
        return {"mean": {"real": {"accuracy": real}, "generated": {"accuracy": generated}},
                "std": {"real": {"accuracy": std}, "generated": {"accuracy": std}}}

    lowest = metrics.lowest_mean({"a": family(0.99, 0.90, 0.01), "b": family(0.98, 0.95, 0.02)})
    assert lowest == {
        "real": {"accuracy": 0.98, "std": 0.02, "family": "b", "by_family": {"a": 0.99, "b": 0.98}},
        "generated": {"accuracy": 0.90, "std": 0.01, "family": "a", "by_family": {"a": 0.90, "b": 0.95}},
    }
    tie = metrics.lowest_mean({"b": family(0.5, 0.5, 0.1), "a": family(0.5, 0.5, 0.2)})
    assert {r["family"] for r in tie.values()} == {"b"}


@pytest.mark.parametrize("name", list(audio_judges.FAMILIES))
def test_audio_judge_key_holds_the_family_and_every_setting(name):
    """A judge's cache key changes with the family's name, front end and every field of its hearing and its
    augmentation, so no other family's judge is ever read from the cache."""
    family = audio_judges.FAMILIES[name]
    config, settings = classifier.ClassifierConfig(family.front.channels, 10), classifier.TrainSettings(20)

    def key(f: audio_judges.Family) -> dict:
        return audio_judges.judge_key(f, "digest", list("0123456789"), config, settings)

    assert json.loads(json.dumps(key(family))) == key(family) and key(family)["family"] == name
    others = [replace(family, name="other"), replace(family, front=nn.Identity)]
    for part in ("hearing", "augment"):
        settings_of = getattr(family, part)
        others += [replace(family, **{part: replace(settings_of, **{f.name: getattr(settings_of, f.name) + 1})})
                   for f in fields(settings_of)]
    others += [f for f in audio_judges.FAMILIES.values() if f != family]
    assert len({json.dumps(key(f), sort_keys=True) for f in [family, *others]}) == len(others) + 1


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.features(x))


def _separable(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + y.view(-1, 1, 1, 1) * 0.5
    return x, y


def test_train_classifier_is_seeded_by_its_settings_alone():
    x, y = _separable()
    settings = classifier.TrainSettings(epochs=30, batch_size=16, lr=3e-2, seed=3)
    first = classifier.train_classifier(_Linear, x, y, settings, torch.device("cpu"))
    torch.rand(100)  # what building something else would draw
    second = classifier.train_classifier(_Linear, x, y, settings, torch.device("cpu"))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    prediction = classifier.predict(first, x, torch.device("cpu"), batch_size=5)
    assert prediction.probs.shape == (64, 2) and prediction.features.shape == (64, 6)
    torch.testing.assert_close(prediction.probs.sum(1), torch.ones(64))
    assert (prediction.labels == y).float().mean() == 1.0  # two well-separated classes


def test_classifier_cache_hit_and_corrupt_entry(tmp_path):
    x, y = _separable()
    settings = classifier.TrainSettings(epochs=2, batch_size=16)
    trained = []

    def train():
        trained.append(1)
        return classifier.train_classifier(_Linear, x, y, settings, torch.device("cpu"))

    key = {"data": weights_digest([x, y]), "settings": settings.epochs}
    first, hit = classifier.cached_classifier(tmp_path, key, _Linear, train, torch.device("cpu"))
    assert not hit and len(trained) == 1
    second, hit = classifier.cached_classifier(tmp_path, key, _Linear, train, torch.device("cpu"))
    assert hit and len(trained) == 1 and not second.training
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    _, hit = classifier.cached_classifier(tmp_path, {**key, "settings": 3}, _Linear, train, torch.device("cpu"))
    assert not hit and len(trained) == 2  # other settings: another entry
    (entry,) = [p for p in tmp_path.glob("classifier-*.pt") if torch.load(p, weights_only=True)["key"] == key]
    entry.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable.*training the classifier again"):
        _, hit = classifier.cached_classifier(tmp_path, key, _Linear, train, torch.device("cpu"))
    assert not hit and len(trained) == 3
    _, hit = classifier.cached_classifier(tmp_path, key, _Linear, train, torch.device("cpu"))
    assert hit  # rebuilt


def test_weights_digest_of_tensors_sees_values_and_shapes():
    x = torch.zeros(4, 3, dtype=torch.uint8)
    assert weights_digest([x]) == weights_digest([x.clone()])
    assert weights_digest([x]) != weights_digest([x.view(3, 4)])
    y = x.clone()
    y[0, 0] = 1
    assert weights_digest([x]) != weights_digest([y])


def test_weights_digest_keeps_the_values_that_caches_and_checkpoints_hold():
    """A data set's digest (in the classifier cache keys) and a state dict's (in prior checkpoints), pinned."""
    assert weights_digest([torch.arange(6, dtype=torch.uint8).view(2, 3), torch.tensor([0, 1])]) == "13e2287523ef74f4"
    assert weights_digest({"b": torch.ones(2), "a": torch.arange(3.0)}) == "1357edb2abe1a7aa"


@pytest.mark.slow
@pytest.mark.realdata
def test_image_judge_on_mnist_sample():
    """The image check's default classifier on the embedded 4,500 digits: at least 98.5% of the 500 held out
    (measured: 98.6%); a couple of CPU-minutes."""
    from data.images import load_mnist_sample

    splits = load_mnist_sample()
    x, y = splits.train.images, splits.train.labels
    config = classifier.ClassifierConfig(1, 10)
    settings = classifier.TrainSettings(image_judges.default_epochs(len(x)))
    aug = image_judges.AugmentSettings()
    model = image_judges.train_classifier(x, y, config, settings, aug, torch.device("cpu"))
    prediction = classifier.predict(model, splits.test.images, torch.device("cpu"))
    assert float((prediction.labels == splits.test.labels).float().mean()) >= 0.985


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (1, 20, 12), (1, 63, 40)])
def test_conv_classifier_shapes(shape):
    """RGB or grayscale, square or not (images, log-mel spectrograms): logits and features of fixed sizes."""
    config = classifier.ClassifierConfig(shape[0], num_classes=7, channels=4, features=16)
    model = classifier.ConvClassifier(config).eval()
    x = torch.rand(5, *shape)
    assert model(x).shape == (5, 7) and model.features(x).shape == (5, 16)
    pixels = (x * 255).to(torch.uint8)
    prediction = classifier.predict(model, pixels, torch.device("cpu"))  # uint8 read as [0, 1]
    torch.testing.assert_close(prediction.probs, model(pixels.float() / 255).softmax(1))
