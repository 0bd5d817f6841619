"""Pixels as codes: the classic PixelCNN experiments, modelled by the same priors as VQ-VAE codes.

A :class:`PixelCodec` stands where a VQ-VAE stands in the pipeline: ``encode`` turns images in [0, 1] into code
maps of quantized intensities and ``decode_indices`` turns code maps back into images, with no network. A gray
image of H x W pixels is an H x W code map with ``levels`` codes: level ``floor(x * levels)`` (the top intensity
in the top level), so 256 levels of an 8-bit image are its own values, and a level decodes to
``level / (levels - 1)``. An RGB image is an H x 3W code map, each pixel's R, G, B side by side: raster order over
it is the PixelCNN paper's order, pixels in raster order and R -> G -> B within each (a gated prior with
``image_channels=3`` masks its channels accordingly). The prior over these maps is the PixelCNN of the papers: a softmax over the levels of each
pixel given the pixels before it, its held-out negative log-likelihood in bits per dimension (bits per code), or in
nats per image for binarized MNIST.

Binarization (``levels = 2``): as the binarized MNIST of the PixelCNN papers (Salakhutdinov and Murray 2008, the
set of Larochelle and Murray 2011), each pixel is drawn once, 1 with probability its intensity, with a fixed seed
(:data:`BINARIZE_SEED`, one stream per split), and kept for every epoch: :func:`binarize`. Likelihoods are
comparable only within one binarization scheme; a threshold at 0.5 (what ``encode`` does to gray inputs) gives
lower figures.

References: van den Oord et al. 2016a, "Pixel Recurrent Neural Networks" (256-way softmax, binarized MNIST in nats);
van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

__all__ = ["BINARIZE_SEED", "PixelCodec", "PixelConfig", "binarize"]

BINARIZE_SEED = 0  # the binarized data sets of every fit: train drawn from seed 0, held-out from seed 1


@dataclass(frozen=True)
class PixelConfig:
    """What a :class:`PixelCodec` is: ``levels`` values per pixel of ``in_channels``-channel images."""

    levels: int
    in_channels: int = 1

    def __post_init__(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2 .. 256, got {self.levels}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")

    @property
    def codebook_size(self) -> int:
        """K of the prior: one code per level."""
        return self.levels

    @property
    def downsample(self) -> int:
        """One code per pixel."""
        return 1


class PixelCodec(nn.Module):
    """Images (B, G, H, W) in [0, 1] <-> code maps (B, H, W*G) of quantized intensities, G = ``in_channels``; see
    the module docstring."""

    def __init__(self, config: PixelConfig) -> None:
        super().__init__()
        self.config = config

    def encode(self, x: Tensor) -> Tensor:
        """Levels (B, H, W*G) int64 of images x (B, G, H, W) in [0, 1], each pixel's channels side by side."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        levels = (x.float() * self.config.levels).floor().clamp(0, self.config.levels - 1).long()  # (B, G, H, W)
        return rearrange(levels, "b g h w -> b h (w g)")

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Images (B, G, H, W) in [0, 1] of level maps (B, H, W*G)."""
        if indices.ndim != 3 or indices.shape[2] % self.config.in_channels:
            raise ValueError(f"expected indices (B, H, W*{self.config.in_channels}), got {tuple(indices.shape)}")
        x = indices.float() / (self.config.levels - 1)  # (B, H, W*G)
        return rearrange(x, "b h (w g) -> b g h w", g=self.config.in_channels)

    def encode_levels(self, x: Tensor) -> tuple[Tensor]:
        """The one level of code maps of images x (as the VQ-VAEs' ``encode_levels``): (:meth:`encode` (x),)."""
        return (self.encode(x),)

    def decode_levels(self, codes: tuple[Tensor]) -> Tensor:
        """Images of one level of code maps (as the VQ-VAEs' ``decode_levels``)."""
        (indices,) = codes
        return self.decode_indices(indices)

    def decoded_shape(self, code_shape: tuple[int, int]) -> tuple[int, int, int]:
        """(G, H, W) of the images that code maps of ``code_shape`` (H, W*G) decode to."""
        G = self.config.in_channels
        return (G, code_shape[0], code_shape[1] // G)


def binarize(images: Tensor, seed: int) -> Tensor:
    """Images (N, C, H, W) in [0, 1] (or uint8) drawn once to {0, 1}: each pixel 1 with probability its intensity,
    from a generator seeded with ``seed`` (the same images and seed give the same bits on every machine)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(x.shape, generator=generator) < x).float()  # (N, C, H, W)
