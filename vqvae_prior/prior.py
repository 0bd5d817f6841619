"""Gated PixelCNN prior over VQ-VAE code maps (van den Oord et al. 2016b, 2017).

The prior models a grid of code indices (B, h, w), each in [0, K), autoregressively in raster order with a softmax
over the K codes at every position: p(x) = prod_i p(x_i | x_<i, label). Indices are embedded, then go through one
gated layer with mask type A (7x7 by default) and ``num_layers - 1`` gated layers of type B (3x3); each layer's skip
output is summed into a head (ReLU, 1x1, ReLU, 1x1) that gives the logits (B, K, h, w).

References:
- van den Oord et al. 2016a, "Pixel Recurrent Neural Networks" (masks A and B).
- van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders" (gated layers, vertical and
  horizontal stacks, class conditioning).
- van den Oord et al. 2017, "Neural Discrete Representation Learning" (a PixelCNN prior over VQ-VAE codes).

Deviations from the papers: the input is a learned embedding of discrete codes instead of pixel intensities; the
conditioning is a learned per-class, per-layer bias (the paper's V^T h with h a one-hot label); skip connections
from every layer feed the head, as in the authors' later PixelCNN code rather than the 2016b figure.

Classifier-free guidance (Ho and Salimans 2022, "Classifier-Free Diffusion Guidance"; used for autoregressive
token priors by e.g. Gafni et al. 2022, "Make-A-Scene"), not in the PixelCNN papers and off by default: with
``label_dropout`` p > 0 the prior also learns an unconditional model, through one more label, the null class
(index ``num_classes``), that replaces each training label with probability p. Sampling with ``guidance`` w > 0
then draws each code from the logits ``l_c + w (l_c - l_u)``, l_c given the label and l_u given the null class,
which sharpens the class; w = 0 samples the conditional model itself.

Sampling: :meth:`GatedPixelCNN.sample` runs the samplers of ``sampler.py``: the cached one (the default) drives
:meth:`GatedPixelCNN.sampling_state`, this network computed one position at a time (each layer's own step-by-step
form, :class:`vqvae_prior.layers.GatedLayerState`, and the head's); ``method="reference"`` runs the full network
once per position and is the specification the cached sampler is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vqvae_prior import sampler
from vqvae_prior.layers import GatedLayer, GatedLayerState

__all__ = ["AutoregressivePrior", "GatedPixelCNN", "GatedPixelCNNState", "Head", "PriorConfig"]


@dataclass(frozen=True)
class PriorConfig:
    """Every field needed to rebuild a :class:`GatedPixelCNN`; saved inside each checkpoint."""

    codebook_size: int  # K, must equal the VQ-VAE's
    num_classes: int = 0  # 0: unconditional
    channels: int = 64
    num_layers: int = 12  # the type-A layer and num_layers - 1 type-B layers
    first_kernel_size: int = 7
    kernel_size: int = 3
    head_channels: int = 256
    dropout: float = 0.0  # in every gated layer, training only (GatedLayer)
    label_dropout: float = 0.0  # > 0: labels replaced by the null class at this rate in training (guidance)

    def __post_init__(self) -> None:
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.num_classes < 0 or self.num_layers < 1 or self.channels < 1:
            raise ValueError(f"invalid prior config {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")


class Head(nn.Sequential):
    """ReLU, 1x1, ReLU, 1x1: the summed skip outputs (B, C, h, w) -> logits (B, K, h, w)."""

    def __init__(self, channels: int, hidden: int, codebook_size: int) -> None:
        super().__init__(
            nn.ReLU(), nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, codebook_size, 1)
        )

    def step(self) -> Callable[[Tensor], Tensor]:
        """The head at one position, skips (n, C) -> logits (n, K): its 1x1 convolutions as two matrix products
        (``torch.addmm``, as ``F.linear`` computes them), their weights read and transposed once."""
        _, conv_in, _, conv_out = self
        w_in, w_out = (rearrange(conv.weight, "o i 1 1 -> i o") for conv in (conv_in, conv_out))  # (C, H), (H, K)
        b_in, b_out = conv_in.bias, conv_out.bias

        def head(skips: Tensor) -> Tensor:
            return torch.addmm(b_out, F.relu(torch.addmm(b_in, F.relu(skips), w_in)), w_out)  # (n, K)

        return head


class AutoregressivePrior(nn.Module):
    """What every prior over code maps shares, whatever its network: class labels and their null class, the
    negative log-likelihood (with label dropout in training) and sampling. A subclass sets ``self.config`` (with
    ``codebook_size``, ``num_classes`` and ``label_dropout``) and ``self.embedding`` (the codes' embedding) and
    defines :meth:`logits_from_embeddings`; it may define ``sampling_state``, its step-by-step form, which the
    cached sampler drives (``vqvae_prior.sampler``)."""

    config: Any
    embedding: nn.Embedding

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    @property
    def null_label(self) -> int | None:
        """The label of the unconditional model (fitted with ``label_dropout`` > 0), or None: no guidance."""
        return self.config.num_classes if self.config.num_classes and self.config.label_dropout > 0 else None

    @property
    def label_rows(self) -> int:
        """Rows of a per-class table: the classes and, with label dropout, the null class."""
        return self.config.num_classes + (self.null_label is not None)

    def check_labels(self, labels: Tensor | None, batch_size: int) -> Tensor | None:
        """Labels (B,) int64 on the model's device; a clear error when they are missing, extra or out of range."""
        K = self.config.num_classes
        if K == 0:
            if labels is not None:
                raise ValueError("this prior is unconditional: pass labels=None")
            return None
        if labels is None:
            raise ValueError(f"this prior is class-conditional ({K} classes): pass labels, one per sample")
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.device).reshape(-1)
        if labels.shape[0] != batch_size:
            raise ValueError(f"expected {batch_size} labels, got {labels.shape[0]}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= K):
            raise ValueError(f"labels must be in [0, {K}), got {labels.tolist()}")
        return labels

    def forward(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w) of each position given the positions before it.

        Axes: B batch, h and w the code map's height and width (any, square or not), C channels, K codebook size.
        """
        return self.logits_from_embeddings(rearrange(self.embedding(indices), "b h w c -> b c h w"), labels)

    def logits_from_embeddings(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w) of embedded code maps x (B, C, h, w): the differentiable part of :meth:`forward`."""
        raise NotImplementedError

    def nll(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood in nats per code (a scalar) of indices (B, h, w).

        In training mode with ``label_dropout`` > 0, each label is first replaced by the null class with that
        probability (drawn from torch's global generator); in eval mode the labels are used as they are.
        """
        if self.training and self.null_label is not None and labels is not None:
            dropped = torch.rand(labels.shape, device=labels.device) < self.config.label_dropout  # (B,)
            labels = torch.where(dropped, torch.full_like(labels, self.null_label), labels)
        return F.cross_entropy(self(indices, labels), indices)

    def bits_per_code(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean negative log2-likelihood per code (a scalar) of indices (B, h, w)."""
        return self.nll(indices, labels) / math.log(2)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        shape: tuple[int, int],
        labels: Tensor | list[int] | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        given: Tensor | None = None,
        method: str = "auto",
        guidance: float = 0.0,
    ) -> Tensor:
        """Sample n code maps of the given (h, w) shape in raster order.

        Args:
            n: number of samples.
            shape: (h, w) of the code maps.
            labels: (n,) class labels of a conditional prior; None for an unconditional one.
            temperature: softmax temperature (> 0); 1 samples the model's distribution.
            generator: a ``torch.Generator`` on the model's device, for reproducible samples.
            given: optional (n, h, w) indices; entries >= 0 are kept as they are and conditioned on, entries < 0
                are sampled.
            method: "cached" (fast; a prior with ``sampling_state``), "reference" (one full forward pass per
                position), or "auto" (the default): cached where the prior has it, else the reference.
            guidance: classifier-free guidance weight w >= 0 (see ``vqvae_prior.prior``); > 0 needs labels and a
                prior fitted with ``label_dropout`` > 0, and costs twice the sampling work.

        Returns:
            (n, h, w) int64 indices.

        Samples in eval mode (no dropout), whatever the model's mode; the mode is restored afterwards.
        """
        return sampler.sample(self, n, shape, labels, temperature, generator, given, method, guidance)


class GatedPixelCNN(AutoregressivePrior):
    """Gated PixelCNN over code maps: ``forward(indices (B, h, w), labels (B,)) -> logits (B, K, h, w)``."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        C = config.channels
        self.embedding = nn.Embedding(config.codebook_size, C)
        self.layers = nn.ModuleList(
            GatedLayer(
                C, config.first_kernel_size if i == 0 else config.kernel_size, i == 0, self.label_rows,
                config.dropout,
            )
            for i in range(config.num_layers)
        )
        self.head = Head(C, config.head_channels, config.codebook_size)

    def logits_from_embeddings(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w) of embedded code maps x (B, C, h, w): the differentiable part of :meth:`forward`."""
        v, h, skips = x, x, 0
        for layer in self.layers:
            v, h, skip = layer(v, h, labels)  # (B, C, h, w) each
            skips = skips + skip
        return self.head(skips)  # (B, K, h, w)

    def sampling_state(self, n: int, shape: tuple[int, int], labels: Tensor | None = None) -> GatedPixelCNNState:
        """This network computed one position at a time, for the cached sampler (eval mode only)."""
        return GatedPixelCNNState(self, n, shape, labels)


class GatedPixelCNNState:
    """:class:`GatedPixelCNN` computed one raster position at a time: the cached sampler's view of the network
    (:class:`vqvae_prior.sampler.SamplingState`). Each layer keeps its own caches (:class:`GatedLayerState`);
    the logits at each position equal those of a full forward pass over the codes put so far."""

    def __init__(self, model: GatedPixelCNN, n: int, shape: tuple[int, int], labels: Tensor | None) -> None:
        self.embedding = model.embedding
        self.layers: list[GatedLayerState] = [layer.sampling_state(n, shape[1], labels) for layer in model.layers]
        self.head = model.head.step()

    def start_row(self, above: Tensor | None) -> None:
        """Start a row, given the codes of the row above (n, w), or None in the first row."""
        v_in = None if above is None else self.embedding(above.t())  # (w, n, C)
        for layer in self.layers:
            v_in = layer.begin_row(v_in)  # the vertical stack over the row above

    def logits(self, c: int) -> Tensor:
        """Logits (n, K) at column c of the current row, given the codes put before it."""
        skips: Tensor | int = 0
        for layer, after in zip(self.layers, self.layers[1:] + [None]):
            h, skip = layer.step(c)  # (n, C) each
            skips = skips + skip
            if after is not None:
                after.put(c, h)
        return self.head(skips)  # (n, K)

    def put(self, c: int, codes: Tensor) -> None:
        """The codes (n,) chosen at column c of the current row: the first layer's input for the columns after it."""
        self.layers[0].put(c, self.embedding(codes))  # (n, C)
