"""VQ-VAE-2: a two-level VQ-VAE, a top code map at twice the bottom map's downsampling (Razavi et al. 2019).

The bottom encoder downsamples the input by ``downsample`` (d) to features (B, C, H/d, W/d); the top encoder
downsamples those by 2 more and quantizes them to the top code map (B, H/2d, W/2d), the coarse structure. The top
quantized map, decoded back (x2) to the bottom resolution, is concatenated with the bottom features, and a 1x1
convolution projects both to the bottom code vectors, which are quantized to the bottom map (B, H/d, W/d), the
detail given the structure. The decoder takes both: the top quantized map upsampled x2 (a 4x4 stride-2 transposed
convolution) concatenated with the bottom quantized map, back to (B, C_in, H, W). The encoders and decoders are the
blocks of :mod:`vqvae_prior.vqvae` (4x4 stride-2 convolutions, 3x3, residual stacks); each level has its own
quantizer, the one ``config.quantizer`` names in ``vqvae_prior.registry.QUANTIZERS`` (EMA codebook, data
initialization, dead-code restarts, usage counts). Loss: reconstruction MSE + both levels' codebook losses + beta *
both commitment losses.

Inputs: height and width divisible by 2d. MNIST's 28x28 takes d = 2 (14x14 bottom codes, 7x7 top); FSDD's 80x64
spectrograms d = 4 (20x16, 10x8); CIFAR-10's 32x32 d = 2 or 4.

References: Razavi, van den Oord & Vinyals 2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2", section
3.1 and figure 2a (the two-level encoder and decoder); rosinality/vq-vae-2-pytorch (the same wiring).
Deviations: one codebook size K and code dimension D for both levels; the bottom encoder ends, as every encoder
here, in a 1x1 projection (to C features, which the top encoder reads); the quantizer's own deviations
(``quantizer.py``: data-initialized codebook, dead-code restarts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.vqvae import (
    Decoder, Encoder, VQVAEConfig, VQVAEOutput, build_quantizer, check_input, check_levels, finest_code_shape,
)

__all__ = ["VQVAE2", "VQVAE2Config"]


@dataclass(frozen=True)
class VQVAE2Config(VQVAEConfig):
    """Every field needed to rebuild a :class:`VQVAE2`, saved inside each checkpoint: the fields and checks of
    :class:`vqvae_prior.vqvae.VQVAEConfig`, ``downsample`` being the bottom level's (the top level is at twice it),
    ``codebook_size`` and ``code_dim`` those of both levels."""


class VQVAE2(nn.Module):
    """Two-level VQ-VAE (module docstring).

    ``encode_levels(x) -> (top (B, h/2, w/2), bottom (B, h, w))`` and ``decode_levels((top, bottom)) -> x (B, C, H,
    W)`` are its interfaces, h = H / downsample and w = W / downsample; a prior over its codes models both maps.
    """

    levels: ClassVar[int] = 2

    def __init__(self, config: VQVAE2Config) -> None:
        super().__init__()
        self.config = config
        C, D = config.channels, config.code_dim
        self.encoder_bottom = Encoder(config, config.in_channels, C, config.downsample)
        self.encoder_top = Encoder(config, C, D, 2)
        self.quantizer_top = build_quantizer(config)
        self.decoder_top = Decoder(config, D, D, 2)  # the top quantized map at the bottom resolution
        self.to_code_bottom = nn.Conv2d(D + C, D, 1)
        self.quantizer_bottom = build_quantizer(config)
        self.upsample_top = nn.ConvTranspose2d(D, D, 4, stride=2, padding=1)
        self.decoder = Decoder(config, 2 * D, config.in_channels, config.downsample)
        # channels-last kernels: oneDNN's convolutions take the channels-last path, 7-8% faster a training step on 2 CPU
        # cores (BENCHMARKS.md); the state dict holds the same values
        self.to(memory_format=torch.channels_last)

    def _bottom_code(self, features: Tensor, top_quantized: Tensor) -> Tensor:
        """The bottom code vectors (B, D, h, w) of the bottom features (B, C, h, w) given the top quantized map
        (B, D, h/2, w/2)."""
        top = self.decoder_top(top_quantized)  # (B, D, h, w)
        return self.to_code_bottom(torch.cat([top, features], dim=1))  # (B, D, h, w)

    def _decode(self, top_quantized: Tensor, bottom_quantized: Tensor) -> Tensor:
        """(B, C, H, W) of the quantized maps (B, D, h/2, w/2) and (B, D, h, w)."""
        top = self.upsample_top(top_quantized)  # (B, D, h, w)
        return self.decoder(torch.cat([top, bottom_quantized], dim=1))  # (B, C, H, W)

    def forward(self, x: Tensor) -> VQVAEOutput:
        """Reconstruct x (B, C, H, W) in [0, 1]; in training mode the quantizers also update their codebooks.

        Axes: B batch, C input channels, H and W the input's size, D code dimension, h = H / downsample and
        w = W / downsample the bottom code map's size (the top map's is h/2 x w/2).
        """
        check_input(x, self.config, self.levels)
        features = self.encoder_bottom(x)  # (B, C, h, w)
        top = self.quantizer_top(self.encoder_top(features))  # quantized (B, D, h/2, w/2)
        bottom = self.quantizer_bottom(self._bottom_code(features, top.quantized))  # quantized (B, D, h, w)
        reconstruction = self._decode(top.quantized, bottom.quantized)  # (B, C, H, W)
        reconstruction_loss = F.mse_loss(reconstruction.float(), x.float())
        commitment_loss = top.commitment_loss + bottom.commitment_loss
        loss = reconstruction_loss + top.codebook_loss + bottom.codebook_loss + self.config.beta * commitment_loss
        return VQVAEOutput(reconstruction, bottom.indices, loss, reconstruction_loss, commitment_loss,
                           bottom.perplexity, level_indices=(top.indices, bottom.indices),
                           level_perplexities=(top.perplexity, bottom.perplexity))

    def code_shape(self, sample_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(h, w) of the bottom code map of inputs of ``sample_shape`` (C, H, W); a ValueError when it cannot take
        them (H and W must be divisible by 2 * downsample)."""
        return finest_code_shape(self.config, sample_shape, self.levels)

    def level_shapes(self, code_shape: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of the code map of each level, top first, for a bottom map of ``code_shape``: (h/2, w/2), (h, w)."""
        h, w = code_shape
        if h % 2 or w % 2:
            raise ValueError(f"a two-level model's bottom code map has an even height and width, got {(h, w)}")
        return [(h // 2, w // 2), (h, w)]

    def decoded_shape(self, code_shape: tuple[int, int]) -> tuple[int, int, int]:
        """(C, H, W) of what code maps with a bottom map of ``code_shape`` (h, w) decode to."""
        ds = self.config.downsample
        return (self.config.in_channels, code_shape[0] * ds, code_shape[1] * ds)

    @torch.no_grad()
    def encode_levels(self, x: Tensor) -> tuple[Tensor, ...]:
        """The code maps of x (B, C, H, W), top first: top (B, h/2, w/2), bottom (B, h, w)."""
        check_input(x, self.config, self.levels)
        features = self.encoder_bottom(x)  # (B, C, h, w)
        top = self.quantizer_top.encode(self.encoder_top(features))  # (B, h/2, w/2)
        bottom = self.quantizer_bottom.encode(self._bottom_code(features, self.quantizer_top.decode(top)))  # (B, h, w)
        return top, bottom

    @torch.no_grad()
    def decode_levels(self, codes: Sequence[Tensor]) -> Tensor:
        """Decoded images or spectrograms (B, C, H, W), unclamped, of the code maps top (B, h/2, w/2) and bottom
        (B, h, w)."""
        top, bottom = check_levels(self, codes)
        return self._decode(self.quantizer_top.decode(top), self.quantizer_bottom.decode(bottom))
