"""Masked and gated convolutions of PixelCNN (van den Oord et al. 2016a, 2016b).

- :class:`MaskedConv2d`: the plain PixelCNN convolution, its kernel masked so a position sees only the positions
  before it in raster order: type A hides the centre (first layer), type B shows it (later layers). A stack of
  these has a blind spot (positions up and to the right that it never sees); it is kept here for comparison.
- :class:`GatedLayer`: one layer of the gated PixelCNN. A vertical stack sees the rows above, a horizontal stack
  the positions to the left in the current row. The vertical stack's pre-activation is shifted down one row, put
  through a 1x1 convolution and added to the horizontal stack, which removes the blind spot. Both stacks use gated
  units ``tanh(a) * sigmoid(b)``; a class label adds a learned bias inside every gate of every layer. The
  horizontal stack has a residual connection (not in the first layer, whose centre is hidden) and emits a skip
  output for the network's head.

Both stacks are implemented with unmasked convolutions on padded inputs ("shifted convolutions"): the vertical
kernel is ``(k//2 + 1, k)`` padded ``k//2`` rows above, so output row r sees input rows r-k//2..r; the horizontal
kernel is ``(1, k//2 + 1)`` (type B) or ``(1, k//2)`` (type A, its output shifted right by one) padded on the left.
The vertical stack's output at row r reaches the horizontal stack only at row r + 1.

Sampling: :meth:`GatedLayer.sampling_weights` lays the layer's kernels out, with its biases combined, as the cached
sampler's step-by-step form multiplies by them (``vqvae_prior.sampling.cached``, which computes
:meth:`GatedLayer.forward` one raster position at a time from cached rows); it lives here, beside ``forward``, so
that a change to the layer changes both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "GatedLayer", "GatedLayerWeights", "MaskedConv2d", "channel_groups", "channel_mask", "gate", "shift_down",
    "tap_sum", "with_bias",
]


def gate(x: Tensor, dim: int = 1) -> Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)`` of x split in two halves (a, b) along ``dim``."""
    if x.requires_grad and torch.is_grad_enabled():
        return _Gate.apply(x, dim)
    t, s = _tanh_sigmoid(x, dim)  # without autograd (sampling): no Function's overhead, about 9 us a call
    return t * s


def _tanh_sigmoid(x: Tensor, dim: int, training: bool = False) -> tuple[Tensor, Tensor]:
    """tanh(a), sigmoid(b) of x's two halves (a, b) along ``dim``. ``training`` on the CPU: tanh(a) as
    2 sigmoid(2a) - 1, equal to rounding (within 3e-7), because PyTorch's CPU sigmoid is 4.6x faster than its tanh
    (0.24 against 1.1 ms on 6,272 x 64 floats, 2 cores: the gate 0.64 ms instead of 1.55, BENCHMARKS.md). Sampling
    keeps torch.tanh, as the cached and fused samplers compute it, so that they stay exactly equal to the model."""
    a, b = x.chunk(2, dim=dim)
    if training and x.device.type == "cpu":
        return torch.sigmoid(a * 2).mul_(2).sub_(1), torch.sigmoid(b)
    return torch.tanh(a), torch.sigmoid(b)


class _Gate(torch.autograd.Function):
    """:func:`gate` with its backward written into one gradient tensor of x's layout, half by half (autograd's own
    backward of chunk, tanh, sigmoid and the product makes four tensors and concatenates two of them)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        t, s = _tanh_sigmoid(x, dim, training=True)
        ctx.save_for_backward(t, s)
        ctx.dim, ctx.shape, ctx.stride = dim, x.shape, x.stride()
        return t * s

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        t, s = ctx.saved_tensors
        grad_x = grad.new_empty_strided(ctx.shape, ctx.stride)
        grad_a, grad_b = grad_x.chunk(2, dim=ctx.dim)
        torch.ops.aten.tanh_backward.grad_input(torch.mul(grad, s, out=grad_a), t, grad_input=grad_a)  # g s (1 - t^2)
        torch.ops.aten.sigmoid_backward.grad_input(torch.mul(grad, t, out=grad_b), s, grad_input=grad_b)  # g t s (1-s)
        return grad_x, None


def shift_down(x: Tensor, rows: int = 1) -> Tensor:
    """x (B, C, H, W) moved down by ``rows`` >= 0: zeros in the top rows, the last ``rows`` rows cut."""
    if rows < 0:
        raise ValueError(f"shift_down moves rows down: rows must be >= 0, got {rows}")
    return _ShiftDown.apply(x, rows)


class _ShiftDown(torch.autograd.Function):
    """:func:`shift_down` as one copy into a tensor of x's layout, and its backward as one copy back (a pad and a
    slice would fill a taller tensor, hand the next convolution a strided view that it copies again, and fill one more
    in the backward)."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: int) -> Tensor:
        H = x.shape[2]
        ctx.kept = kept = max(H - rows, 0)
        out = torch.empty_like(x)  # (B, C, H, W)
        out[:, :, : H - kept].zero_()
        out[:, :, H - kept :].copy_(x[:, :, :kept])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        H, kept = grad.shape[2], ctx.kept
        grad_x = torch.empty_like(grad)  # (B, C, H, W)
        grad_x[:, :, :kept].copy_(grad[:, :, H - kept :])
        grad_x[:, :, kept:].zero_()
        return grad_x, None


def channel_groups(channels: int, groups: int, halves: int = 1) -> Tensor:
    """(channels,) the image channel (0 .. groups-1) that each of ``channels`` feature channels belongs to: each of
    the ``halves`` consecutive halves (a gate's two, a layer's residual and skip) split into ``groups`` equal runs,
    R's first (PixelCNN paper, section 3.4)."""
    per_half = channels // halves
    return torch.arange(channels) % per_half // (per_half // groups)


def channel_mask(out_groups: Tensor, in_groups: Tensor, mask_type: str) -> Tensor:
    """(out, in) float: 1 where an output channel may see an input channel of the same position: a channel of
    image channel g sees image channels < g (type A) or <= g (type B)."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    sees = out_groups[:, None] > in_groups[None] if mask_type == "A" else out_groups[:, None] >= in_groups[None]
    return sees.float()


def tap_sum(levels: Tensor, weight: Tensor, embedding: Tensor, H: int, W: int) -> Tensor:
    """The unpadded convolution (B, O, H, W), without bias, with ``weight`` (O, C, R, S) of embedded codes,
    computed from the codes ``levels`` (B, G, H + R - 1, W + S - 1): rows of ``embedding`` (G*K, C/G), or
    ``len(embedding)`` for an all-zero vector (padding); image channel g's vector in channels g*C/G .. (g+1)*C/G.

    Each tap (r, s) is a table (:func:`tap_tables`); the output at (h, w) is the sum over the taps and image channels
    of the rows the codes at (h + r, w + s) pick (one ``F.embedding_bag``, whose gradient reaches the embedding and
    the weight through the tables)."""
    O, C, R, S = weight.shape
    rows = embedding.shape[0] + 1  # rows of each tap's table
    taps = [levels[:, :, r : r + H, s : s + W] + (r * S + s) * rows for r in range(R) for s in range(S)]
    ids = rearrange(torch.stack(taps, dim=-1), "b g h w t -> (b h w) (t g)")  # (B*H*W, R*S*G)
    out = F.embedding_bag(ids, tap_tables(weight, embedding), mode="sum")  # (B*H*W, O)
    return rearrange(out, "(b h w) o -> b o h w", h=H, w=W)


def tap_tables(weight: Tensor, embedding: Tensor) -> Tensor:
    """The tables of :func:`tap_sum`, (R*S*(G*K + 1), O): tap t = r*S + s's are rows t*(G*K + 1) .., its rows
    ``embedding @ weight[:, channels of g, r, s].T`` for the G*K rows of ``embedding`` (G*K, C/G), then a zero row."""
    O, C, R, S = weight.shape
    G = C // embedding.shape[1]
    tables = torch.einsum("gkd,ogdrs->rsgko", embedding.view(G, -1, C // G), weight.view(O, G, C // G, R, S))
    return F.pad(tables.reshape(R * S, -1, O), (0, 0, 0, 1)).reshape(-1, O)  # a zero row after each tap's


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution whose kernel sees only positions before the centre in raster order (type A), or before
    and at it (type B)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.zeros(kernel_size, kernel_size)
        mask[: kernel_size // 2] = 1  # the rows above
        mask[kernel_size // 2, : kernel_size // 2 + (mask_type == "B")] = 1  # left of the centre (and the centre)
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer with a vertical and a horizontal stack.

    Args:
        channels: C, channels of both stacks.
        kernel_size: k (odd); the vertical kernel is (k//2 + 1, k), the horizontal (1, k//2 + 1), or (1, k//2)
            in the first layer.
        first: the first layer (mask type A): its horizontal stack does not see the current position and it has no
            residual connection.
        num_classes: > 0 adds a learned per-class bias inside every gate (class conditioning).
        condition_channels: > 0 adds a 1x1 convolution of a conditioning map of that many channels inside every
            gate of both stacks (location-dependent conditioning: the paper's V_f * s and V_g * s).
        dropout: probability of zeroing a gated horizontal unit before the residual / skip convolution, in training
            only (PixelCNN++'s regularizer, there inside each gated ResNet block); elementwise, so causality holds.
        groups: G, the image channels of each position (3 for RGB pixels), ordered R -> G -> B within it. With
            G > 1 every feature channel belongs to one image channel (:func:`channel_groups`) and the horizontal
            stack's convolutions are masked at the current position (:func:`channel_mask`; PixelCNN paper, section
            3.4): the first layer's kernel then includes the current column with mask A (image channel g sees the
            channels before g of its own position), later layers' with mask B, and the 1x1 output convolution is
            masked B. The vertical stack sees only the rows above and needs no mask.
    """

    def __init__(
        self, channels: int, kernel_size: int, first: bool, num_classes: int = 0, dropout: float = 0.0,
        groups: int = 1, condition_channels: int = 0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        if groups < 1 or channels % groups:
            raise ValueError(f"channels ({channels}) must be a multiple of groups ({groups})")
        self.channels, self.kernel_size, self.first, self.groups = channels, kernel_size, first, groups
        self.pad = kernel_size // 2
        self.v_conv = nn.Conv2d(channels, 2 * channels, (self.pad + 1, kernel_size))
        sees_current = not first or groups > 1  # the current column: type B, or type A within channel groups
        self.h_conv = nn.Conv2d(channels, 2 * channels, (1, self.pad + sees_current))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, 2 * channels, 1)  # residual and skip outputs, in one 1x1 convolution
        self.label_bias = nn.Embedding(num_classes, 4 * channels) if num_classes > 0 else None
        # the vertical stack's 2C channels, then the horizontal stack's
        self.condition = nn.Conv2d(condition_channels, 4 * channels, 1) if condition_channels > 0 else None
        self.dropout = nn.Dropout(dropout)
        if groups > 1:
            out_groups, in_groups = channel_groups(2 * channels, groups, halves=2), channel_groups(channels, groups)
            h_mask = torch.ones_like(self.h_conv.weight)  # (2C, C, 1, p+1): earlier columns all seen
            h_mask[..., -1] = channel_mask(out_groups, in_groups, "A" if first else "B")[:, :, None]
            self.register_buffer("h_mask", h_mask)
            self.register_buffer("out_mask", channel_mask(out_groups, in_groups, "B")[:, :, None, None])

    @property
    def h_weight(self) -> Tensor:
        """The horizontal convolution's kernel (2C, C, 1, kw), channel-masked when groups > 1."""
        return self.h_conv.weight * self.h_mask if self.groups > 1 else self.h_conv.weight

    @property
    def out_weight(self) -> Tensor:
        """The 1x1 output convolution's kernel (2C, C, 1, 1), channel-masked when groups > 1."""
        return self.h_out.weight * self.out_mask if self.groups > 1 else self.h_out.weight

    def forward(
        self, v: Tensor | None, h: Tensor | None, labels: Tensor | None = None,
        convolutions: tuple[Tensor, Tensor] | None = None, condition: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One layer on the vertical and horizontal inputs v, h (B, C, H, W); ``convolutions``: the vertical and
        horizontal convolutions of them (B, 2C, H, W) each, when already computed (:meth:`convolutions_from_codes`;
        then v, and h in the first layer, are not read; the label bias is added to them in place); ``condition``:
        the conditioning map (B, C_s, H, W) of a layer built with ``condition_channels``.

        Returns:
            (v, h, skip), each (B, C, H, W): the vertical and horizontal stacks' outputs and the skip output.
        """
        if convolutions is None:
            W = h.shape[3]
            v_pre = self.v_conv(F.pad(v, (self.pad, self.pad, self.pad, 0)))  # (B, 2C, H, W) sees rows <= r
            h_pre = F.conv2d(F.pad(h, (self.pad, 0, 0, 0)), self.h_weight, self.h_conv.bias)[..., :W]  # (B, 2C, H, W)
        else:
            v_pre, h_pre = convolutions
        # h_pre sees columns <= c (< c in the first layer without channel groups)
        h_pre = self.v_to_h(shift_down(v_pre)).add_(h_pre)  # rows < r reach the horizontal stack
        bias_v, bias_h = self.label_biases(labels)  # (B, 2C) each, or None
        if bias_v is not None:  # added in place: no new tensors, and their layout kept
            v_pre, h_pre = v_pre.add_(bias_v[:, :, None, None]), h_pre.add_(bias_h[:, :, None, None])
        if (condition is None) != (self.condition is None):
            raise ValueError("a conditioning map goes with a layer built with condition_channels, and only there")
        if condition is not None:  # location-dependent: after the vertical stack reached the horizontal one
            cond_v, cond_h = self.condition(condition).chunk(2, dim=1)  # (B, 2C, H, W) each
            v_pre, h_pre = v_pre.add_(cond_v), h_pre.add_(cond_h)
        residual, skip = F.conv2d(self.dropout(gate(h_pre)), self.out_weight, self.h_out.bias).chunk(2, dim=1)
        # residual, skip: (B, C, H, W) each
        # no residual on the first layer: its input holds the current position, which it must not see
        h_next = residual if self.first else h + residual
        return gate(v_pre), h_next, skip

    def label_biases(self, labels: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """The class biases (B, 2C) of the vertical and of the horizontal pre-activations of labels (B,); None, None
        for an unconditional layer."""
        if self.label_bias is None:
            return None, None
        bias_v, bias_h = self.label_bias(labels).chunk(2, dim=1)
        return bias_v, bias_h

    def convolutions_from_codes(self, levels: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """The vertical and horizontal convolutions (B, 2C, H, W) each, biases included, that :meth:`forward`
        computes of embedded codes, computed from the codes: ``levels`` (B, H, W, G), rows of ``embedding``
        (G*K, C/G) whose vectors go to channels g*C/G .. (g+1)*C/G (as ``AutoregressivePrior.embed`` lays them out).

        A convolution of embedded codes is, for each kernel tap, a table look-up: the tap's (2C, C) weights times
        each row of the embedding, (G*K, 2C), summed over the taps (:func:`tap_sum`). The same function with far
        fewer products: the first layer's 4x7 kernel on 64 channels costs 28 table rows of 2C additions a position
        instead of 28 * C * 2C multiply-adds."""
        H, W = levels.shape[1:3]
        levels = rearrange(levels, "b h w g -> b g h w")
        blank = embedding.shape[0]  # padding: an all-zero row
        p = self.pad
        v_pre = tap_sum(F.pad(levels, (p, p, p, 0), value=blank), self.v_conv.weight, embedding, H, W)
        h_pre = tap_sum(F.pad(levels, (p, 0), value=blank), self.h_weight, embedding, H, W)
        return v_pre + self.v_conv.bias[:, None, None], h_pre + self.h_conv.bias[:, None, None]

    def sampling_weights(self, embedding: Tensor | None = None) -> GatedLayerWeights:
        """This layer's kernels laid out for the cached sampler's step (eval mode: channel masks applied); with
        ``embedding``, the vertical convolution of embedded codes as tap tables (:meth:`convolutions_from_codes`)."""
        C = self.channels
        out_weight_t = with_bias(rearrange(self.out_weight, "o i 1 1 -> i o"), self.h_out.bias)  # (C+1, 2C)
        if embedding is None:
            v_weight_t, tables = rearrange(self.v_conv.weight, "o c r k -> (r k c) o"), None  # ((p+1)*k*C, 2C)
        else:
            v_weight_t, tables = None, tap_tables(self.v_conv.weight, embedding)  # (taps*(G*K + 1), 2C)
        return GatedLayerWeights(
            h=rearrange(self.h_weight, "o c 1 k -> (k c) o"),  # (kw*C, 2C), as the window lies
            vh=rearrange(self.v_to_h.weight, "o i 1 1 -> i o"),  # (2C, 2C)
            residual=out_weight_t[:, :C].contiguous(), skip=out_weight_t[:, C:].contiguous(),  # (C+1, C) each
            v=v_weight_t, tables=tables, v_bias=self.v_conv.bias, h_bias=self.v_to_h.bias + self.h_conv.bias,
            condition=None if self.condition is None else with_bias(
                rearrange(self.condition.weight, "o i 1 1 -> i o"), self.condition.bias),  # (C_s+1, 4C)
        )


class GatedLayerWeights(NamedTuple):
    """A :class:`GatedLayer`'s kernels as the cached sampler's step multiplies by them: transposed to (in, out), in
    the order its windows lie, the 1x1 output convolution's bias as one more row (:func:`with_bias`)."""

    h: Tensor  # (kw*C, 2C): the horizontal convolution
    vh: Tensor  # (2C, 2C): the vertical stack's 1x1 convolution into the horizontal one
    residual: Tensor  # (C+1, C): the output convolution's residual half, bias last
    skip: Tensor  # (C+1, C): its skip half, bias last
    v: Tensor | None  # ((p+1)*k*C, 2C): the vertical convolution; None when the input is codes (then tables)
    tables: Tensor | None  # (taps*(G*K + 1), 2C): the vertical convolution of embedded codes (:func:`tap_tables`)
    v_bias: Tensor  # (2C,)
    h_bias: Tensor  # (2C,): the biases that every horizontal pre-activation starts from
    condition: Tensor | None = None  # (C_s+1, 4C): the conditioning map's 1x1 convolution, bias last; v's 2C first


def with_bias(weight_t: Tensor, bias: Tensor) -> Tensor:
    """A matrix product's weights (I, O) with the bias (O,) as one more row, (I + 1, O): ``x @ with_bias(w, b)``, x
    (n, I + 1) ending in a column of ones, is ``x[:, :I] @ w + b``, the bias added without a copy of it per call."""
    return torch.cat([weight_t, bias[None]])
