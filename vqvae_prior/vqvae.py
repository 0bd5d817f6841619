"""VQ-VAE: convolutional encoder -> vector quantizer -> mirror decoder (van den Oord et al. 2017).

The encoder halves the resolution ``log2(downsample)`` times with 4x4 stride-2 convolutions, then applies a 3x3
convolution and a stack of residual blocks (ReLU, 3x3, ReLU, 1x1) and projects to the code dimension with a 1x1
convolution. The decoder mirrors it with 4x4 stride-2 transposed convolutions. Inputs are images or normalized
spectrograms in [0, 1] of any height and width divisible by ``downsample``, square or not; the reconstruction loss
is the mean squared error in that range.

The quantizer is the one ``config.quantizer`` names in ``vqvae_prior.registry.QUANTIZERS`` (by default ``"vq"``, the
nearest-neighbour :class:`vqvae_prior.quantizer.VectorQuantizer`).

References: van den Oord et al. 2017, "Neural Discrete Representation Learning", section 4 (architecture) and
appendix A.1 (EMA codebook). Deviations: see ``quantizer.py`` (data-initialized codebook, dead-code restarts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqvae_prior.registry import quantizer_class

__all__ = ["VQVAE", "VQVAEConfig", "VQVAEOutput"]


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
        quantizer_class(self.quantizer)  # a clear error for a name not registered


@dataclass
class VQVAEOutput:
    """Result of :meth:`VQVAE.forward`.

    Attributes:
        reconstruction: (B, C, H, W).
        indices: (B, h, w) code indices, h = H / downsample, w = W / downsample.
        loss: scalar, reconstruction MSE + codebook loss + beta * commitment loss.
        reconstruction_loss: scalar MSE.
        commitment_loss: scalar.
        perplexity: scalar, code perplexity in this batch.
    """

    reconstruction: Tensor
    indices: Tensor
    loss: Tensor
    reconstruction_loss: Tensor
    commitment_loss: Tensor
    perplexity: Tensor


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
    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        n_down = int(math.log2(cfg.downsample))
        widths = [cfg.in_channels] + [cfg.channels // 2 ** (n_down - 1 - i) for i in range(n_down)]
        layers: list[nn.Module] = []
        for i in range(n_down):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.ReLU()]
        self.down = nn.Sequential(*layers[:-1])  # the residual stack starts with its own ReLU
        self.conv = nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1)
        self.residual = ResidualStack(cfg.channels, cfg.residual_channels, cfg.num_residual_blocks)
        self.to_code = nn.Conv2d(cfg.channels, cfg.code_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.down(x)  # (B, C, h, w)
        h = self.residual(self.conv(F.relu(h)))  # (B, C, h, w)
        return self.to_code(h)  # (B, D, h, w)


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        n_down = int(math.log2(cfg.downsample))
        widths = [cfg.channels // 2**i for i in range(n_down)] + [cfg.in_channels]
        self.conv = nn.Conv2d(cfg.code_dim, cfg.channels, 3, padding=1)
        self.residual = ResidualStack(cfg.channels, cfg.residual_channels, cfg.num_residual_blocks)
        layers: list[nn.Module] = []
        for i in range(n_down):
            layers += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.ReLU()]
        self.up = nn.Sequential(*layers[:-1])  # no activation on the output

    def forward(self, z_q: Tensor) -> Tensor:
        h = self.residual(self.conv(z_q))  # (B, C, h, w)
        return self.up(h)  # (B, C_in, H, W)


class VQVAE(nn.Module):
    """Encoder -> quantizer (``config.quantizer``, by default ``vqvae_prior.quantizer.VectorQuantizer``) -> decoder.

    ``encode(x) -> indices (B, h, w)`` and ``decode_indices(indices) -> x (B, C, H, W)`` are the interfaces that the
    prior and the pipeline use.
    """

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = quantizer_class(config.quantizer).from_config(config)
        self.decoder = Decoder(config)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.config.downsample or x.shape[3] % self.config.downsample:
            raise ValueError(
                f"input height and width must be divisible by downsample={self.config.downsample}, "
                f"got {tuple(x.shape[2:])}"
            )

    def forward(self, x: Tensor) -> VQVAEOutput:
        """Reconstruct x (B, C, H, W) in [0, 1]; in training mode the quantizer also updates its codebook."""
        self._check_input(x)
        q = self.quantizer(self.encoder(x))  # quantized (B, D, h, w)
        reconstruction = self.decoder(q.quantized)  # (B, C, H, W)
        reconstruction_loss = F.mse_loss(reconstruction.float(), x.float())
        loss = reconstruction_loss + q.codebook_loss + self.config.beta * q.commitment_loss
        return VQVAEOutput(reconstruction, q.indices, loss, reconstruction_loss, q.commitment_loss, q.perplexity)

    def decoded_shape(self, code_shape: tuple[int, int]) -> tuple[int, int, int]:
        """(C, H, W) of what code maps of ``code_shape`` (h, w) decode to."""
        ds = self.config.downsample
        return (self.config.in_channels, code_shape[0] * ds, code_shape[1] * ds)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Code indices (B, h, w) of x (B, C, H, W)."""
        self._check_input(x)
        return self.quantizer.encode(self.encoder(x))

    @torch.no_grad()
    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decoded images or spectrograms (B, C, H, W), unclamped, of the indices (B, h, w)."""
        if indices.ndim != 3:
            raise ValueError(f"expected indices (B, h, w), got {tuple(indices.shape)}")
        return self.decoder(self.quantizer.decode(indices))
