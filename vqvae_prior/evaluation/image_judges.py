"""The image check's classifier (:class:`vqvae_prior.evaluation.classifier.ConvClassifier`) as it learns a data
set's real images: light random affine distortions of each training batch (:func:`augment`), and enough epochs to
see about 150,000 train images (:func:`default_epochs`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.evaluation import classifier

__all__ = ["AugmentSettings", "augment", "default_epochs", "train_classifier"]


@dataclass(frozen=True)
class AugmentSettings:
    """Random affine distortions of each training image: a shift of up to ``shift`` pixels along each axis and a
    rotation of up to ``rotate`` degrees, both uniform; bilinear, zeros outside the image."""

    shift: float = 2.0
    rotate: float = 10.0


def augment(x: Tensor, settings: AugmentSettings, generator: torch.Generator) -> Tensor:
    """Images x (B, C, H, W), each moved and turned at random (draws from the CPU ``generator``)."""
    B, _, H, W = x.shape
    u = torch.rand(B, 3, generator=generator) * 2 - 1  # (B, 3) in [-1, 1): shift x, shift y, angle
    angle = u[:, 2] * math.radians(settings.rotate)  # (B,)
    cos, sin = angle.cos(), angle.sin()
    # affine_grid maps output to input coordinates in [-1, 1]: one pixel is 2 / W horizontally, 2 / H vertically
    theta = torch.stack([
        torch.stack([cos, -sin * H / W, u[:, 0] * settings.shift * 2 / W], 1),
        torch.stack([sin * W / H, cos, u[:, 1] * settings.shift * 2 / H], 1),
    ], 1).to(x)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, H, W)


def train_classifier(
    x: Tensor, y: Tensor, config: classifier.ClassifierConfig, settings: classifier.TrainSettings,
    aug: AugmentSettings, device: torch.device,
) -> nn.Module:
    """A :class:`vqvae_prior.evaluation.classifier.ConvClassifier` trained on images x (N, C, H, W) with labels
    (N,), each batch distorted by :func:`augment`."""
    return classifier.train_classifier(lambda: classifier.ConvClassifier(config), x, y, settings, device,
                                       lambda xb, g: augment(xb, aug, g))


def default_epochs(n_train: int) -> int:
    """Epochs that show the classifier about 150,000 train images, at least 2: 34 of mnist-sample's 4,500 digits,
    3 of MNIST's 60,000."""
    return max(2, math.ceil(150_000 / n_train))
