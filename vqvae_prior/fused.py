"""The gated PixelCNN's step at one position as one GPU kernel: every layer's horizontal stack and the head, fused.

The cached sampler's step-by-step form (:class:`vqvae_prior.prior.GatedPixelCNNState`) computes a position with
four small operators per layer and a few more for the head; on a GPU each is a kernel launch of a few microseconds
for a few kilo-FLOP, so the sampler is launch-bound. :class:`FusedGatedPixelCNNState` computes the same thing with
one Triton kernel per position (:func:`position_kernel`): each program takes ``BN`` of the n code maps through all L
layers and the head, keeping the horizontal stack's output of the current position in registers from one layer to
the next, and writes the logits. What does not change per position stays in PyTorch: the vertical stacks, run once
per row by each layer's :class:`vqvae_prior.layers.GatedLayerState` (a few large matrix products), whose
contribution to every column's pre-activation (``vh``) the kernel reads.

Numbers: fp32 throughout, products in IEEE fp32 (``input_precision="ieee"``, no TF32), so the logits equal the
eager step's to float rounding (the same sums in another order; ``tanh(a)`` as ``2 sigmoid(2a) - 1``).

Layouts (P = the widest padding, Cp / Hp / Kp the channels, head width and G*K rounded up to powers of two with
zeros, Np the batch rounded up to a multiple of BN; "two" indexes a gate's halves, or the residual and skip):

- ``h`` (L, Np, W + P, Cp): every layer's horizontal input of the current row, column c at c + P (columns left of
  the grid zero). Layer 0's is written by :meth:`put`, layer l + 1's by the kernel (layer l's output);
- ``vh`` (L, W, Np, two, Cp): what the vertical stack (and the biases) add to each column's pre-activation;
- ``w_first`` (kw0, two, Cp, Cp), ``w_h`` (L - 1, kw, two, Cp, Cp): the horizontal kernels by window column,
  ``w_out`` (L, two, Cp, Cp), ``b_out`` (L, two, Cp): the 1x1 residual and skip convolution; the head's
  ``w1`` (Cp, Hp), ``b1`` (Hp), ``w2`` (Hp, Kp), ``b2`` (Kp); ``out`` (Np, Kp): the logits.

Triton comes with PyTorch's CUDA builds on Linux; this module is imported only when a fused state is made. With the
environment variable ``TRITON_INTERPRET=1`` set before that, the kernel runs on the CPU (slowly), which is how the
CPU tests check it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from einops import rearrange
from torch import Tensor

from vqvae_prior.errors import UsageError
from vqvae_prior.prior import GatedPixelCNNState

if TYPE_CHECKING:
    from vqvae_prior.prior import GatedPixelCNN

__all__ = ["FusedGatedPixelCNNState", "check_device", "position_kernel"]

BN = 16  # code maps per program: the smallest matrix side that tl.dot takes


def check_device(device: torch.device) -> None:
    """A clear error unless the kernel can run on ``device``: CUDA, or any device under Triton's interpreter."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise UsageError(f"the fused sampler runs on CUDA (or on the CPU with TRITON_INTERPRET=1), not on {device}: "
                         "sample with method 'cached'")


@triton.jit
def dot(x, w, PRECISION: tl.constexpr):
    """x @ w in fp32: "ieee" (plain fp32, no TF32, as the eager step computes it) or "tf32x3" (three TF32 tensor-core
    products, about fp32's accuracy; for ``benchmarks.fused_kernel`` to compare)."""
    return tl.dot(x, w, input_precision=PRECISION)


@triton.jit
def tile(ptr, rows, cols, stride):
    """The (len(rows), len(cols)) block of a row-major matrix with ``stride`` elements per row."""
    return tl.load(ptr + rows[:, None] * stride + cols[None, :])


@triton.jit
def gate_out(acc_a, acc_b, w_out, b_out, layer, rc, CP: tl.constexpr, PRECISION: tl.constexpr):
    """Gated units of the pre-activation halves (BN, Cp) each, then the 1x1 residual and skip outputs."""
    gated = (2 * tl.sigmoid(2 * acc_a) - 1) * tl.sigmoid(acc_b)  # tanh(a) * sigmoid(b)
    w = w_out + layer * 2 * CP * CP
    b = b_out + layer * 2 * CP
    residual = dot(gated, tile(w, rc, rc, CP), PRECISION) + tl.load(b + rc)[None, :]
    skip = dot(gated, tile(w + CP * CP, rc, rc, CP), PRECISION) + tl.load(b + CP + rc)[None, :]
    return residual, skip


@triton.jit(do_not_specialize=["c", "L", "NP", "W"])  # one compiled kernel for every column, depth and size
def position_kernel(
    h, vh, w_first, w_h, w_out, b_out, w1, b1, w2, b2, out, c, L, NP, W,
    P: tl.constexpr, KW0: tl.constexpr, P0: tl.constexpr, KW: tl.constexpr,
    CP: tl.constexpr, HP: tl.constexpr, KP: tl.constexpr, BN: tl.constexpr, BH: tl.constexpr,
    BK: tl.constexpr, PRECISION: tl.constexpr = "ieee",
):
    """Logits ``out`` (Np, Kp) at pixel c of the current row; writes every later layer's input at column c."""
    WP = W + P
    rn = tl.program_id(0) * BN + tl.arange(0, BN)  # (BN,) this program's code maps
    rc = tl.arange(0, CP)
    # layer 0: its window, columns c - P0 .. c - P0 + KW0 - 1, was put in memory before this launch
    pre = vh + (c * NP + rn[:, None]) * 2 * CP + rc[None, :]  # vh[0, c, rn, half, :]
    acc_a = tl.load(pre)
    acc_b = tl.load(pre + CP)
    for j in tl.static_range(KW0):
        x = tl.load(h + (rn[:, None] * WP + c + P - P0 + j) * CP + rc[None, :])  # (BN, Cp)
        w = w_first + j * 2 * CP * CP
        acc_a += dot(x, tile(w, rc, rc, CP), PRECISION)
        acc_b += dot(x, tile(w + CP * CP, rc, rc, CP), PRECISION)
    x, skips = gate_out(acc_a, acc_b, w_out, b_out, 0, rc, CP, PRECISION)  # no residual in the first layer
    for layer in range(1, L):
        row = h + layer * NP * WP * CP
        tl.store(row + (rn[:, None] * WP + c + P) * CP + rc[None, :], x)  # its input at column c, for later
        pre = vh + ((layer * W + c) * NP + rn[:, None]) * 2 * CP + rc[None, :]
        acc_a = tl.load(pre)
        acc_b = tl.load(pre + CP)
        for j in tl.static_range(KW - 1):  # the columns left of c, from memory
            xj = tl.load(row + (rn[:, None] * WP + c + P - (KW - 1) + j) * CP + rc[None, :])
            w = w_h + ((layer - 1) * KW + j) * 2 * CP * CP
            acc_a += dot(xj, tile(w, rc, rc, CP), PRECISION)
            acc_b += dot(xj, tile(w + CP * CP, rc, rc, CP), PRECISION)
        w = w_h + ((layer - 1) * KW + KW - 1) * 2 * CP * CP  # column c: the previous layer's output, in registers
        acc_a += dot(x, tile(w, rc, rc, CP), PRECISION)
        acc_b += dot(x, tile(w + CP * CP, rc, rc, CP), PRECISION)
        residual, skip = gate_out(acc_a, acc_b, w_out, b_out, layer, rc, CP, PRECISION)
        x = x + residual
        skips += skip
    # the head: relu, 1x1 (Cp -> Hp), relu, 1x1 (Hp -> Kp), in blocks of BK logits and BH hidden units
    skips = tl.maximum(skips, 0.0)
    for k0 in tl.static_range(0, KP, BK):
        rk = k0 + tl.arange(0, BK)
        logits = tl.zeros((BN, BK), dtype=tl.float32)
        for h0 in tl.static_range(0, HP, BH):
            rh = h0 + tl.arange(0, BH)
            hidden = tl.maximum(dot(skips, tile(w1, rc, rh, HP), PRECISION) + tl.load(b1 + rh)[None, :], 0.0)
            logits += dot(hidden, tile(w2, rh, rk, KP), PRECISION)
        tl.store(out + rn[:, None] * KP + rk[None, :], logits + tl.load(b2 + rk)[None, :])



def _pow2(x: int) -> int:
    return max(16, 1 << (x - 1).bit_length())


def _pad(x: Tensor, *sizes: int) -> Tensor:
    """x zero-padded at the end of its last len(sizes) dimensions to those sizes, contiguous fp32."""
    pads = []
    for dim, size in zip(reversed(range(x.dim() - len(sizes), x.dim())), reversed(sizes)):
        pads += [0, size - x.shape[dim]]
    return F.pad(x.float(), pads).contiguous()


class FusedGatedPixelCNNState(GatedPixelCNNState):
    """:class:`GatedPixelCNNState` whose per-position work (every layer's horizontal stack and the head) is one
    Triton kernel launch; the vertical stacks run per row as in the parent. Same logits to float rounding."""

    def __init__(self, model: GatedPixelCNN, n: int, shape: tuple[int, int], labels: Tensor | None) -> None:
        check_device(model.device)
        super().__init__(model, n, shape, labels)
        layers, device = model.layers, model.device
        C, L = model.config.channels, len(layers)
        self.n, self.width = n, shape[1] // self.G
        self.p0, self.P = layers[0].pad, max(layer.pad for layer in layers)  # P: the widest padding
        self.kw0 = layers[0].h_weight.shape[-1]
        self.kw = layers[1].h_weight.shape[-1] if L > 1 else 1
        self.CP, self.HP, self.KP = _pow2(C), _pow2(model.config.head_channels), _pow2(self.G * self.K)
        self.NP = -(-n // BN) * BN
        CP = self.CP

        def horizontal(layer) -> Tensor:  # (kw, two, Cp, Cp): window column, half, in, out
            return _pad(rearrange(layer.h_weight, "(two o) i 1 k -> k two i o", two=2), CP, CP)

        self.w_first = horizontal(layers[0])
        self.w_h = (torch.stack([horizontal(layer) for layer in layers[1:]]) if L > 1
                    else torch.zeros(1, device=device))
        self.w_out = torch.stack([
            _pad(rearrange(layer.out_weight, "(two o) i 1 1 -> two i o", two=2), CP, CP) for layer in layers
        ])  # (L, two, Cp, Cp)
        self.b_out = torch.stack([_pad(layer.h_out.bias.view(2, C), CP) for layer in layers])  # (L, two, Cp)
        w_in, w_out = model.head.weights()
        self.w1 = _pad(rearrange(w_in, "o i 1 1 -> i o"), CP, self.HP)  # (Cp, Hp)
        self.b1 = _pad(model.head[1].bias, self.HP)
        self.w2 = _pad(rearrange(w_out, "o i 1 1 -> i o"), self.HP, self.KP)  # (Hp, Kp)
        self.b2 = _pad(model.head[3].bias, self.KP)
        self.h = torch.zeros(L, self.NP, self.width + self.P, CP, device=device)
        self.vh = torch.zeros(L, self.width, self.NP, 2, CP, device=device)
        self.out = torch.empty(self.NP, self.KP, device=device)

    def start_row(self, above: Tensor | None) -> None:
        """Start a row, given the codes of the row above (n, w*G), or None in the first row."""
        super().start_row(above)
        C = self.layers[0].vh.shape[-1] // 2
        for layer, vh in zip(self.layers, self.vh):  # vh: (W, Np, two, Cp)
            vh[:, : self.n, :, :C] = layer.vh.view(self.width, self.n, 2, C)

    def launch(self, pixel: int, **options: int | str) -> None:
        """One launch of the kernel at ``pixel`` of the current row, into ``out``; ``options``: Triton's launch
        options (``num_warps``, ``num_stages``) or ``PRECISION`` (:func:`dot`), for ``benchmarks.fused_kernel``."""
        position_kernel[(self.NP // BN,)](
            self.h, self.vh, self.w_first, self.w_h, self.w_out, self.b_out, self.w1, self.b1, self.w2, self.b2,
            self.out, pixel, len(self.layers), self.NP, self.width,
            P=self.P, KW0=self.kw0, P0=self.p0, KW=self.kw, CP=self.CP, HP=self.HP, KP=self.KP, BN=BN,
            BH=min(64, self.HP), BK=min(64, self.KP), **options,
        )

    def logits(self, c: int) -> Tensor:
        """Logits (n, K) at column c of the current row, given the codes put before it."""
        pixel, channel = divmod(c, self.G)
        self.launch(pixel)
        return self.out[: self.n, channel * self.K : (channel + 1) * self.K]  # (n, K)

    def put(self, c: int, codes: Tensor) -> None:
        """The codes (n,) chosen at column c of the current row: the first layer's input for what comes after."""
        pixel, channel = divmod(c, self.G)
        x = self.embedding(codes + self.offsets[channel] if self.G > 1 else codes)  # (n, C / G)
        self.h[0, : self.n, pixel + self.P, channel * self.d : (channel + 1) * self.d] = x
