"""Vector quantizer of VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

Each encoder output vector z_e is replaced by its nearest codebook vector e_k; the gradient passes straight
through (z_q = z_e + sg[e_k - z_e]). The codebook is learned either by

- exponential moving averages of the assigned vectors (paper, appendix A.1; decay 0.99, the default), or
- the codebook loss ||sg[z_e] - e||^2 (``ema=False``).

Both use the commitment loss ||z_e - sg[e]||^2, weighted by beta (0.25) in the VQ-VAE's total loss.

Deviations from the paper, all aimed at codebook collapse (trap 4 of ../shared/REFERENCES.md):
- the codebook is initialized from encoder outputs of the first training batch, not at random;
- dead codes (EMA usage count under ``dead_code_threshold``) are restarted from random encoder outputs of the
  current batch; the usage EMA is kept in both modes so restarts work with the codebook loss too;
- :class:`CodeUsage` counts code usage over a whole epoch (perplexity, number of distinct codes used).

The quantizer always computes in fp32, also under autocast (trap 8). Under ``torch.distributed`` (trap 9) the EMA
statistics are summed over the ranks, and the initial and restarted codes are drawn from the vectors of all ranks,
gathered in rank order, with the random state every rank shares: the state of the quantizer is the same on every
rank, and the same as one process's on the whole batch (``vqvae_prior/training/distributed.py``: every rank holds an equal,
contiguous shard of the global batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["CodeUsage", "QuantizerOutput", "VectorQuantizer"]


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce_(t: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


def _gather_rows(z: Tensor) -> Tensor:
    """The rows (N, D) of every rank, in rank order (W*N, D); the ranks hold equal numbers of rows."""
    if not _distributed():
        return z
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.contiguous())
    return torch.cat(parts)


def _sample_rows(x: Tensor, n: int) -> Tensor:
    """``n`` rows of ``x`` (N, D) drawn at random, without replacement when there are enough rows."""
    if x.shape[0] >= n:
        return x[torch.randperm(x.shape[0], device=x.device)[:n]]
    return x[torch.randint(0, x.shape[0], (n,), device=x.device)]


# ----------------------------------------------------------------------------------------------------------------
# main classes


@dataclass
class QuantizerOutput:
    """Result of :meth:`VectorQuantizer.forward`.

    Attributes:
        quantized: (B, D, h, w) codebook vectors, with the straight-through gradient to the input.
        indices: (B, h, w) int64 code indices.
        commitment_loss: scalar, mean ||z_e - sg[e]||^2.
        codebook_loss: scalar, mean ||sg[z_e] - e||^2 (zero, without gradient, in EMA mode).
        perplexity: scalar, exp(entropy) of the code distribution in this batch.
    """

    quantized: Tensor
    indices: Tensor
    commitment_loss: Tensor
    codebook_loss: Tensor
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantizer with an EMA-learned or loss-learned codebook.

    Args:
        codebook_size: K, the number of codes.
        code_dim: D, the dimension of each code vector.
        ema: learn the codebook by exponential moving averages (True) or by the codebook loss (False).
        decay: EMA decay of the codebook statistics and of the usage counts.
        dead_code_threshold: a code whose EMA usage count (vectors per batch) falls under this is restarted
            from a random encoder output of the current batch; 0 disables restarts.
        eps: Laplace smoothing of the EMA cluster sizes.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        ema: bool = True,
        decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.ema, self.decay, self.dead_code_threshold, self.eps = ema, decay, dead_code_threshold, eps
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim), requires_grad=not ema)  # (K, D)
        self.register_buffer("usage", torch.zeros(codebook_size))  # (K,) EMA of vectors assigned per batch
        self.register_buffer("ema_sum", torch.zeros(codebook_size, code_dim))  # (K, D) EMA of assigned sums
        self.register_buffer("initialized", torch.tensor(False))
        self._known_initialized = False  # the buffer read once as True: later steps skip the read (a host sync)

    @classmethod
    def from_config(cls, config) -> VectorQuantizer:
        """The quantizer a ``VQVAEConfig`` describes (its codebook_size, code_dim, ema, decay, dead_code_threshold)."""
        return cls(config.codebook_size, config.code_dim, config.ema, config.decay, config.dead_code_threshold)

    # -- the four small interfaces ------------------------------------------------------------------------------

    def quantize(self, z: Tensor) -> Tensor:
        """Indices (N,) of the nearest codes to the vectors z (N, D)."""
        codebook = self.codebook.float()  # (K, D)
        # ||z||^2 - 2 z.e + ||e||^2; the ||z||^2 term does not change the argmin
        distances = torch.addmm(codebook.pow(2).sum(1), z, codebook.t(), alpha=-2)  # (N, K), one tensor
        return distances.argmin(dim=1)

    def dequantize(self, indices: Tensor) -> Tensor:
        """Code vectors (..., D) of the indices (...)."""
        return F.embedding(indices, self.codebook)

    def encode(self, z_e: Tensor) -> Tensor:
        """Indices (B, h, w) of the encoder output z_e (B, D, h, w)."""
        flat = rearrange(z_e.float(), "b d h w -> (b h w) d")
        return rearrange(self.quantize(flat), "(b h w) -> b h w", b=z_e.shape[0], h=z_e.shape[2])

    def decode(self, indices: Tensor) -> Tensor:
        """Quantized maps (B, D, h, w) of the indices (B, h, w)."""
        return rearrange(self.dequantize(indices), "b h w d -> b d h w")

    # -- training -----------------------------------------------------------------------------------------------

    def forward(self, z_e: Tensor) -> QuantizerOutput:
        """Quantize the encoder output z_e (B, D, h, w); in training mode, also update the codebook.

        Axes: B batch, D code dimension, h and w the code map's height and width, K codebook size, N = B*h*w.
        """
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            z = rearrange(z_e.float(), "b d h w -> (b h w) d")  # (N, D)
            if self.training and not self._known_initialized:
                if not bool(self.initialized):  # reads the device once per fit, not once per step
                    self._initialize(z)
                self._known_initialized = True
            indices = self.quantize(z)  # (N,)
            counts = torch.bincount(indices, minlength=self.codebook_size).float()  # (K,)
            # look the codes up before this step updates the codebook (as encodec's EuclideanCodebook does): the
            # decoder and the losses see the vectors the indices were chosen for, not their EMA-moved values or,
            # for a code restarted in this step, a random encoder output (a restarted code can hold vectors of
            # its batch only when dead_code_threshold > 1: restarts reset the usage to the threshold, so with 1
            # a code is restarted only in a batch that assigned it nothing)
            e = self.dequantize(indices).float()  # (N, D)
            if self.training:
                self._update(z, indices, counts)
            commitment_loss = F.mse_loss(z, e.detach())
            codebook_loss = z.new_zeros(()) if self.ema else F.mse_loss(e, z.detach())
            z_q = z + (e - z).detach()  # (N, D) straight-through estimator
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            b, _, h, w = z_e.shape
            return QuantizerOutput(
                quantized=rearrange(z_q, "(b h w) d -> b d h w", b=b, h=h, w=w),
                indices=rearrange(indices, "(b h w) -> b h w", b=b, h=h, w=w),
                commitment_loss=commitment_loss,
                codebook_loss=codebook_loss,
                perplexity=perplexity,
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._known_initialized = False  # the loaded buffer decides again

    @torch.no_grad()
    def _initialize(self, z: Tensor) -> None:
        """Codebook <- K random encoder outputs of the first batch, each counted as used once.

        A usage of one (not the first batch's counts, which take hundreds of steps to decay) lets a code that the
        drifting encoder outputs leave behind be restarted within a few steps.
        """
        self.codebook.data.copy_(_sample_rows(_gather_rows(z), self.codebook_size))
        self.usage.fill_(1.0)
        self.ema_sum.copy_(self.codebook.data)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, z: Tensor, indices: Tensor, counts: Tensor) -> None:
        """EMA of usage (both modes) and of the codebook (EMA mode), then restart the dead codes."""
        counts = _all_reduce_(counts.clone())  # (K,)
        self.usage.lerp_(counts, 1 - self.decay)
        if self.ema:
            sums = _all_reduce_(torch.zeros_like(self.ema_sum).index_add_(0, indices, z))  # (K, D)
            self.ema_sum.lerp_(sums, 1 - self.decay)
            n = self.usage.sum()
            smoothed = (self.usage + self.eps) / (n + self.codebook_size * self.eps) * n  # (K,) Laplace smoothing
            self.codebook.data.copy_(self.ema_sum / smoothed[:, None])
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(z)

    @torch.no_grad()
    def _restart_dead_codes(self, z: Tensor) -> None:
        dead = self.usage < self.dead_code_threshold  # (K,) bool
        # torch.where keeps this free of host synchronization: every code gets a candidate, only dead ones take it
        candidates = _sample_rows(_gather_rows(z), self.codebook_size)  # (K, D)
        self.codebook.data.copy_(torch.where(dead[:, None], candidates, self.codebook.data))
        self.ema_sum.copy_(torch.where(dead[:, None], candidates * self.dead_code_threshold, self.ema_sum))
        self.usage.copy_(torch.where(dead, torch.full_like(self.usage, self.dead_code_threshold), self.usage))


class CodeUsage:
    """Counts how often each code is used over many batches (an epoch): perplexity and distinct codes used."""

    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.float64)  # (K,) on the indices' device once updated

    def update(self, indices: Tensor) -> None:
        """Add the indices (any shape) of one batch; stays on their device (no host synchronization)."""
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).double()
        self.counts = counts + self.counts.to(counts.device)

    @property
    def codes_used(self) -> int:
        return int((self.counts > 0).sum())

    @property
    def perplexity(self) -> float:
        probs = self.counts / self.counts.sum().clamp(min=1)
        return float(torch.exp(-(probs * torch.log(probs + 1e-12)).sum()))
