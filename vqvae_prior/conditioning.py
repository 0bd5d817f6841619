"""Location-dependent conditioning of the gated PixelCNN on a coarser code map (the top level of a VQ-VAE-2).

The conditional PixelCNN paper (van den Oord et al. 2016b, section 2.3) conditions on a spatial representation h
through a map ``s = m(h)`` of the grid's size, added inside every gated layer through 1x1 convolutions:
``tanh(W_f * x + V_f * s) . sigmoid(W_g * x + V_g * s)``. Here h is the top code map of a two-level VQ-VAE
(Razavi et al. 2019): :class:`ConditionNetwork` is m, learned with the prior. It embeds the top codes, runs a stack
of residual 3x3 convolutions on the top grid whose dilations double (1, 2, 4, 8: every position sees every top code
of a map up to 16 codes on a side, so the bottom prior at any position sees the whole top map), and brings the
features to the bottom grid with stride-2 transposed convolutions (``scale`` = 2 per halving). Each gated layer owns
its V_f and V_g (``GatedLayer.condition``, one 1x1 convolution for both stacks).

The conditioning map is known in full before sampling, so it never breaks causality: the bottom prior at a position
sees the whole top map and, as without it, only the bottom codes before that position.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConditionNetwork", "DILATIONS"]

DILATIONS = (1, 2, 4, 8)  # of the residual convolutions on the top grid: a receptive field of 31 x 31 top codes


class ConditionNetwork(nn.Module):
    """m(h): top code maps (B, h, w) -> conditioning maps (B, C, h * scale, w * scale).

    Args:
        codebook_size: K of the top codes.
        channels: C, the channels of the embedding, of the residual stack and of the map.
        scale: a power of 2, the bottom grid's size over the top grid's.
    """

    def __init__(self, codebook_size: int, channels: int, scale: int) -> None:
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"scale must be a power of 2 >= 1, got {scale}")
        self.scale = scale
        self.embedding = nn.Embedding(codebook_size, channels)
        self.residual = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in DILATIONS)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1) for _ in range(int(math.log2(scale)))
        )
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, codes: Tensor) -> Tensor:
        """Conditioning maps (B, C, h * scale, w * scale) of top code maps (B, h, w)."""
        return self.from_embeddings(self.embedding(codes).permute(0, 3, 1, 2))  # (B, C, h, w) in

    def from_embeddings(self, x: Tensor) -> Tensor:
        """Conditioning maps (B, C, h * scale, w * scale) of embedded top code maps x (B, C, h, w) (differentiable
        in x: the causality tests take its gradient)."""
        for conv in self.residual:
            x = x + conv(F.relu(x))  # (B, C, h, w)
        for up in self.up:
            x = up(F.relu(x))  # (B, C, 2h, 2w)
        return self.out(F.relu(x))  # (B, C, H, W)
