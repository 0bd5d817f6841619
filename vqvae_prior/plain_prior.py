"""The plain masked PixelCNN (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", section 3.5 and table
1): the architecture the gated PixelCNN is compared against, kept as a second prior (``fit_prior --arch plain``).

Indices are embedded (as in :class:`vqvae_prior.prior.GatedPixelCNN`), then go through one convolution of mask type
A (7x7 by default) and ``num_layers - 1`` residual blocks, each ``x + 1x1(ReLU(B(ReLU(1x1(ReLU(x))))))``: a 1x1
convolution halves the channels (2h -> h), a k x k convolution of mask type B keeps them, a 1x1 convolution doubles
them back. A head (ReLU, 1x1, ReLU, 1x1) gives the logits (B, K, h, w). With one value per position (a code, or a
gray pixel) the paper's 1x1 mask-B convolutions are plain 1x1 convolutions. A class label adds a learned bias after
the masked convolution of every layer; ``dropout`` zeroes units of each block's masked convolution in training.

A stack of masked convolutions has a blind spot: positions above and to the right of the current one that no chain
of masked kernels reaches, however deep the stack (``pipelines.receptive_field`` draws it; the gated PixelCNN's two
stacks remove it). This network has no step-by-step form: it is sampled by the reference sampler, one full forward
pass per position (``method="auto"`` picks it; ``"cached"`` is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.layers import MaskedConv2d
from vqvae_prior.prior import AutoregressivePrior, Head

__all__ = ["PlainPixelCNN", "PlainPriorConfig", "PlainResidualBlock"]


@dataclass(frozen=True)
class PlainPriorConfig:
    """Every field needed to rebuild a :class:`PlainPixelCNN`; saved inside each checkpoint."""

    codebook_size: int  # K, must equal the VQ-VAE's
    num_classes: int = 0  # 0: unconditional
    channels: int = 128  # 2h, between the blocks; the masked convolutions inside them have h = channels // 2
    num_layers: int = 12  # the type-A layer and num_layers - 1 residual blocks
    first_kernel_size: int = 7
    kernel_size: int = 3
    head_channels: int = 256
    dropout: float = 0.0  # on each block's masked convolution, training only
    label_dropout: float = 0.0  # > 0: labels replaced by the null class at this rate in training (guidance)

    def __post_init__(self) -> None:
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.num_classes < 0 or self.num_layers < 1 or self.channels < 2 or self.channels % 2:
            raise ValueError(f"invalid plain prior config {self} (channels: even, >= 2)")
        for name in ("dropout", "label_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


class PlainResidualBlock(nn.Module):
    """``x + 1x1(ReLU(maskB(ReLU(1x1(ReLU(x))))))`` with 2h -> h -> h -> 2h channels; a class bias after the mask."""

    def __init__(self, channels: int, kernel_size: int, label_rows: int, dropout: float) -> None:
        super().__init__()
        inner = channels // 2
        self.reduce = nn.Conv2d(channels, inner, 1)
        self.conv = MaskedConv2d(inner, inner, kernel_size, "B")
        self.expand = nn.Conv2d(inner, channels, 1)
        self.label_bias = nn.Embedding(label_rows, inner) if label_rows else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.conv(F.relu(self.reduce(F.relu(x))))  # (B, h, H, W)
        if self.label_bias is not None:
            h = h + self.label_bias(labels)[:, :, None, None]
        return x + self.expand(self.dropout(F.relu(h)))  # (B, 2h, H, W)


class PlainPixelCNN(AutoregressivePrior):
    """Plain masked PixelCNN over code maps: ``forward(indices (B, h, w), labels (B,)) -> logits (B, K, h, w)``."""

    def __init__(self, config: PlainPriorConfig) -> None:
        super().__init__()
        self.config = config
        C = config.channels
        self.embedding = nn.Embedding(config.codebook_size, C)
        self.first = MaskedConv2d(C, C, config.first_kernel_size, "A")
        self.first_label_bias = nn.Embedding(self.label_rows, C) if self.label_rows else None
        self.blocks = nn.ModuleList(
            PlainResidualBlock(C, config.kernel_size, self.label_rows, config.dropout)
            for _ in range(config.num_layers - 1)
        )
        self.head = Head(C, config.head_channels, config.codebook_size)

    def logits_from_embeddings(self, x: Tensor, labels: Tensor | None = None,
                               condition: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w) of embedded code maps x (B, C, h, w); this prior takes no conditioning map."""
        if condition is not None:
            raise ValueError("the plain PixelCNN is not conditioned on a code map: pass condition=None")
        h = self.first(x)  # (B, C, h, w), sees only the positions before each one
        if self.first_label_bias is not None:
            h = h + self.first_label_bias(labels)[:, :, None, None]
        for block in self.blocks:
            h = block(h, labels)  # (B, C, h, w)
        return self.head(h)  # (B, K, h, w)
