"""Judging generated samples with a classifier trained on real data: the pieces that ``image_check`` and
``audio_check`` share.

1. **Classifiers** (:class:`ConvClassifier`, :func:`train_classifier`, :func:`predict`, :func:`cached_classifier`):
   a small CNN is trained on the real train split with a seeded augmentation, then gives, for any set of inputs, its
   class probabilities and its penultimate-layer features. :func:`predict` only needs a module with
   ``features(x) -> (B, d)`` and ``head(features) -> (B, num_classes)``. A trained classifier can be cached on disk
   under a digest of what defines it; a cache entry that cannot be read is rebuilt with a warning.
2. **Figures** of a set of predictions: :func:`accuracy` (overall, per class, confusion matrix), the
   inception-style score :func:`inception_score` (Salimans et al. 2016, with this classifier in place of
   Inception), and the Frechet distance :func:`frechet_distance` between two feature sets (Heusel et al. 2017, with
   this classifier's features in place of Inception's pool3). A Frechet distance estimated from n samples is
   biased upward, the more so the smaller n, so it is only read against a **real-vs-real floor** at the same n
   (:class:`RealHalves`, :func:`frechet_beside_floor`): the real held-out features are split, by a seeded random
   permutation, into two disjoint halves A and B of m = min(n_judged, N_held_out // 2) items each; the floor is
   FD(B, A), a judged set's figure is FD(m of its items drawn at random, A), and the report gives both and their
   ratio (1 = as close to A as other real data is).
3. **Copying** (:func:`nearest`, :func:`copying`, :func:`code_maps`): whether generated code maps replay the
   training set: the distance from each to its nearest train code map, beside the same distance from real held-out
   code maps; the VQ-VAE's code maps of its data set are cached beside the classifiers.

:func:`mean_and_std` averages reports of classifiers trained with several seeds, figure by figure.

References: Salimans et al. 2016, "Improved Techniques for Training GANs" (inception score); Heusel et al. 2017,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (Frechet distance).
Deviations: the classifier is a small one trained here on the data set being judged, not Inception trained on
ImageNet, so the figures compare models of one data set, not across data sets or with published FID/IS values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines import batching, cli
from vqvae_prior.checkpoint import atomic_save, atomic_write, load_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.pipeline import VQPriorPipeline

CACHE_DIR = Path("~/.cache/vqvae_prior/judge").expanduser()

# ---------------------------------------------------------------------------------------------- classifiers


@dataclass(frozen=True)
class TrainSettings:
    """How a judging classifier is trained: AdamW with a one-cycle learning rate, cross-entropy."""

    epochs: int
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"classifier epochs, batch size and learning rate must be positive, got {self}")


@dataclass(frozen=True)
class ClassifierConfig:
    """A :class:`ConvClassifier`: three conv blocks, the first two halving the resolution, then a linear layer."""

    in_channels: int
    num_classes: int
    channels: int = 16  # of the first block; the second has twice as many, the third four times
    features: int = 128  # the penultimate layer: the Frechet distance's features


class ConvClassifier(nn.Module):
    """Images (B, C, H, W) (or log-mel spectrograms (B, 1, T, F)) -> class logits (B, num_classes); any H, W >= 4.

    ``features``: conv 5x5 -> pool -> conv 3x3 -> pool -> conv 3x3 -> a 4 x 4 average grid -> linear -> ReLU
    (B, ``config.features``), each conv with batch norm and ReLU; ``head``: dropout -> linear.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels

        def conv(c_in: int, c_out: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            *conv(config.in_channels, c, 5), nn.MaxPool2d(2),  # (B, c, H/2, W/2)
            *conv(c, 2 * c, 3), nn.MaxPool2d(2),  # (B, 2c, H/4, W/4)
            *conv(2 * c, 4 * c, 3), nn.AdaptiveAvgPool2d(4), nn.Flatten(),  # (B, 4c * 16)
            nn.Linear(4 * c * 16, config.features), nn.ReLU(),  # (B, features)
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(config.features, config.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, num_classes)


Augment = Callable[[Tensor, torch.Generator], Tensor]  # a training batch (B, ...) -> the model's input


def train_classifier(
    build: Callable[[], nn.Module],
    x: Tensor,
    y: Tensor,
    settings: TrainSettings,
    device: torch.device,
    augment: Augment | None = None,
) -> nn.Module:
    """A classifier built by ``build()`` and trained on inputs x (N, ...) with labels y (N,), in eval mode.

    Seeded by ``settings.seed`` alone (the weights, the batch order and the augmentation draws), so the same data
    and settings give the same classifier whatever was drawn before. ``augment(batch, generator)`` turns each
    training batch into the model's input, drawing its random numbers from ``generator`` (a CPU generator);
    uint8 inputs reach it as floats in [0, 1].
    """
    torch.manual_seed(settings.seed)
    model = build().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * math.ceil(len(x) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.epochs):
        for xb, yb in batching.batches(x, y, settings.batch_size, device, generator):
            loss = F.cross_entropy(model(augment(xb, generator) if augment else xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@dataclass
class Prediction:
    """What a classifier makes of N inputs.

    Attributes:
        probs: (N, num_classes) float32 class probabilities.
        features: (N, d) float32 penultimate-layer activations, the features of the Frechet distance.
    """

    probs: Tensor
    features: Tensor

    @property
    def labels(self) -> Tensor:
        """(N,) the most probable class of each input."""
        return self.probs.argmax(1)


@torch.no_grad()
def predict(
    model: nn.Module, x: Tensor, device: torch.device, batch_size: int = 256,
    prepare: Callable[[Tensor], Tensor] | None = None,
) -> Prediction:
    """Class probabilities and features of inputs x (N, ...) (uint8 ones are read as [0, 1]); ``prepare`` turns
    each batch into the model's input. ``model`` must have ``features`` and ``head``."""
    model.eval()
    probs, features = [], []
    for xb in x.split(batch_size):
        xb = xb.to(device).float() / 255 if xb.dtype == torch.uint8 else xb.to(device)
        f = model.features(prepare(xb) if prepare else xb)  # (B, d)
        probs.append(model.head(f).float().softmax(1).cpu())  # (B, num_classes)
        features.append(f.float().cpu())
    return Prediction(torch.cat(probs), torch.cat(features))


def cached_classifier(
    cache_dir: str | Path | None,
    key: dict[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[], nn.Module],
    device: torch.device,
) -> tuple[nn.Module, bool]:
    """A trained classifier from ``cache_dir``, or ``train()``'s, then saved there; and whether it was a cache hit.

    The entry's file name is a digest of ``key`` (JSON-able: whatever defines the classifier, i.e. the data it is
    trained on and its settings), so other data or settings never reuse it. An entry that cannot be read, or whose
    weights do not fit ``build()``, is rebuilt with a warning. ``cache_dir`` None: no cache.
    """
    if cache_dir is None:
        return train(), False
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir).expanduser() / f"classifier-{digest}.pt"
    if path.exists():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("key") != key:
                raise ValueError("its key differs")
            model = build()
            model.load_state_dict(entry["model"])
            return model.to(device).eval(), True
        except Exception as e:  # a truncated or foreign file: torch and load_state_dict raise several types
            reason = " ".join(str(e).split())[:160]  # one line: torch's messages run to several paragraphs
            warnings.warn(f"judge: classifier cache entry {path} is unreadable ({type(e).__name__}: {reason}); "
                          "training the classifier again", stacklevel=2)
    model = train()
    atomic_save({"key": key, "model": {k: v.cpu() for k, v in model.state_dict().items()}}, path)
    return model, False


# ---------------------------------------------------------------------------------------------- figures


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


# ---------------------------------------------------------------------------------------------- copying


@torch.no_grad()
def nearest(queries: Tensor, references: Tensor, chunk: int | None = None) -> Tensor:
    """For each code map in queries (n, h, w), the fraction of positions at which it differs from the most similar
    code map in references (N, h, w): (n,) float in [0, 1]; 0 is an exact copy. ``chunk`` queries at a time
    (None: as many as keep the comparison under about 32 million entries)."""
    flat = references.flatten(1)  # (N, h*w)
    chunk = chunk or max(1, 2**25 // flat.numel())
    return torch.cat([
        (q.flatten(1)[:, None] != flat[None]).sum(2).amin(1) / flat.shape[1]  # (chunk, N) -> (chunk,)
        for q in queries.split(chunk)
    ])


def copying(generated: Tensor, held_out: Tensor, train: Tensor) -> dict[str, Any]:
    """Nearest-train-map distances (:func:`nearest`) of generated and of real held-out code maps (n, h, w)."""
    d_generated, d_held_out = nearest(generated, train), nearest(held_out, train)
    return {
        "generated_mean_distance": float(d_generated.mean()),
        "held_out_mean_distance": float(d_held_out.mean()),
        "generated_exact_copies": int((d_generated == 0).sum()),
        "generated_n": len(generated),
    }


def code_maps(
    vqvae: nn.Module, spec: dict[str, Any], data_root: str | None, device: torch.device, cache_dir: str | None
) -> tuple[Tensor, Tensor]:
    """The code maps (N, h, w) of the train and of the held-out split of the VQ-VAE's data set, as the inputs are,
    by :func:`pipelines.fit_prior.encode_splits`, cached in ``cache_dir`` (None: not kept)."""
    from pipelines.fit_prior import encode_splits

    with tempfile.TemporaryDirectory() as scratch:
        codes = encode_splits(vqvae, Path(cache_dir or scratch).expanduser(), spec, data_root, device)
    return codes["train"][0][0], codes["test"][0]  # (N, h, w) each: the first offset is (0, 0)


def print_copying(report: dict[str, Any]) -> None:
    """One line of the :func:`copying` report."""
    print(f"nearest train code map, fraction of codes that differ: generated {report['generated_mean_distance']:.3f}, "
          f"real held-out {report['held_out_mean_distance']:.3f}; exact copies {report['generated_exact_copies']} of "
          f"{report['generated_n']}")


# ---------------------------------------------------------------------------------------------- the entry points


def add_check_args(
    parser: argparse.ArgumentParser, kind: str, epochs: int | None, batch_size: int, epochs_help: str
) -> argparse._ArgumentGroup:
    """The options that ``image_check`` and ``audio_check`` share; returns the classifier's group for more."""
    parser.add_argument("--vqvae", required=True, help=f"checkpoint of an {kind} VQ-VAE (pipelines.fit_vqvae)")
    parser.add_argument("--prior", required=True, help="its prior (pipelines.fit_prior)")
    parser.add_argument("--data-root", help="read the VQ-VAE's data set from this folder instead")
    parser.add_argument("--out", default=f"{kind}_check.json", help="JSON report (image_check: and the PNG of the "
                        "worst samples beside it)")
    parser.add_argument("--temperature", type=float, default=1.0, help="of the prior")
    parser.add_argument("--guidance", type=float, default=0.0,
                        help="classifier-free guidance weight of the samples (> 0 needs a prior fitted with "
                             "--label-dropout)")
    parser.add_argument("--seed", type=int, default=0, help="of the samples and of the real halves")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    group = parser.add_argument_group("classifier")
    group.add_argument("--classifier-epochs", type=int, default=epochs, help=epochs_help)
    group.add_argument("--classifier-channels", type=int, default=ClassifierConfig.channels, help="width")
    group.add_argument("--classifier-batch-size", type=int, default=batch_size)
    group.add_argument("--classifier-seed", type=int, default=0)
    group.add_argument("--cache-dir", default=str(CACHE_DIR), help="trained classifiers; 'none': no cache")
    return group


def check_common_args(args: argparse.Namespace) -> Path:
    """Refuse, before any work, a shared option out of range (:func:`add_check_args`) or an ``--out`` that cannot
    be written (a folder, or in a folder that cannot be made); returns ``--out`` as a path."""
    cli.positive(args, "temperature")
    cli.positive(args, "guidance", zero=True)
    cli.at_least(args, 1, "classifier_epochs", "classifier_channels", "classifier_batch_size")
    cli.pick_device(args.device)
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; expected the report's file name, e.g. {out / 'check.json'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot make its folder ({e.strerror})") from e
    return out


def load_pipeline(args: argparse.Namespace, modality: str) -> VQPriorPipeline:
    """``--vqvae`` and ``--prior`` as a checked :class:`vqvae_prior.VQPriorPipeline` on ``--device``; a VQ-VAE of
    another modality than ``modality`` ("image" or "audio") is refused, naming the check that judges it."""
    spec = load_checkpoint(args.vqvae, "vqvae").get("data", {})  # the modality first: the likelier mistake
    if spec.get("modality") != modality:
        other = "audio_check" if spec.get("modality") == "audio" else "image_check"
        raise UsageError(f"--vqvae {args.vqvae} was fitted on {spec.get('modality')} ({spec.get('name')!r}), "
                         f"not on {modality}; judge it with pipelines.{other}")
    pipe = VQPriorPipeline.from_checkpoints(args.vqvae, args.prior, cli.pick_device(args.device))
    if args.guidance > 0 and pipe.prior.null_label is None:
        raise UsageError(f"--guidance {args.guidance}: {args.prior} was fitted without --label-dropout, so it has no "
                         "unconditional model to guide by; leave out --guidance")
    return pipe


def write_report(report: dict[str, Any], path: Path) -> None:
    """The report as indented JSON, written atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))


class Stopwatch:
    """Seconds taken by each named part of a check: ``with watch("part"): ...``; ``watch.seconds`` collects them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name, self._t0 = "", 0.0

    def __call__(self, name: str) -> Stopwatch:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + time.perf_counter() - self._t0

