"""VQ-VAE: convolutional encoder -> vector quantizer -> mirror decoder (van den Oord et al. 2017).

The encoder halves the resolution ``log2(downsample)`` times with 4x4 stride-2 convolutions, then applies a 3x3
convolution and a stack of residual blocks (ReLU, 3x3, ReLU, 1x1) and projects to the code dimension with a 1x1
convolution. The decoder mirrors it with 4x4 stride-2 transposed convolutions. Inputs are images or normalized
spectrograms in [0, 1] of any height and width divisible by ``downsample``, square or not; the reconstruction loss
is the mean squared error in that range.

The quantizer is the one ``config.quantizer`` names in ``vqvae_prior.registry.QUANTIZERS`` (by default ``"vq"``, the
nearest-neighbour :class:`vqvae_prior.quantizer.VectorQuantizer`).

The encoder, the decoder, the quantizer's construction and the checks of inputs and code maps are also the blocks of
the two-level :class:`vqvae_prior.vqvae2.VQVAE2`. Both models answer the same level interface: ``levels``,
``encode_levels``, ``decode_levels``, ``level_shapes``, ``code_shape`` and ``decoded_shape``; here there is one level.

References: van den Oord et al. 2017, "Neural Discrete Representation Learning", section 4 (architecture) and
appendix A.1 (EMA codebook). Deviations: see ``quantizer.py`` (data-initialized codebook, dead-code restarts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.quantizers import quantizer_class

__all__ = ["VQVAE", "VQVAEConfig", "VQVAEOutput", "build_quantizer", "check_input", "check_levels", "finest_code_shape"]


@dataclass(frozen=True)
class VQVAEConfig:
    """Every field needed to rebuild a :class:`VQVAE`; saved inside each checkpoint."""

    in_channels: int = 1
    channels: int = 128  # hidden channels of the encoder and decoder
    residual_channels: int = 64
    num_residual_blocks: int = 2
    downsample: int = 4  # a power of 2: 28x28 images -> 7x7 codes
    code_dim: int = 32  # D
    codebook_size: int = 256  # K
    quantizer: str = "vq"  # a name in vqvae_prior.registry.QUANTIZERS
    ema: bool = True
    decay: float = 0.99
    beta: float = 0.25  # commitment weight
    dead_code_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.downsample < 2 or self.downsample & (self.downsample - 1):
            raise ValueError(f"downsample must be a power of 2 >= 2, got {self.downsample}")
        for name in ("in_channels", "channels", "residual_channels", "code_dim", "codebook_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_residual_blocks < 0:
            raise ValueError(f"num_residual_blocks must be >= 0, got {self.num_residual_blocks}")
        quantizer_class(self.quantizer)  # a clear error for a name not registered


@dataclass
class VQVAEOutput:
    """Result of :meth:`VQVAE.forward` and of :meth:`vqvae_prior.vqvae2.VQVAE2.forward`.

    Attributes:
        reconstruction: (B, C, H, W).
        indices: (B, h, w) code indices of the finest level, h = H / downsample, w = W / downsample.
        loss: scalar, reconstruction MSE + codebook losses + beta * commitment losses (of every level).
        reconstruction_loss: scalar MSE.
        commitment_loss: scalar, the sum over the levels.
        perplexity: scalar, code perplexity of the finest level in this batch.
        level_indices: the code indices of every level, top first (the last is ``indices``).
        level_perplexities: the code perplexity of every level in this batch, top first.
    """

    reconstruction: Tensor
    indices: Tensor
    loss: Tensor
    reconstruction_loss: Tensor
    commitment_loss: Tensor
    perplexity: Tensor
    level_indices: tuple[Tensor, ...]
    level_perplexities: tuple[Tensor, ...]


def build_quantizer(config: VQVAEConfig) -> nn.Module:
    """The quantizer ``config.quantizer`` names in ``vqvae_prior.registry.QUANTIZERS``, built from the config."""
    return quantizer_class(config.quantizer).from_config(config)


def finest_code_shape(config: VQVAEConfig, sample_shape: Sequence[int], levels: int) -> tuple[int, int]:
    """(h, w) of the finest code map of inputs (C, H, W): (H, W) / downsample. A ValueError unless C is the config's
    ``in_channels`` and H and W are divisible by the coarsest level's downsampling, ``downsample * 2 ** (levels -
    1)``."""
    channels, height, width = sample_shape
    if channels != config.in_channels:
        raise ValueError(f"expected inputs ({config.in_channels}, H, W), got {tuple(sample_shape)}")
    multiple = config.downsample * 2 ** (levels - 1)
    if height % multiple or width % multiple:
        what = (f"downsample={config.downsample}" if levels == 1 else
                f"{multiple} (the top level's downsampling: {2 ** (levels - 1)} x downsample={config.downsample})")
        raise ValueError(f"input height and width must be divisible by {what}, got {(height, width)}")
    return height // config.downsample, width // config.downsample


def check_input(x: Tensor, config: VQVAEConfig, levels: int) -> None:
    """Refuse inputs x that are not (B, C, H, W) with the config's C and H, W that :func:`finest_code_shape` takes."""
    if x.ndim != 4 or x.shape[1] != config.in_channels:
        raise ValueError(f"expected input (B, {config.in_channels}, H, W), got {tuple(x.shape)}")
    finest_code_shape(config, tuple(x.shape[1:]), levels)


def check_levels(model: nn.Module, codes: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """The code maps (B, h_l, w_l) of every level of ``model`` (its ``levels`` and ``level_shapes``), top first; a
    ValueError saying what does not fit."""
    codes = tuple(codes)
    if len(codes) != model.levels:
        raise ValueError(f"expected {model.levels} code map(s), top first, got {len(codes)}")
    found = [tuple(c.shape) for c in codes]
    if any(len(shape) != 3 for shape in found):
        raise ValueError(f"expected code maps (B, h, w), got shapes {found}")
    batch, *finest = found[-1]
    expected = [(batch, *shape) for shape in model.level_shapes(tuple(finest))]
    if found != expected:
        raise ValueError(f"code maps of shapes {found} do not fit together: the finest (B, h, w) = {found[-1]} needs "
                         f"{expected}, top first")
    return codes


class ResidualStack(nn.Module):
    """``num_blocks`` x (x + 1x1(ReLU(3x3(ReLU(x))))), then ReLU."""

    def __init__(self, channels: int, residual_channels: int, num_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(channels, residual_channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(residual_channels, channels, 1),
            )
            for _ in range(num_blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = x + block(x)  # (B, C, h, w)
        return F.relu(x)


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H / factor, W / factor): ``log2(factor)`` 4x4 stride-2
    convolutions widening to ``cfg.channels``, a 3x3 convolution, a residual stack and a 1x1 projection."""

    def __init__(self, cfg: VQVAEConfig, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        n_down = int(math.log2(factor))
        widths = [in_channels] + [cfg.channels // 2 ** (n_down - 1 - i) for i in range(n_down)]
        layers: list[nn.Module] = []
        for i in range(n_down):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.ReLU()]
        self.down = nn.Sequential(*layers[:-1])  # the residual stack starts with its own ReLU
        self.conv = nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1)
        self.residual = ResidualStack(cfg.channels, cfg.residual_channels, cfg.num_residual_blocks)
        self.to_code = nn.Conv2d(cfg.channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.down(x)  # (B, C, h, w)
        h = self.residual(self.conv(F.relu(h)))  # (B, C, h, w)
        return self.to_code(h)  # (B, out_channels, h, w)


class Decoder(nn.Module):
    """(B, in_channels, h, w) -> (B, out_channels, h * factor, w * factor), the mirror of :class:`Encoder`: a 3x3
    convolution to ``cfg.channels``, a residual stack, ``log2(factor)`` 4x4 stride-2 transposed convolutions."""

    def __init__(self, cfg: VQVAEConfig, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        n_down = int(math.log2(factor))
        widths = [cfg.channels // 2**i for i in range(n_down)] + [out_channels]
        self.conv = nn.Conv2d(in_channels, cfg.channels, 3, padding=1)
        self.residual = ResidualStack(cfg.channels, cfg.residual_channels, cfg.num_residual_blocks)
        layers: list[nn.Module] = []
        for i in range(n_down):
            layers += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.ReLU()]
        self.up = nn.Sequential(*layers[:-1])  # no activation on the output

    def forward(self, z_q: Tensor) -> Tensor:
        h = self.residual(self.conv(z_q))  # (B, C, h, w)
        return self.up(h)  # (B, out_channels, H, W)


class VQVAE(nn.Module):
    """Encoder -> quantizer (``config.quantizer``, by default ``vqvae_prior.quantizer.VectorQuantizer``) -> decoder.

    ``encode(x) -> indices (B, h, w)`` and ``decode_indices(indices) -> x (B, C, H, W)`` are the interfaces that the
    prior and the pipeline use; ``encode_levels`` and ``decode_levels`` are the same with one code map in a tuple,
    as :class:`vqvae_prior.vqvae2.VQVAE2` answers them with two.
    """

    levels: ClassVar[int] = 1

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, config.in_channels, config.code_dim, config.downsample)
        self.quantizer = build_quantizer(config)
        self.decoder = Decoder(config, config.code_dim, config.in_channels, config.downsample)
        # channels-last kernels: oneDNN's convolutions take the channels-last path, 7-8% faster a training step on 2 CPU
        # cores (BENCHMARKS.md); the state dict holds the same values
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> VQVAEOutput:
        """Reconstruct x (B, C, H, W) in [0, 1]; in training mode the quantizer also updates its codebook."""
        check_input(x, self.config, self.levels)
        q = self.quantizer(self.encoder(x))  # quantized (B, D, h, w)
        reconstruction = self.decoder(q.quantized)  # (B, C, H, W)
        reconstruction_loss = F.mse_loss(reconstruction.float(), x.float())
        loss = reconstruction_loss + q.codebook_loss + self.config.beta * q.commitment_loss
        return VQVAEOutput(reconstruction, q.indices, loss, reconstruction_loss, q.commitment_loss, q.perplexity,
                           level_indices=(q.indices,), level_perplexities=(q.perplexity,))

    def code_shape(self, sample_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(h, w) of the code maps of inputs of ``sample_shape`` (C, H, W); a ValueError when it cannot take them."""
        return finest_code_shape(self.config, sample_shape, self.levels)

    def level_shapes(self, code_shape: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of the code map of each level, top first, for a finest map of ``code_shape``: the one level."""
        return [tuple(code_shape)]  # type: ignore[list-item]

    def decoded_shape(self, code_shape: tuple[int, int]) -> tuple[int, int, int]:
        """(C, H, W) of what code maps of ``code_shape`` (h, w) decode to."""
        ds = self.config.downsample
        return (self.config.in_channels, code_shape[0] * ds, code_shape[1] * ds)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Code indices (B, h, w) of x (B, C, H, W)."""
        check_input(x, self.config, self.levels)
        return self.quantizer.encode(self.encoder(x))

    @torch.no_grad()
    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decoded images or spectrograms (B, C, H, W), unclamped, of the indices (B, h, w)."""
        if indices.ndim != 3:
            raise ValueError(f"expected indices (B, h, w), got {tuple(indices.shape)}")
        return self.decoder(self.quantizer.decode(indices))

    @torch.no_grad()
    def encode_levels(self, x: Tensor) -> tuple[Tensor, ...]:
        """The code maps of x (B, C, H, W), top first: here the one, ``(encode(x),)``."""
        return (self.encode(x),)

    @torch.no_grad()
    def decode_levels(self, codes: Sequence[Tensor]) -> Tensor:
        """Decoded images or spectrograms (B, C, H, W), unclamped, of the code maps of every level, top first: here
        one, (B, h, w)."""
        (indices,) = check_levels(self, codes)
        return self.decode_indices(indices)
