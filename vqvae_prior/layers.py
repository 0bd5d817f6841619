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

Sampling: :meth:`GatedLayer.sampling_state` gives the layer's step-by-step form, :class:`GatedLayerState`:
:meth:`GatedLayer.forward` computed one raster position at a time from cached rows, as matrix products (the cached
sampler of Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive Models"). It lives here,
beside ``forward``, so that a change to the layer changes both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "GatedLayer", "GatedLayerState", "GatedLayerWeights", "MaskedConv2d", "channel_groups", "channel_mask", "gate",
    "prepared", "shift_down", "tap_sum", "with_bias",
]

T = TypeVar("T")


def gate(x: Tensor, dim: int = 1) -> Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)`` of x split in two halves (a, b) along ``dim``."""
    if x.requires_grad and torch.is_grad_enabled():
        return _Gate.apply(x, dim)
    t, s = _tanh_sigmoid(x, dim)  # without autograd (sampling): no Function's overhead, about 9 us a call
    return t * s


def _tanh_sigmoid(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """tanh(a), sigmoid(b) of x's two halves (a, b) along ``dim``."""
    a, b = x.chunk(2, dim=dim)
    return torch.tanh(a), torch.sigmoid(b)


class _Gate(torch.autograd.Function):
    """:func:`gate` with its backward written into one gradient tensor of x's layout, half by half (autograd's own
    backward of chunk, tanh, sigmoid and the product makes four tensors and concatenates two of them)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:
        t, s = _tanh_sigmoid(x, dim)
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
        groups: int = 1,
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
        convolutions: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One layer on the vertical and horizontal inputs v, h (B, C, H, W); ``convolutions``: the vertical and
        horizontal convolutions of them (B, 2C, H, W) each, when already computed (:meth:`convolutions_from_codes`;
        then v, and h in the first layer, are not read; the label bias is added to them in place).

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
        if self.label_bias is not None:  # added in place: no new tensors, and their layout kept
            bias_v, bias_h = self.label_bias(labels)[:, :, None, None].chunk(2, dim=1)  # (B, 2C, 1, 1) each
            v_pre, h_pre = v_pre.add_(bias_v), h_pre.add_(bias_h)
        residual, skip = F.conv2d(self.dropout(gate(h_pre)), self.out_weight, self.h_out.bias).chunk(2, dim=1)
        # residual, skip: (B, C, H, W) each
        # no residual on the first layer: its input holds the current position, which it must not see
        h_next = residual if self.first else h + residual
        return gate(v_pre), h_next, skip

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
        """This layer's kernels laid out for :class:`GatedLayerState` (eval mode: channel masks applied); with
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
        )

    def sampling_state(
        self, n: int, width: int, labels: Tensor | None = None, embedding: Tensor | None = None,
        weights: GatedLayerWeights | None = None,
    ) -> GatedLayerState:
        """This layer's step-by-step computation for sampling n code maps of the given width (eval mode only);
        with ``embedding``, its vertical input is codes, embedded by it (as :meth:`convolutions_from_codes`).
        ``weights``: :meth:`sampling_weights` of the same ``embedding``, when already prepared."""
        if self.training:
            raise RuntimeError("GatedLayer.sampling_state computes the eval-mode layer (no dropout): call .eval()")
        weights = self.sampling_weights(embedding) if weights is None else weights
        return GatedLayerState(self, n, width, labels, weights)


class GatedLayerWeights(NamedTuple):
    """A :class:`GatedLayer`'s kernels as :class:`GatedLayerState` multiplies by them: transposed to (in, out), in
    the order its windows lie, the 1x1 output convolution's bias as one more row (:func:`with_bias`)."""

    h: Tensor  # (kw*C, 2C): the horizontal convolution
    vh: Tensor  # (2C, 2C): the vertical stack's 1x1 convolution into the horizontal one
    residual: Tensor  # (C+1, C): the output convolution's residual half, bias last
    skip: Tensor  # (C+1, C): its skip half, bias last
    v: Tensor | None  # ((p+1)*k*C, 2C): the vertical convolution; None when the input is codes (then tables)
    tables: Tensor | None  # (taps*(G*K + 1), 2C): the vertical convolution of embedded codes (:func:`tap_tables`)
    v_bias: Tensor  # (2C,)
    h_bias: Tensor  # (2C,): the biases that every horizontal pre-activation starts from


class GatedLayerState:
    """A :class:`GatedLayer` computed one position at a time in raster order, from caches of its inputs.

    Per row r: the layer's vertical input at row r - 1 (complete by then) is written into ``v_new`` (by the layer
    below, or by the prior's state for the first layer); :meth:`begin_row` runs the vertical convolution once over
    the rows cached so far, stores the 1x1 projection that the horizontal stack adds in row r, and writes the vertical
    output into the next layer's ``v_new``. Per position (r, c): the layer's horizontal input at column c is written
    (by :meth:`put`, or by the layer below, see :meth:`connect`), :meth:`step` runs the horizontal convolution on its
    cached window and writes the layer's outputs. The results equal :meth:`GatedLayer.forward` at each position (eval
    mode: no dropout) to float rounding: the same sums, in another order.

    Every convolution is one matrix product (``torch.addmm``; the first layer's vertical one, table rows) over rows
    laid out column-major, ``(w n)``: batch n, C channels, W the code map's width, p = k // 2, kw the horizontal
    kernel's width. The caches:

    - ``v_rows`` (p + 1, W + 2p, n, C): the last p + 1 rows of the vertical input (rows above the grid zero), padded
      p columns on each side, the newest last (``v_new``, (W, n, C), its unpadded part); the vertical convolution of
      a row is its windows (W n, (p+1) k C), copied into one matrix, times the kernel. With ``weights.tables`` (the
      first layer's, whose input is embedded codes), ``v_rows`` (p + 1, W + 2p, n, G) holds the codes' embedding rows
      instead (the blank row G*K as padding), and the convolution is a sum of table rows, one per kernel tap and
      image channel (:func:`tap_tables`, as :meth:`GatedLayer.convolutions_from_codes` computes it);
    - ``h_row`` (n, W + p, C): the current row of the horizontal input, padded p columns on the left (never written,
      so zero). The window of column c, ``h_row[:, c : c + kw]``, is a (n, kw C) matrix as it lies (no copy);
      a column is written before any window reads it, so the row from before is never cleared;
    - ``vh`` (W, n, 2C): what the vertical stack adds to the current row's horizontal pre-activation, with the
      horizontal convolution's bias and the label bias folded in (above the grid: those biases alone). Column c's is
      turned into the pre-activation in place by :meth:`step` (with G image channels, each pixel's G steps write
      theirs into ``h_pre`` instead);
    - ``gated`` (n, C + 1): the gated units of the current position and a constant 1, given by :meth:`connect`. The
      1x1 output convolution's weights get the bias as one more row (:func:`with_bias`; ``res_weight_t`` and
      ``weights.skip``, (C+1, C) each), so that a product of ``gated`` adds it.

    Every buffer is written in place (a CUDA graph can replay the same addresses), and :meth:`step` runs once per
    layer and position, so it is written for few operator calls: the views it reads and writes are made once per
    column here (the window, vh's column, the input and the next layer's input there), the weights come laid out
    for the products (:meth:`GatedLayer.sampling_weights`, which a prior may prepare once for many states), and the
    outputs go into preallocated buffers: five operators a step. The skip output is left to the
    prior's state, which sums every layer's with one product of their ``gated`` and their stacked ``weights.skip``.
    """

    def __init__(
        self, layer: GatedLayer, n: int, width: int, labels: Tensor | None, weights: GatedLayerWeights,
    ) -> None:
        C, p, k, G = layer.channels, layer.pad, layer.kernel_size, layer.groups
        self.first, self.p, self.k, self.kw = layer.first, p, k, weights.h.shape[0] // C
        self.h_weight_t, self.vh_weight_t = weights.h, weights.vh  # (kw*C, 2C), (2C, 2C)
        self.res_weight_t = weights.residual  # (C+1, C); the skip half is the prior's state's (weights.skip)
        self.v_bias, bias_h = weights.v_bias, weights.h_bias  # (2C,) each
        self.bias_v = None
        if layer.label_bias is not None:
            bias_v, label_h = layer.label_bias(labels).chunk(2, dim=1)  # (n, 2C) each
            self.bias_v, bias_h = bias_v, bias_h + label_h  # (n, 2C) each
        # what every row's vh starts from: the biases of the horizontal pre-activation, for each column
        self.vh_bias = bias_h.expand(width, n, 2 * C).reshape(width * n, 2 * C)  # (W*n, 2C)
        self.vh = self.vh_bias.clone().view(width, n, 2 * C)  # above the grid: nothing but the biases
        self.tables, self.v_weight_t = weights.tables, weights.v
        if self.tables is None:
            self.v_rows = weights.h.new_zeros(p + 1, width + 2 * p, n, C)
            self.v_windows = rearrange(self.v_rows.unfold(1, k, 1), "r w n c k -> w n r k c")  # a view of v_rows
            self.v_windows_copy = weights.h.new_empty(width * n, (p + 1) * k * C)  # (W*n, (p+1)*k*C), as the kernel
        else:  # codes: each window's table rows, tap t = r*k + s's rows from t * rows on (rows = G*K + 1)
            rows = self.tables.shape[0] // ((p + 1) * k)
            device = self.tables.device
            self.v_rows = torch.full((p + 1, width + 2 * p, n, G), rows - 1, device=device)
            self.v_windows = rearrange(self.v_rows.unfold(1, k, 1), "r w n g k -> w n r k g")  # a view of v_rows
            self.tap_offsets = rows * torch.arange((p + 1) * k, device=device).view(p + 1, k, 1)
            self.v_windows_copy = self.v_rows.new_empty(width * n, (p + 1) * k * G)  # (W*n, (p+1)*k*G)
        self.v_new = self.v_rows[-1, p : p + width]  # (W, n, C or G), contiguous
        self.v_pre = weights.h.new_empty(width, n, 2 * C)  # the vertical pre-activation, and its halves
        self.v_pre_a, self.v_pre_b = self.v_pre.chunk(2, dim=-1)
        self.h_row = weights.h.new_zeros(n, width + p, C)
        # per column c: the window (n, kw*C), vh (n, 2C), the pre-activation and its first half, and the input (n, C)
        # there, all views (each list made by one unbind). The window: columns c .. c + kw - 1 of h_row, kw*C
        # consecutive floats per code map
        self.windows = self.h_row.as_strided((width, n, self.kw * C), (C, (width + p) * C, 1)).unbind(0)
        self.vh_columns = self.vh.unbind(0)
        # column c's pre-activation: vh's column itself, turned into it in place, unless the layer steps G times over
        # each pixel (G image channels), which each need vh's column as it was
        if G == 1:
            self.h_pre = self.vh_columns  # (n, 2C) per column
            self.h_pre_a, self.h_pre_b = (half.unbind(0) for half in self.vh.chunk(2, dim=-1))  # (n, C) each
        else:
            h_pre = weights.h.new_empty(n, 2 * C)
            self.h_pre, self.h_pre_a, self.h_pre_b = [h_pre] * width, [h_pre[:, :C]] * width, [h_pre[:, C:]] * width
        self.inputs = self.h_row[:, p:].unbind(1)
        self.connect(weights.h.new_ones(n, C + 1), None)

    def connect(self, gated: Tensor, after: GatedLayerState | None) -> None:
        """Where :meth:`step` writes: the gated units into ``gated`` (n, C + 1), whose last column must be 1, and the
        horizontal and vertical outputs into ``after``'s inputs (the next layer; None for the last, whose outputs
        nobody reads)."""
        self.gated, self.units = gated, gated[:, :-1]  # (n, C + 1), (n, C)
        self.next_v = None if after is None else after.v_new
        next_inputs = [None] * len(self.inputs) if after is None else after.inputs
        # per column c, every view that step reads or writes there, in one tuple (fewer look-ups a step)
        self.columns = list(zip(self.vh_columns, self.windows, self.h_pre, self.h_pre_a, self.h_pre_b, self.inputs,
                                next_inputs))

    def begin_row(self, first: bool) -> None:
        """Start a row: the vertical convolution over the cached rows (``v_new`` written beforehand: the vertical
        input of the row above), vh from it, and the next layer's vertical input (its ``v_new``). ``first``: the
        first row, with nothing above: vh holds the biases alone (step consumed the last row's vh)."""
        if first:
            self.vh.view(self.vh_bias.shape).copy_(self.vh_bias)
            return
        W, n, C2 = self.v_pre.shape
        v_pre = self.v_pre.view(W * n, C2)
        if self.tables is None:
            self.v_windows_copy.view(self.v_windows.shape).copy_(self.v_windows)  # (W, n, p+1, k, C)
            torch.addmm(self.v_bias, self.v_windows_copy, self.v_weight_t, out=v_pre)
        else:
            torch.add(self.v_windows, self.tap_offsets, out=self.v_windows_copy.view(self.v_windows.shape))
            torch.add(F.embedding_bag(self.v_windows_copy, self.tables, mode="sum"), self.v_bias, out=v_pre)
        torch.addmm(self.vh_bias, v_pre, self.vh_weight_t, out=self.vh.view(W * n, C2))  # (W*n, 2C) sees rows < r
        if self.next_v is not None:
            if self.bias_v is not None:
                self.v_pre.add_(self.bias_v)  # (W, n, 2C)
            torch.mul(self.v_pre_a.tanh_(), self.v_pre_b.sigmoid_(), out=self.next_v)  # (W, n, C), as gate()
        # the rows up one, the oldest dropped: v_new is free for the next row's input (overlapping unless p = 1)
        self.v_rows[:-1].copy_(self.v_rows[1:] if self.p == 1 else self.v_rows[1:].clone())

    def put(self, c: int, x: Tensor, start: int = 0) -> None:
        """Write the horizontal input x (n, C) at column c of the current row; x (n, C') with C' < C writes
        channels ``start`` .. ``start + C'`` only (one image channel of a pixel)."""
        self.inputs[c][:, start : start + x.shape[1]] = x

    def step(self, c: int) -> None:
        """The layer at column c of the current row, from the inputs put so far: columns <= c (< c if first).
        Writes the gated units into ``gated`` and the horizontal stack's output into the next layer's input at
        column c (:meth:`connect`)."""
        vh, window, h_pre, a, b, x, x_next = self.columns[c]
        torch.addmm(vh, window, self.h_weight_t, out=h_pre)  # (n, 2C); h_pre is vh itself unless G > 1
        torch.mul(a.tanh_(), b.sigmoid_(), out=self.units)  # (n, C): tanh(a) * sigmoid(b), as gate()
        if x_next is None:
            return
        # no residual on the first layer: its input holds the current position, which it must not see
        if self.first:
            torch.mm(self.gated, self.res_weight_t, out=x_next)  # (n, C), bias included
        else:
            torch.addmm(x, self.gated, self.res_weight_t, out=x_next)


def with_bias(weight_t: Tensor, bias: Tensor) -> Tensor:
    """A matrix product's weights (I, O) with the bias (O,) as one more row, (I + 1, O): ``x @ with_bias(w, b)``, x
    (n, I + 1) ending in a column of ones, is ``x[:, :I] @ w + b``, the bias added without a copy of it per call."""
    return torch.cat([weight_t, bias[None]])


def prepared(module: nn.Module, build: Callable[[], T]) -> T:
    """``build()``, made of ``module``'s parameters and buffers, kept on the module and built again only when one of
    them has changed since: replaced by another tensor (``.to``, a new ``Parameter``) or written in place (an
    optimizer's step, ``load_state_dict``: PyTorch's version counter moves). Writes through ``.data`` are not
    counted by PyTorch, so are not seen: after one, ``del module._prepared``. The samplers' states read their
    weights through this: a model sampled again and again lays its weights out once."""
    tensors = [*module.parameters(), *module.buffers()]
    cached = module.__dict__.get("_prepared")
    if cached is not None:
        kept, storages, versions, value = cached
        if len(kept) == len(tensors) and all(
            t is k and t.data_ptr() == s.data_ptr() and t._version == v
            for t, k, s, v in zip(tensors, kept, storages, versions)
        ):
            return value
    value = build()
    # each tensor's storage is held too (detach shares it), so that no other tensor can take its address while the
    # entry lives
    module.__dict__["_prepared"] = (tensors, [t.detach() for t in tensors], [t._version for t in tensors], value)
    return value

