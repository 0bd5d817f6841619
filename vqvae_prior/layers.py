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

Sampling: :meth:`GatedLayer.sampling_state` gives the layer's step-by-step form, :class:`GatedLayerState`, the
same arithmetic as :meth:`GatedLayer.forward` computed one raster position at a time from cached rows (the cached
sampler of Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive Models"). It lives here,
beside ``forward``, so that a change to the layer changes both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["GatedLayer", "GatedLayerState", "MaskedConv2d", "gate", "shift_down"]


def gate(x: Tensor, dim: int = 1) -> Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)`` of x split in two halves (a, b) along ``dim``."""
    a, b = x.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


def shift_down(x: Tensor, rows: int = 1) -> Tensor:
    """x (B, C, H, W) moved down by ``rows``: zeros in the top rows, the last ``rows`` rows cut."""
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2]]


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
    """

    def __init__(
        self, channels: int, kernel_size: int, first: bool, num_classes: int = 0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        self.channels, self.kernel_size, self.first = channels, kernel_size, first
        self.pad = kernel_size // 2
        self.v_conv = nn.Conv2d(channels, 2 * channels, (self.pad + 1, kernel_size))
        self.h_conv = nn.Conv2d(channels, 2 * channels, (1, self.pad + (0 if first else 1)))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, 2 * channels, 1)  # residual and skip outputs, in one 1x1 convolution
        self.label_bias = nn.Embedding(num_classes, 4 * channels) if num_classes > 0 else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, v: Tensor, h: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One layer on the vertical and horizontal inputs v, h (B, C, H, W).

        Returns:
            (v, h, skip), each (B, C, H, W): the vertical and horizontal stacks' outputs and the skip output.
        """
        H, W = h.shape[2:]
        v_pre = self.v_conv(F.pad(v, (self.pad, self.pad, self.pad, 0)))  # (B, 2C, H, W) sees rows <= r
        h_pre = self.h_conv(F.pad(h, (self.pad, 0, 0, 0)))[..., :W]  # (B, 2C, H, W) sees cols <= c (< c if first)
        h_pre = h_pre + self.v_to_h(shift_down(v_pre))  # rows < r reach the horizontal stack
        if self.label_bias is not None:
            bias_v, bias_h = self.label_bias(labels)[:, :, None, None].chunk(2, dim=1)  # (B, 2C, 1, 1) each
            v_pre, h_pre = v_pre + bias_v, h_pre + bias_h
        residual, skip = self.h_out(self.dropout(gate(h_pre))).chunk(2, dim=1)  # (B, C, H, W) each
        # no residual on the first layer: its input holds the current position, which it must not see
        h_next = residual if self.first else h + residual
        return gate(v_pre), h_next, skip

    def sampling_state(self, n: int, width: int, labels: Tensor | None = None) -> GatedLayerState:
        """This layer's step-by-step computation for sampling n code maps of the given width (eval mode only)."""
        if self.training:
            raise RuntimeError("GatedLayer.sampling_state computes the eval-mode layer (no dropout): call .eval()")
        return GatedLayerState(self, n, width, labels)


class GatedLayerState:
    """A :class:`GatedLayer` computed one position at a time in raster order, from caches of its inputs.

    Per row r: :meth:`begin_row` takes the layer's vertical input at row r - 1 (complete by then), runs the vertical
    convolution once over it and stores the 1x1 projection that the horizontal stack adds in row r. Per position
    (r, c): :meth:`put` writes the horizontal input at column c, :meth:`step` runs the horizontal convolution on its
    cached window (a matrix product) and returns the layer's outputs there. The results equal
    :meth:`GatedLayer.forward` at each position (eval mode: no dropout).

    Caches (n batch, C channels, W the code map's width, p = k // 2): the last p + 1 rows of the vertical input
    (n, C, p + 1, W + 2p), rows above the grid zero, padded p columns on each side; the current row of the
    horizontal input (W + p, n, C), padded p columns on the left, column-major so a column is one contiguous slice.

    :meth:`step` runs once per layer and position, so it is written for few operator calls (the same arithmetic as
    ``forward``'s, bit for bit, as the cached sampler always computed it): the matrix products are ``torch.addmm``
    with the weights transposed once (what ``F.linear`` calls, minus its per-call transposes), written into
    preallocated buffers whose halves are views made once, and each window is copied into one preallocated buffer.
    """

    def __init__(self, layer: GatedLayer, n: int, width: int, labels: Tensor | None) -> None:
        weight = layer.h_conv.weight  # (2C, C, 1, kw)
        C, p, kw = layer.channels, layer.pad, weight.shape[-1]
        self.first, self.p = layer.first, p
        self.v_conv, self.v_to_h = layer.v_conv, layer.v_to_h
        self.h_weight_t = rearrange(weight, "o c 1 k -> (c k) o")  # (C*kw, 2C)
        self.out_weight_t = rearrange(layer.h_out.weight, "o i 1 1 -> i o")  # (C, 2C)
        self.h_bias, self.out_bias = layer.h_conv.bias, layer.h_out.bias  # (2C,) each
        self.bias_v = self.bias_h = None
        if layer.label_bias is not None:
            bias_v, bias_h = layer.label_bias(labels).chunk(2, dim=1)  # (n, 2C) each
            self.bias_v, self.bias_h = bias_v[:, :, None, None], bias_h[:, :, None]  # (n, 2C, 1, 1), (n, 2C, 1)
        self.v_rows = weight.new_zeros(n, C, p + 1, width + 2 * p)
        self.h_row = weight.new_zeros(width + p, n, C)
        self.windows = self.h_row.unfold(0, kw, 1)  # (W, n, C, kw) view: the window of each column
        self.window = weight.new_empty(n, C, kw)  # the current window, laid out as the weight's (c k)
        self.window_flat = self.window.view(n, C * kw)
        self.h_pre = weight.new_empty(n, 2 * C)  # the horizontal pre-activation, and its two halves (views)
        self.h_pre_a, self.h_pre_b = self.h_pre[:, :C], self.h_pre[:, C:]
        self.out = weight.new_empty(n, 2 * C)  # the residual and skip outputs, and each (views)
        self.residual, self.skip = self.out[:, :C], self.out[:, C:]
        self.vh_zero = weight.new_zeros(n, 2 * C, 1, width)  # the vertical pre-activation above row 0 (shift_down)
        self.vh = weight.new_zeros(width, n, 2 * C)  # the vertical stack's contribution to the current row

    def begin_row(self, v_in: Tensor | None) -> Tensor | None:
        """Start a row, given this layer's vertical input of the row above, (n, C, 1, W), or None in the first row.

        Returns:
            the next layer's vertical input of the row above, (n, C, 1, W), or None in the first row.
        """
        if v_in is None:
            v_pre = self.vh_zero  # (n, 2C, 1, W)
        else:
            p = self.p
            self.v_rows = torch.cat([self.v_rows[:, :, 1:], F.pad(v_in, (p, p))], dim=2)  # (n, C, p+1, W+2p)
            v_pre = F.conv2d(self.v_rows, self.v_conv.weight, self.v_conv.bias)  # (n, 2C, 1, W) sees rows <= r-1
        vh = F.conv2d(v_pre, self.v_to_h.weight, self.v_to_h.bias)[:, :, 0]  # (n, 2C, W)
        vh = vh if self.bias_h is None else vh + self.bias_h
        self.vh = rearrange(vh, "n c w -> w n c").contiguous()  # (W, n, 2C): a column is one contiguous slice
        self.h_row.zero_()
        if v_in is None:
            return None
        return gate(v_pre if self.bias_v is None else v_pre + self.bias_v)  # (n, C, 1, W)

    def put(self, c: int, x: Tensor) -> None:
        """Write the horizontal input x (n, C) at column c of the current row."""
        self.h_row[c + self.p] = x

    def step(self, c: int) -> tuple[Tensor, Tensor]:
        """The layer at column c of the current row, from the inputs put so far: columns <= c (< c if first).

        Returns:
            (h, skip), each (n, C): the horizontal stack's output (the next layer's input) and the skip output;
            valid until the next call (they may be views of this state's buffers).
        """
        self.window.copy_(self.windows[c])  # (n, C, kw): input columns c-p .. c (.. c-1 in the first layer)
        torch.addmm(self.h_bias, self.window_flat, self.h_weight_t, out=self.h_pre)  # (n, 2C)
        self.h_pre += self.vh[c]
        gated = torch.tanh(self.h_pre_a) * torch.sigmoid(self.h_pre_b)  # (n, C), as gate()
        torch.addmm(self.out_bias, gated, self.out_weight_t, out=self.out)  # (n, 2C): residual and skip
        # no residual on the first layer: its input holds the current position, which it must not see
        return (self.residual if self.first else self.h_row[c + self.p] + self.residual), self.skip
