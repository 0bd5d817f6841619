"""The figures of a judged set, from what a classifier (:mod:`vqvae_prior.evaluation.classifier`) makes of it.

:func:`accuracy` (overall, per class, confusion matrix); the inception-style score :func:`inception_score`
(Salimans et al. 2016, with the judging classifier in place of Inception); and the Frechet distance
:func:`frechet_distance` between two feature sets (Heusel et al. 2017, with the judging classifier's features in
place of Inception's pool3). A Frechet distance estimated from n samples is biased upward, the more so the smaller
n, so it is only read against a **real-vs-real floor** at the same n (:class:`RealHalves`,
:func:`frechet_beside_floor`): the real held-out features are split, by a seeded random permutation, into two
disjoint halves A and B of m = min(n_judged, N_held_out // 2) items each; the floor is FD(B, A), a judged set's
figure is FD(m of its items drawn at random, A), and the report gives both and their ratio (1 = as close to A as
other real data is). :func:`judge_set` gives all of them for one set; :func:`mean_and_std` averages the reports of
classifiers trained with several seeds, figure by figure; :func:`lowest_mean` picks, set by set, the lowest of
several families' mean accuracies (judges that hear differently); :func:`worst_samples` finds the samples least like
the class asked for.

References: Salimans et al. 2016, "Improved Techniques for Training GANs" (inception score); Heusel et al. 2017,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (Frechet distance).
Deviation: the classifier is not Inception (:mod:`vqvae_prior.evaluation.classifier`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation.classifier import Prediction

__all__ = [
    "RealHalves", "accuracy", "frechet_beside_floor", "frechet_distance", "inception_score", "judge_set",
    "lowest_mean", "mean_and_std", "pooled", "worst_samples",
]


def accuracy(pred: Tensor, target: Tensor, label_names: list[str]) -> dict[str, Any]:
    """How often predictions (N,) equal targets (N,): overall, per class (of the classes present among the
    targets), and the confusion matrix (rows: target class, columns: predicted class)."""
    C = len(label_names)
    confusion = torch.bincount(target * C + pred, minlength=C * C).view(C, C)  # (target, predicted)
    per_class = {name: float((pred[target == c] == c).float().mean())
                 for c, name in enumerate(label_names) if (target == c).any()}  # fmt: skip
    return {"accuracy": float((pred == target).float().mean()), "per_class": per_class,
            "confusion": confusion.tolist(), "n": len(target)}  # fmt: skip


def inception_score(probs: Tensor) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` of class probabilities (N, C), p(y) their mean over the N inputs.

    In [1, C]: 1 when every input gets the same distribution, C when each is classified with certainty and the
    classes are equally frequent.
    """
    p = probs.double()  # (N, C)
    marginal = p.mean(0, keepdim=True)  # (1, C)
    kl = (torch.xlogy(p, p) - torch.xlogy(p, marginal)).sum(1)  # (N,)
    return float(kl.mean().exp())


def _sqrtm_psd(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (d, d) by eigendecomposition."""
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets a (n, d) and b (m, d), n, m >= 2.

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with unbiased covariances, in float64. The trace of
    ``(S_a S_b)^(1/2)`` is the sum of the square roots of the eigenvalues of the symmetric ``S_a^(1/2) S_b
    S_a^(1/2)``, which has the same eigenvalues as ``S_a S_b``; both square roots by ``torch.linalg.eigh``
    (negative round-off eigenvalues clamped to 0). No scipy.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two sets (n, d), (m, d) of >= 2 items, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)  # (d,)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (d, d)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(float(fd), 0.0)


@dataclass(frozen=True)
class RealHalves:
    """Two disjoint random halves A and B, of m items each, of the N real held-out items; see the module docstring.

    Attributes:
        a: (m,) indices of A, the reference every judged set is compared with.
        b: (m,) indices of B, real data judged like any other set: FD(B, A) is the floor.
    """

    a: Tensor
    b: Tensor

    @classmethod
    def draw(cls, n_real: int, n_judged: int, seed: int) -> RealHalves:
        """m = min(n_judged, n_real // 2), by a permutation seeded with ``seed``."""
        m = min(n_judged, n_real // 2)
        if m < 2:
            raise UsageError(f"a Frechet distance needs >= 2 items a set: {n_real} real held-out items and "
                             f"{n_judged} judged ones give sets of {m}")
        order = torch.randperm(n_real, generator=torch.Generator().manual_seed(seed))
        return cls(order[:m], order[m : 2 * m])

    @property
    def m(self) -> int:
        return len(self.a)


def frechet_beside_floor(features: Tensor, real: Tensor, halves: RealHalves, seed: int) -> dict[str, float]:
    """FD of m judged items to real half A, beside the floor FD(B, A), and their ratio.

    Args:
        features: (n, d) of the judged set, n >= m; when n > m, m of them drawn at random (seeded by ``seed``),
            since a set generated class by class is ordered by class.
        real: (N, d) of the real held-out items that ``halves`` indexes.
    """
    m = halves.m
    if len(features) < m:
        raise ValueError(f"frechet_beside_floor: {len(features)} judged items, fewer than the halves' {m}")
    pick = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:m]
    distance = frechet_distance(features[pick], real[halves.a])
    floor = frechet_distance(real[halves.b], real[halves.a])
    return {"distance": distance, "floor": floor, "ratio": distance / floor if floor > 0 else math.inf, "m": m}


def judge_set(
    prediction: Prediction, real: Prediction, halves: RealHalves, label_names: list[str], seed: int,
    asked: Tensor | None = None, frechet_items: Tensor | None = None,
) -> dict[str, Any]:
    """The figures of one judged set: accuracy against ``asked`` (N,) when given, the inception-style score, and
    the Frechet distance to real half A beside the floor (:func:`frechet_beside_floor`), of the items indexed by
    ``frechet_items`` when given (e.g. the reconstructions of half B's images, none paired with one of A)."""
    figures = accuracy(prediction.labels, asked, label_names) if asked is not None else {"n": len(prediction.probs)}
    figures["inception_score"] = inception_score(prediction.probs)
    features = prediction.features if frechet_items is None else prediction.features[frechet_items]
    figures["frechet"] = frechet_beside_floor(features, real.features, halves, seed)
    return figures


def mean_and_std(reports: list[Any]) -> tuple[Any, Any]:
    """Figure by figure, the mean and the standard deviation (population, over the list) of reports of one
    structure (nested dicts and lists of numbers, e.g. one report a classifier seed); other values come from the
    first report, and their standard deviation is None."""
    first = reports[0]
    if isinstance(first, dict):
        pairs = {k: mean_and_std([r[k] for r in reports]) for k in first}
        return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    if isinstance(first, list):
        pairs = [mean_and_std([r[i] for r in reports]) for i in range(len(first))]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if isinstance(first, int) and not isinstance(first, bool) and all(r == first for r in reports):
        return first, 0.0  # a count that every report shares (n, m) stays an int
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        values = torch.tensor([float(r) for r in reports], dtype=torch.float64)
        return float(values.mean()), float(values.std(unbiased=False))
    return first, None


def pooled(sets: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one judged set over several seeds (each its own samples and its own real halves, the same
    number of items and m): the accuracy of all the items together and of each class, the weakest class, and the
    mean Frechet distance over the mean floor. The floor moves with the halves that a seed draws (MNIST, m = 1,000:
    3.4 to 6.9 over ten seeds), and a mean of per-seed ratios is pulled up by the small floors, so the ratio of the
    means is the figure; the ratios' mean, least and most are given beside it.

    Args:
        sets: each seed's figures of the set (:func:`judge_set`: ``accuracy``, ``per_class``, ``n`` and ``frechet``
            where the set had them).
    """
    if not sets:
        raise ValueError("pooled: no sets")
    out: dict[str, Any] = {"seeds": len(sets), "n": sum(s.get("n", 0) for s in sets)}
    if all("accuracy" in s for s in sets):
        n = [s["n"] for s in sets]
        out["accuracy"] = sum(s["accuracy"] * k for s, k in zip(sets, n)) / sum(n)
        out["per_seed_accuracy"] = [s["accuracy"] for s in sets]
        classes = sets[0]["per_class"]
        out["per_class"] = {c: sum(s["per_class"][c] for s in sets) / len(sets) for c in classes}  # equal counts
        weakest = min(out["per_class"], key=out["per_class"].get)
        out["weakest_class"] = {"class": weakest, "accuracy": out["per_class"][weakest]}
    if all("frechet" in s for s in sets):
        fds = [s["frechet"] for s in sets]
        distance = sum(f["distance"] for f in fds) / len(fds)
        floor = sum(f["floor"] for f in fds) / len(fds)
        ratios = [f["ratio"] for f in fds]
        out["frechet"] = {"distance": distance, "floor": floor, "ratio": distance / floor if floor > 0 else math.inf,
                          "mean_ratio": sum(ratios) / len(ratios), "least_ratio": min(ratios),
                          "most_ratio": max(ratios), "m": fds[0]["m"]}
    return out


def lowest_mean(families: dict[str, dict[str, Any]], figure: str = "accuracy") -> dict[str, dict[str, Any]]:
    """Set by set, the lowest of several families' mean ``figure``: what every family of judges grants.

    Args:
        families: family name -> its judges' ``{"mean": {set: figures}, "std": {set: figures}}``
            (:func:`mean_and_std`); every family judges the same sets.

    Returns:
        set -> ``{figure: the lowest mean, "std": that family's std, "family": its name, "by_family": {family:
        mean}}``; on a tie the first family in ``families``.
    """
    first = next(iter(families.values()))
    lowest = {}
    for name in first["mean"]:
        by_family = {family: r["mean"][name][figure] for family, r in families.items()}
        family = min(by_family, key=by_family.get)
        lowest[name] = {figure: by_family[family], "std": families[family]["std"][name][figure], "family": family,
                        "by_family": by_family}
    return lowest


def worst_samples(
    probs: Tensor, asked: Tensor | None, label_names: list[str], count: int
) -> tuple[Tensor, list[dict[str, Any]]]:
    """Indices of the ``count`` samples with the lowest probability of the class asked for (unconditional: of the
    most probable class), lowest first, and a description of each."""
    p = probs.gather(1, asked[:, None]).squeeze(1) if asked is not None else probs.max(1).values  # (n,)
    order = p.argsort()[:count]
    rows = [{"index": int(i), "asked": None if asked is None else label_names[int(asked[i])],
             "recognized": label_names[int(probs[i].argmax())], "probability": float(p[i])} for i in order]  # fmt: skip
    return order, rows
