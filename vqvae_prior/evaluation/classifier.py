"""The judging classifier: a small CNN trained on the real train split of a data set, which then gives, for any set
of inputs, its class probabilities and its penultimate-layer features, the inputs of
:mod:`vqvae_prior.evaluation.metrics`.

Training (:func:`train_classifier`) is seeded by its settings alone and takes the check's augmentation;
:func:`predict` only needs a module with ``features(x) -> (B, d)`` and ``head(features) -> (B, num_classes)``. A
trained classifier can be cached on disk (:func:`cached_classifier`) under a digest of what defines it; a cache
entry that cannot be read is rebuilt with a warning.

Deviation: the inception score and the Frechet inception distance judge with Inception trained on ImageNet; here a
small classifier trained on the data set being judged, so the figures compare models of one data set, not across
data sets or with published FID/IS values.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.files import atomic_save
from vqvae_prior.training.batching import batches
from vqvae_prior.training.distributed import Distributed
from vqvae_prior.training.loop import train
from vqvae_prior.training.steps import MixedPrecision

__all__ = [
    "CACHE_DIR", "Augment", "ClassifierConfig", "ClassifierTask", "ConvClassifier", "Prediction", "TrainSettings",
    "cached_classifier", "predict", "train_classifier",
]

CACHE_DIR = Path("~/.cache/vqvae_prior/judge").expanduser()  # the checks' classifiers and code maps


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


class ClassifierTask:
    """A classifier and its labelled inputs x (N, ...), y (N,), for the fit loop
    (:func:`vqvae_prior.training.loop.train`): cross-entropy of each batch, augmented by ``augment``."""

    train_method = "forward"
    info: dict[str, Any] = {}

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, batch_size: int, augment: Augment | None) -> None:
        self.model, self.x, self.y, self.batch_size, self.augment = model, x, y, batch_size, augment
        self.steps_per_epoch = math.ceil(len(x) / batch_size)

    def batches(self, generator: torch.Generator, dist: Distributed):
        self.generator = generator  # the augmentation draws from the batch order's generator
        device = next(self.model.parameters()).device
        return batches(self.x, self.y, self.batch_size, device, generator, dist.shard)

    def loss(self, forward, batch: tuple[Tensor, Tensor]) -> Tensor:
        xb, yb = batch
        return F.cross_entropy(forward(self.augment(xb, self.generator) if self.augment else xb), yb)

    def progress(self, loss: Tensor) -> dict[str, str]:
        return {"loss": f"{float(loss):.3f}"}


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
    task = ClassifierTask(model, x, y, settings.batch_size, augment)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr,
                                                   total_steps=settings.epochs * task.steps_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed)
    train(task, optimizer, schedule, generator, settings.epochs, MixedPrecision("fp32", device))
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
