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

Location-dependent conditioning (``condition_codebook_size`` > 0; the paper's section 2.3): the prior of the bottom
level of a two-level VQ-VAE is also given the top level's code map, ``condition`` (B, h / scale, w / scale), which a
small network learned with it (:class:`vqvae_prior.conditioning.ConditionNetwork`) brings to the bottom grid and every
gated layer adds through a 1x1 convolution. It is known in full before sampling: the bottom prior at a position sees
the whole top map.

Pixels with several channels (``image_channels`` G > 1, RGB pixels as codes: ``vqvae_prior.pixels``): the code
map (h, w*G) holds each pixel's G values side by side; each is embedded by its own table, the features are split
into G groups, and the horizontal stack and the head are channel-masked (``vqvae_prior.layers.channel_mask``) so
that the logits of channel g of a pixel see the pixels before it and the channels before g of the pixel itself
(PixelCNN paper, section 3.4).

Sampling: :meth:`AutoregressivePrior.sample` runs the samplers of ``vqvae_prior.sampling``: the reference sampler
runs the full network once per position (the specification); the cached one (the default on a CPU) computes this
network one position at a time (``vqvae_prior.sampling.cached.GatedPixelCNNState``, registered below), from the
kernels as the layers and the head lay them out (:meth:`GatedPixelCNN.sampling_weights`, :meth:`Head.step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vqvae_prior.conditioning import ConditionNetwork
from vqvae_prior.errors import UsageError
from vqvae_prior.layers import GatedLayer, GatedLayerWeights, channel_groups, channel_mask, with_bias
from vqvae_prior.sampling import sample
from vqvae_prior.sampling.cached import STEP_FORMS, GatedPixelCNNState

__all__ = ["AutoregressivePrior", "GatedPixelCNN", "Head", "PriorConfig", "SamplingWeights"]


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
    image_channels: int = 1  # G > 1: G values per position (RGB pixels), predicted in order with channel masks
    condition_codebook_size: int = 0  # > 0: conditioned on a code map of these K codes (a top level), else not
    condition_scale: int = 2  # the code map's size over the conditioning map's (a power of 2)

    def __post_init__(self) -> None:
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.num_classes < 0 or self.num_layers < 1 or self.channels < 1:
            raise ValueError(f"invalid prior config {self}")
        G = self.image_channels
        if G < 1 or self.channels % G or self.head_channels % G:
            raise ValueError(f"channels ({self.channels}) and head_channels ({self.head_channels}) must be "
                             f"multiples of image_channels ({G})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.condition_codebook_size < 0 or self.condition_codebook_size == 1:
            raise ValueError(f"condition_codebook_size must be 0 (none) or >= 2, got {self.condition_codebook_size}")
        if self.condition_scale < 1 or self.condition_scale & (self.condition_scale - 1):
            raise ValueError(f"condition_scale must be a power of 2, got {self.condition_scale}")
        if self.condition_codebook_size and self.image_channels > 1:
            raise ValueError("a conditioning code map goes with code maps of one value per position")


class Head(nn.Sequential):
    """ReLU, 1x1, ReLU, 1x1: the summed skip outputs (B, C, h, w) -> logits (B, G*K, h, w), G = ``groups`` image
    channels (1 but for RGB pixels), the K logits of image channel g at g*K .. (g+1)*K - 1. With G > 1 both 1x1
    convolutions are channel-masked (type B: image channel g's features see those of channels <= g)."""

    def __init__(self, channels: int, hidden: int, codebook_size: int, groups: int = 1) -> None:
        super().__init__(
            nn.ReLU(), nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, codebook_size * groups, 1)
        )
        self.groups = groups
        if groups > 1:
            hidden_groups = channel_groups(hidden, groups)
            logit_groups = torch.arange(codebook_size * groups) // codebook_size
            self.register_buffer("in_mask", channel_mask(hidden_groups, channel_groups(channels, groups), "B"))
            self.register_buffer("out_mask", channel_mask(logit_groups, hidden_groups, "B"))

    def weights(self) -> tuple[Tensor, Tensor]:
        """The two 1x1 kernels (H, C, 1, 1), (G*K, H, 1, 1), channel-masked when G > 1."""
        _, conv_in, _, conv_out = self
        if self.groups == 1:
            return conv_in.weight, conv_out.weight
        return conv_in.weight * self.in_mask[..., None, None], conv_out.weight * self.out_mask[..., None, None]

    def forward(self, skips: Tensor) -> Tensor:
        if self.groups == 1:
            return super().forward(skips)
        _, conv_in, _, conv_out = self
        w_in, w_out = self.weights()
        return F.conv2d(F.relu(F.conv2d(F.relu(skips), w_in, conv_in.bias)), w_out, conv_out.bias)

    def step_weights(self) -> tuple[Tensor, Tensor]:
        """The two 1x1 convolutions as :meth:`step` multiplies by them: (C+1, H), (H+1, G*K), transposed to (in, out),
        each bias as one more row (:func:`with_bias`)."""
        _, conv_in, _, conv_out = self
        w_in, w_out = (rearrange(w, "o i 1 1 -> i o") for w in self.weights())  # (C, H), (H, G*K)
        return with_bias(w_in, conv_in.bias), with_bias(w_out, conv_out.bias)

    def step(self, n: int, weights: tuple[Tensor, Tensor] | None = None) -> Callable[[Tensor], Tensor]:
        """The head at one position of n code maps, for the cached sampler: ``skips`` (n, C + 1), the summed skip
        outputs and a column of ones (put through the ReLU in place) -> logits (n, G*K). Its 1x1 convolutions are two
        matrix products whose weights (:meth:`step_weights`, or ``weights`` when already prepared) carry the bias as
        one more row, for the column of ones; the hidden units have a buffer of their own, with its column of ones."""
        w_in, w_out = self.step_weights() if weights is None else weights  # (C+1, H), (H+1, G*K)
        hidden = w_in.new_ones(n, w_in.shape[1] + 1)  # (n, H + 1)
        units = hidden[:, :-1]  # (n, H)

        def head(skips: Tensor) -> Tensor:
            torch.mm(skips.relu_(), w_in, out=units)  # (n, H); relu(1) = 1
            return torch.mm(hidden.relu_(), w_out)  # (n, G*K)

        return head


class AutoregressivePrior(nn.Module):
    """What every prior over code maps shares, whatever its network: class labels and their null class, the
    negative log-likelihood (with label dropout in training) and sampling. A subclass sets ``self.config`` (with
    ``codebook_size``, ``num_classes`` and ``label_dropout``) and ``self.embedding`` (the codes' embedding) and
    defines :meth:`logits_from_embeddings`; its step-by-step form, if it has one, is registered with the cached
    sampler (``vqvae_prior.sampling.cached.STEP_FORMS``)."""

    config: Any
    embedding: nn.Embedding
    levels = 1  # code maps of one level (vqvae_prior.hierarchy.HierarchicalPrior: two)

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
        """Labels (B,) int64 on the model's device, from a list or a 1-D tensor of class indices; a clear error
        (:class:`UsageError`) when they are missing, extra, not whole numbers, not one per sample or out of
        range."""
        K = self.config.num_classes
        if K == 0:
            if labels is not None:
                raise UsageError("labels: this prior is unconditional: pass labels=None")
            return None
        if labels is None:
            raise UsageError(f"labels: this prior is class-conditional ({K} classes): pass labels, one per sample")
        try:
            found = torch.as_tensor(labels, device=self.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UsageError(f"labels: expected class indices 0 .. {K - 1}, one per sample; got {labels!r:.80}") from e
        if found.dtype == torch.bool or found.is_floating_point() or found.is_complex() or found.ndim != 1:
            raise UsageError(f"labels: expected whole class indices 0 .. {K - 1}, one per sample (B,); got "
                             f"{found.dtype} {tuple(found.shape)}")
        if found.shape[0] != batch_size:
            raise UsageError(f"labels: expected {batch_size} labels, one per sample, got {found.shape[0]}")
        if found.numel() and (found.min() < 0 or found.max() >= K):
            raise UsageError(f"labels must be in [0, {K}), got {found.tolist()}")
        return found.long()

    @property
    def condition_scale(self) -> int | None:
        """The code map's size over that of the code map it is conditioned on (a top level's), or None: a prior not
        conditioned on one."""
        return self.config.condition_scale if getattr(self.config, "condition_codebook_size", 0) else None

    def check_condition(self, condition: Tensor | None, batch_size: int, shape: tuple[int, int]) -> Tensor | None:
        """The conditioning code maps (B, h / scale, w / scale) int64 on the model's device, of code maps of
        ``shape`` (h, w); a clear error when they are missing, extra, of another shape or out of range."""
        scale = self.condition_scale
        if scale is None:
            if condition is not None:
                raise ValueError("this prior is not conditioned on a code map: pass condition=None")
            return None
        expected = (batch_size, shape[0] // scale, shape[1] // scale)
        if condition is None:
            raise ValueError(f"this prior is conditioned on the top code maps {expected}: pass condition")
        if shape[0] % scale or shape[1] % scale:
            raise ValueError(f"code maps {tuple(shape)} of a prior conditioned at scale {scale} must have sides "
                             f"divisible by {scale}")
        condition = torch.as_tensor(condition, device=self.device)
        if condition.is_floating_point() or tuple(condition.shape) != expected:
            raise ValueError(f"condition must be integer code maps {expected}, got {condition.dtype} "
                             f"{tuple(condition.shape)}")
        K = self.config.condition_codebook_size
        if condition.numel() and (condition.min() < 0 or condition.max() >= K):
            raise ValueError(f"condition codes must be in [0, {K})")
        return condition.long()

    @property
    def image_channels(self) -> int:
        """G: values per position of the image, laid side by side in the code map (RGB pixels: 3), else 1."""
        return getattr(self.config, "image_channels", 1)

    def embed(self, indices: Tensor) -> Tensor:
        """Embedded code maps (B, C, h, w) of indices (B, h, w*G): with G > 1, the G values of a position (each in
        [0, K)) are embedded by G tables of C / G channels each (rows g*K .. (g+1)*K - 1), image channel g's
        embedding in feature channels of group g."""
        return rearrange(self.embedding(self.embedding_rows(indices)), "b h w g d -> b (g d) h w")  # (B, C, h, w)

    def embedding_rows(self, indices: Tensor) -> Tensor:
        """The embedding rows (B, h, w, G) of indices (B, h, w*G): image channel g's value v is row g*K + v."""
        G, K = self.image_channels, self.config.codebook_size
        return rearrange(indices, "b h (w g) -> b h w g", g=G) + torch.arange(G, device=indices.device) * K

    def forward(self, indices: Tensor, labels: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w*G) of each position (and image channel) given those before it in raster order (and
        given the whole conditioning code map ``condition`` (B, h / scale, w / scale) of a prior conditioned on one).

        Axes: B batch, h and w the code map's height and width (any, square or not), C channels, K codebook size,
        G image channels (RGB pixels: 3, the map (h, w*G) holding each pixel's R, G, B side by side; else 1).
        """
        return self._code_map(self.logits_from_codes(indices, labels, condition))

    def code_map_logits(self, x: Tensor, labels: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
        """Logits (B, K, h, w*G) laid out as the code map, of embedded code maps x (B, C, h, w): each pixel's G
        channels side by side, as :meth:`forward` returns them (differentiable in x)."""
        return self._code_map(self.logits_from_embeddings(x, labels, condition))

    def _code_map(self, logits: Tensor) -> Tensor:
        """Logits (B, G*K, h, w) laid out as the code map, (B, K, h, w*G)."""
        return rearrange(logits, "b (g k) h w -> b k h (w g)", g=self.image_channels)

    def logits_from_codes(self, indices: Tensor, labels: Tensor | None = None,
                          condition: Tensor | None = None) -> Tensor:
        """Logits (B, G*K, h, w) of code maps (B, h, w*G): those of their embeddings; a subclass may compute the
        same function from the codes themselves, more cheaply."""
        return self.logits_from_embeddings(self.embed(indices), labels, condition)

    def logits_from_embeddings(self, x: Tensor, labels: Tensor | None = None,
                               condition: Tensor | None = None) -> Tensor:
        """Logits (B, G*K, h, w) of embedded code maps x (B, C, h, w): the differentiable part of :meth:`forward`."""
        raise NotImplementedError

    def nll(self, indices: Tensor, labels: Tensor | None = None, condition: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood in nats per code (a scalar) of indices (B, h, w).

        In training mode with ``label_dropout`` > 0, each label is first replaced by the null class with that
        probability (drawn from torch's global generator); in eval mode the labels are used as they are.
        """
        if self.training and self.null_label is not None and labels is not None:
            dropped = torch.rand(labels.shape, device=labels.device) < self.config.label_dropout  # (B,)
            labels = torch.where(dropped, torch.full_like(labels, self.null_label), labels)
        logits = self(indices, labels, condition)  # (B, K, h, w*G)
        # rows of K logits: a view of channels-last logits (the layout the gated prior's activations take from the
        # embedding), which log_softmax then reads in place, without the copy it makes of logits split over channels
        return F.cross_entropy(rearrange(logits, "b k h w -> (b h w) k"), indices.flatten())

    def bits_per_code(self, indices: Tensor, labels: Tensor | None = None,
                      condition: Tensor | None = None) -> Tensor:
        """Mean negative log2-likelihood per code (a scalar) of indices (B, h, w)."""
        return self.nll(indices, labels, condition) / math.log(2)

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
        condition: Tensor | None = None,
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
            method: "cached" (fast; a prior with a step-by-step form), "fused" (the same with one GPU kernel per
                position; CUDA), "reference" (one full forward pass per position), or "auto" (the default): fused
                on CUDA where the prior has it, else cached where it has it, else the reference
                (``vqvae_prior.sampling``).
            guidance: classifier-free guidance weight w >= 0 (see ``vqvae_prior.prior``); > 0 needs labels and a
                prior fitted with ``label_dropout`` > 0, and costs twice the sampling work.
            condition: (n, h / scale, w / scale) the top code maps that a prior conditioned on them is given, whole.

        Returns:
            (n, h, w) int64 indices.

        Samples in eval mode (no dropout), whatever the model's mode; the mode is restored afterwards.
        """
        return sample(self, n, shape, labels, temperature, generator, given, method, guidance, condition)


class GatedPixelCNN(AutoregressivePrior):
    """Gated PixelCNN over code maps: ``forward(indices (B, h, w*G), labels (B,)) -> logits (B, K, h, w*G)``
    (G = ``config.image_channels``, 1 but for RGB pixels)."""

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        C, G = config.channels, config.image_channels
        self.embedding = nn.Embedding(config.codebook_size * G, C // G)  # G tables of C / G channels
        K_s = config.condition_codebook_size
        self.condition = ConditionNetwork(K_s, C, config.condition_scale) if K_s else None
        self.layers = nn.ModuleList(
            GatedLayer(
                C, config.first_kernel_size if i == 0 else config.kernel_size, i == 0, self.label_rows,
                config.dropout, groups=G, condition_channels=C if K_s else 0,
            )
            for i in range(config.num_layers)
        )
        self.head = Head(C, config.head_channels, config.codebook_size, groups=G)

    def logits_from_embeddings(self, x: Tensor, labels: Tensor | None = None,
                               condition: Tensor | None = None) -> Tensor:
        """Logits (B, G*K, h, w) of embedded code maps x (B, C, h, w): the differentiable part of
        :meth:`forward`."""
        return self._logits(labels, self.condition_map(condition), x, x)

    def condition_map(self, condition: Tensor | None) -> Tensor | None:
        """The conditioning map (B, C, h, w) of top code maps (B, h / scale, w / scale), or None without them."""
        if (condition is None) != (self.condition is None):
            raise ValueError("pass condition (the top code maps) to a prior conditioned on them, and only there")
        return None if condition is None else self.condition(condition)

    def logits_from_codes(self, indices: Tensor, labels: Tensor | None = None,
                          condition: Tensor | None = None) -> Tensor:
        """Logits (B, G*K, h, w) of code maps (B, h, w*G): :meth:`logits_from_embeddings` of their embeddings, with
        the first layer's convolutions of the embedded codes computed from the codes
        (``GatedLayer.convolutions_from_codes``: a table row per kernel tap, far fewer products)."""
        first = self.layers[0].convolutions_from_codes(self.embedding_rows(indices), self.embedding.weight)
        return self._logits(labels, self.condition_map(condition), convolutions=first)

    def _logits(self, labels: Tensor | None, condition: Tensor | None, v: Tensor | None = None,
                h: Tensor | None = None, convolutions: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The layers and the head, from the first layer's inputs v, h (B, C, h, w) or its convolutions, given the
        conditioning map (B, C, h, w) or None."""
        skips = None
        for layer in self.layers:
            v, h, skip = layer(v, h, labels, convolutions, condition)  # (B, C, h, w) each
            skips = skip.clone() if skips is None else skips.add_(skip)  # summed in place: one tensor, not one a layer
            convolutions = None
        return self.head(skips)  # (B, G*K, h, w)

    def sampling_weights(self) -> SamplingWeights:
        """Every kernel laid out for the cached sampler's step-by-step form (which keeps them until a weight
        changes: ``vqvae_prior.sampling.cached.prepared_weights``)."""
        layers = [
            layer.sampling_weights(self.embedding.weight if i == 0 else None)  # the first layer's input: codes
            for i, layer in enumerate(self.layers)
        ]
        skip = torch.cat([weights.skip for weights in layers])  # (L*(C+1), C): every layer's, stacked
        return SamplingWeights(layers, skip, self.head.step_weights())


class SamplingWeights(NamedTuple):
    """:meth:`GatedPixelCNN.sampling_weights`: the kernels of its step-by-step form."""

    layers: list[GatedLayerWeights]  # each layer's (the first one's vertical convolution as tap tables)
    skip: Tensor  # (L*(C+1), C): every layer's skip kernel with its bias row, stacked
    head: tuple[Tensor, Tensor]  # Head.step_weights()


# the cached sampler's step-by-step form of this network (the fused sampler fuses the same form's steps)
STEP_FORMS[GatedPixelCNN] = GatedPixelCNNState
