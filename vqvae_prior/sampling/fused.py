"""The gated PixelCNN's step at one position as one GPU kernel: every layer's horizontal stack and the head, fused.

The cached sampler's step-by-step form (:class:`vqvae_prior.sampling.cached.GatedPixelCNNState`) computes a position
with a few small operators per layer and a few more for the head; on a GPU each is a kernel launch of a few
microseconds for a few kilo-FLOP, so the sampler is launch-bound. :class:`FusedGatedPixelCNNState` computes the same
thing with one Triton kernel per position (:func:`position_kernel`): each program takes ``BN`` of the n code maps
through all L layers and the head, keeping the horizontal stack's output of the current position in registers from
one layer to the next, and writes the logits. What does not change per position stays in PyTorch and is shared with
the cached sampler: the vertical stacks, run once per row (:class:`vqvae_prior.sampling.cached.GatedPixelCNNRows`,
a few large matrix products), whose contribution to every column's pre-activation (``vh``) the kernel reads. The
kernels are the model's own, as it lays them out for the cached sampler (``GatedPixelCNN.sampling_weights``),
padded here.

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

Triton comes with PyTorch's CUDA builds on Linux; this module is imported only when the fused sampler runs
(``vqvae_prior.sampling`` says where it can). With the environment variable ``TRITON_INTERPRET=1`` set
before that, the kernel runs on the CPU (slowly), which is how the CPU tests check it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from einops import rearrange
from torch import Tensor

from vqvae_prior.sampling.cached import GatedPixelCNNRows, prepared_weights

if TYPE_CHECKING:
    from vqvae_prior.prior import GatedPixelCNN

__all__ = ["FusedGatedPixelCNNState", "position_kernel"]

BN = 16  # code maps per program: the smallest matrix side that tl.dot takes


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


class FusedGatedPixelCNNState:
    """The gated PixelCNN computed one raster position at a time (a ``SamplingState``), each position's work (every
    layer's horizontal stack and the head) one Triton kernel launch; the vertical stacks run once a row, as in the
    cached sampler (:class:`GatedPixelCNNRows`). The same logits as the cached sampler's to float rounding."""

    def __init__(self, model: GatedPixelCNN, n: int, shape: tuple[int, int], labels: Tensor | None,
                 condition: Tensor | None = None) -> None:
        weights, width = prepared_weights(model), shape[1] // model.image_channels  # width: pixels per row
        self.rows = GatedPixelCNNRows(model, n, width, labels, weights, condition)
        C, L, device = model.config.channels, len(model.layers), model.device
        self.n, self.width, self.L = n, width, L
        self.p0, self.P = model.layers[0].pad, max(layer.pad for layer in model.layers)  # P: the widest padding
        self.kw0 = weights.layers[0].h.shape[0] // C
        self.kw = weights.layers[1].h.shape[0] // C if L > 1 else 1
        self.CP, self.HP, self.KP = _pow2(C), _pow2(model.config.head_channels), _pow2(self.rows.G * self.rows.K)
        self.NP = -(-n // BN) * BN
        CP = self.CP

        def horizontal(h: Tensor) -> Tensor:  # (kw*C, 2C) -> (kw, two, Cp, Cp): window column, half, in, out
            return _pad(rearrange(h, "(k i) (two o) -> k two i o", two=2, i=C), CP, CP)

        self.w_first = horizontal(weights.layers[0].h)
        self.w_h = (torch.stack([horizontal(layer.h) for layer in weights.layers[1:]]) if L > 1
                    else torch.zeros(1, device=device))
        # the 1x1 output convolution's residual and skip halves, (C+1, C) each, the bias their last row
        out = [torch.stack([layer.residual, layer.skip]) for layer in weights.layers]  # (two, C+1, C) each
        self.w_out = torch.stack([_pad(w[:, :-1], CP, CP) for w in out])  # (L, two, Cp, Cp)
        self.b_out = torch.stack([_pad(w[:, -1], CP) for w in out])  # (L, two, Cp)
        w_in, w_out = weights.head  # (C+1, H), (H+1, G*K): each bias the last row
        self.w1, self.b1 = _pad(w_in[:-1], CP, self.HP), _pad(w_in[-1], self.HP)  # (Cp, Hp), (Hp,)
        self.w2, self.b2 = _pad(w_out[:-1], self.HP, self.KP), _pad(w_out[-1], self.KP)  # (Hp, Kp), (Kp,)
        self.h = torch.zeros(L, self.NP, width + self.P, CP, device=device)
        self.vh = torch.zeros(L, width, self.NP, 2, CP, device=device)
        self.out = torch.empty(self.NP, self.KP, device=device)

    def start_row(self, above: Tensor | None) -> None:
        """Start a row, given the codes of the row above (n, w*G), or None in the first row."""
        self.rows.start_row(above)
        for vertical, vh in zip(self.rows.vertical, self.vh):  # vh: (W, Np, two, Cp)
            C2 = vertical.vh.shape[-1]
            vh[:, : self.n, :, : C2 // 2] = vertical.vh.view(self.width, self.n, 2, C2 // 2)

    def launch(self, pixel: int, **options: int | str) -> None:
        """One launch of the kernel at ``pixel`` of the current row, into ``out``; ``options``: Triton's launch
        options (``num_warps``, ``num_stages``) or ``PRECISION`` (:func:`dot`), for ``benchmarks.fused_kernel``."""
        position_kernel[(self.NP // BN,)](
            self.h, self.vh, self.w_first, self.w_h, self.w_out, self.b_out, self.w1, self.b1, self.w2, self.b2,
            self.out, pixel, self.L, self.NP, self.width,
            P=self.P, KW0=self.kw0, P0=self.p0, KW=self.kw, CP=self.CP, HP=self.HP, KP=self.KP, BN=BN,
            BH=min(64, self.HP), BK=min(64, self.KP), **options,
        )

    def logits(self, c: int) -> Tensor:
        """Logits (n, K) at column c of the current row, given the codes put before it."""
        pixel, channel = divmod(c, self.rows.G)
        self.launch(pixel)
        K = self.rows.K
        return self.out[: self.n, channel * K : (channel + 1) * K]  # (n, K)

    def put(self, c: int, codes: Tensor) -> None:
        """The codes (n,) chosen at column c of the current row: the first layer's input for what comes after."""
        pixel, channel = divmod(c, self.rows.G)
        d = self.rows.d
        self.h[0, : self.n, pixel + self.P, channel * d : (channel + 1) * d] = self.rows.embed(codes, channel)
