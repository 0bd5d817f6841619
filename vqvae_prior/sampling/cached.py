"""The cached sampler's step-by-step form of the gated PixelCNN: the network computed one raster position at a time
from caches of each layer's inputs (Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive
Models"), about one full pass of arithmetic per sample instead of h * w.

The model owns its math: its layers and head lay their kernels out for these states (``GatedLayer.sampling_weights``,
``Head.step``), and the gates are ``tanh(a) * sigmoid(b)`` as ``layers.gate`` computes them. The states apply them,
split by when their work runs: each layer's vertical stack once a row (:class:`VerticalState`; every layer's, with
the codes' layout: :class:`GatedPixelCNNRows`, which the fused sampler shares), its horizontal stack once a position
(:class:`HorizontalState`), the whole network with the skips' sum and the head (:class:`GatedPixelCNNState`). The
logits at each position equal those of a full forward pass over the codes put so far (eval mode: no dropout) to
float rounding: the same sums in another order. Every convolution is one matrix product (``torch.addmm``; the first
layer's vertical one, table rows) over rows laid out column-major, ``(w n)``: batch n, C channels, W the code map's
width, p = k // 2, kw the horizontal kernel's width. Every buffer is written in place (a CUDA graph can replay the
same addresses).

:data:`STEP_FORMS` says which prior class each state computes (``vqvae_prior.prior`` registers the gated PixelCNN).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

if TYPE_CHECKING:
    from vqvae_prior.layers import GatedLayer, GatedLayerWeights
    from vqvae_prior.prior import GatedPixelCNN, SamplingWeights
    from vqvae_prior.sampling.draw import Prior
    from vqvae_prior.sampling.stepwise import StateFactory

__all__ = [
    "STEP_FORMS", "GatedPixelCNNRows", "GatedPixelCNNState", "HorizontalState", "VerticalState", "prepared_weights",
    "step_form",
]

#: A prior class -> its step-by-step form, ``(model, n, shape, labels) -> SamplingState``. Code outside the package
#: may add its own priors' forms.
STEP_FORMS: dict[type, StateFactory] = {}


def step_form(model: Prior) -> StateFactory | None:
    """The step-by-step form registered for the model's class (that class itself, not a base: a subclass may
    compute another function), or None."""
    return STEP_FORMS.get(type(model))


_PREPARED: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()


def prepared_weights(model: GatedPixelCNN) -> SamplingWeights:
    """``model.sampling_weights()``, kept for the model and laid out again only when one of its parameters or buffers
    has changed since: replaced by another tensor (``.to``, a new ``Parameter``) or written in place (an optimizer's
    step, ``load_state_dict``, ``nn.init``). A model sampled again and again lays its weights out once (about 3 ms of
    a 16x16 batch-1 sample on 2 CPU cores).

    An in-place write is seen through the version counter that autograd keeps on every tensor (``Tensor._version``,
    moved by each in-place operation). It is private API, read here because no public mechanism serves: the public
    hooks (``load_state_dict`` post-hooks, ``Optimizer.register_step_post_hook``) see only their own writes, not
    ``nn.init``, an EMA update or a ``copy_`` under ``no_grad``; comparing contents would keep a second copy of every
    weight and read both on every call. Writes through ``.data`` move no counter, so are not seen (write in place
    under ``torch.no_grad()`` instead)."""
    tensors = [*model.parameters(), *model.buffers()]
    cached = _PREPARED.get(model)
    if cached is not None:
        kept, storages, versions, weights = cached
        if len(kept) == len(tensors) and all(
            t is k and t.data_ptr() == s.data_ptr() and t._version == v
            for t, k, s, v in zip(tensors, kept, storages, versions)
        ):
            return weights
    weights = model.sampling_weights()
    # each tensor's storage is held too (detach shares it), so that no other tensor can take its address while the
    # entry lives
    _PREPARED[model] = (tensors, [t.detach() for t in tensors], [t._version for t in tensors], weights)
    return weights


class VerticalState:
    """A :class:`~vqvae_prior.layers.GatedLayer`'s vertical stack, one row at a time, from a cache of its input rows.

    Per row r, the layer's vertical input at row r - 1 (complete by then) is written into ``v_new`` (by the layer
    below, or by :class:`GatedPixelCNNRows` for the first layer); :meth:`begin_row` runs the vertical convolution
    once over the rows cached so far, stores the 1x1 projection that the horizontal stack adds in row r (``vh``), and
    writes the vertical output into the next layer's ``v_new``. The buffers:

    - ``v_rows`` (p + 1, W + 2p, n, C): the last p + 1 rows of the vertical input (rows above the grid zero), padded
      p columns on each side, the newest last (``v_new``, (W, n, C), its unpadded part); the vertical convolution of
      a row is its windows (W n, (p+1) k C), copied into one matrix, times the kernel. With ``weights.tables`` (the
      first layer's, whose input is embedded codes), ``v_rows`` (p + 1, W + 2p, n, G) holds the codes' embedding rows
      instead (the blank row G*K as padding), and the convolution is a sum of table rows, one per kernel tap and
      image channel (``layers.tap_tables``, as ``GatedLayer.convolutions_from_codes`` computes it);
    - ``vh`` (W, n, 2C): what the vertical stack adds to the current row's horizontal pre-activation, with the
      horizontal convolution's bias and the label bias folded in (above the grid: those biases alone), and the
      conditioning map's 1x1 convolution at the current row, for a layer conditioned on one. The cached sampler's
      horizontal stack may consume it in place: each row writes it anew;
    - ``cond_v`` (W*n, 2C): for a conditioned layer, the conditioning of the vertical pre-activation at the row above
      (computed a row early, from the row's conditioning map that :meth:`begin_row` is given).
    """

    def __init__(
        self, layer: GatedLayer, n: int, width: int, labels: Tensor | None, weights: GatedLayerWeights,
    ) -> None:
        C, p, k, G = layer.channels, layer.pad, layer.kernel_size, layer.groups
        self.p, self.vh_weight_t, self.v_bias = p, weights.vh, weights.v_bias  # (2C, 2C), (2C,)
        self.bias_v, label_h = layer.label_biases(labels)  # (n, 2C) each, or None
        bias_h = weights.h_bias if label_h is None else weights.h_bias + label_h  # (2C,) or (n, 2C)
        # what every row's vh starts from: the biases of the horizontal pre-activation, for each column
        self.vh_bias = bias_h.expand(width, n, 2 * C).reshape(width * n, 2 * C)  # (W*n, 2C)
        self.vh = self.vh_bias.clone().view(width, n, 2 * C)  # above the grid: nothing but the biases
        self.tables, self.v_weight_t = weights.tables, weights.v
        if self.tables is None:
            self.v_rows = weights.vh.new_zeros(p + 1, width + 2 * p, n, C)
            self.v_windows = rearrange(self.v_rows.unfold(1, k, 1), "r w n c k -> w n r k c")  # a view of v_rows
            self.v_windows_copy = weights.vh.new_empty(width * n, (p + 1) * k * C)  # (W*n, (p+1)*k*C), as the kernel
        else:  # codes: each window's table rows, tap t = r*k + s's rows from t * rows on (rows = G*K + 1)
            rows = self.tables.shape[0] // ((p + 1) * k)
            device = self.tables.device
            self.v_rows = torch.full((p + 1, width + 2 * p, n, G), rows - 1, device=device)
            self.v_windows = rearrange(self.v_rows.unfold(1, k, 1), "r w n g k -> w n r k g")  # a view of v_rows
            self.tap_offsets = rows * torch.arange((p + 1) * k, device=device).view(p + 1, k, 1)
            self.v_windows_copy = self.v_rows.new_empty(width * n, (p + 1) * k * G)  # (W*n, (p+1)*k*G)
        self.v_new = self.v_rows[-1, p : p + width]  # (W, n, C or G), contiguous
        self.v_pre = weights.vh.new_empty(width, n, 2 * C)  # the vertical pre-activation, and its halves
        self.v_pre_a, self.v_pre_b = self.v_pre.chunk(2, dim=-1)
        self.next_v: Tensor | None = None
        if weights.condition is not None:  # (C_s+1, 4C): the vertical stack's 2C, then the horizontal stack's
            self.cond_v_t, self.cond_h_t = (half.contiguous() for half in weights.condition.chunk(2, dim=1))
            self.cond_v = weights.vh.new_zeros(width * n, 2 * C)

    def connect(self, after: VerticalState | None) -> None:
        """Where :meth:`begin_row` writes the vertical output: the next layer's ``v_new`` (None for the last, whose
        vertical output nobody reads)."""
        self.next_v = None if after is None else after.v_new

    def begin_row(self, first: bool, condition: Tensor | None = None) -> None:
        """Start a row: the vertical convolution over the cached rows (``v_new`` written beforehand: the vertical
        input of the row above), vh from it, and the next layer's vertical input (its ``v_new``). ``first``: the
        first row, with nothing above: vh holds the biases alone. ``condition`` (W*n, C_s + 1): the conditioning
        map at this row, its channels and a column of ones, for a conditioned layer."""
        vh = self.vh.view(self.vh_bias.shape)  # (W*n, 2C)
        if first:
            vh.copy_(self.vh_bias)
            if condition is not None:
                vh.addmm_(condition, self.cond_h_t)
                torch.mm(condition, self.cond_v_t, out=self.cond_v)  # this row's, for the next one
            return
        W, n, C2 = self.v_pre.shape
        v_pre = self.v_pre.view(W * n, C2)
        if self.tables is None:
            self.v_windows_copy.view(self.v_windows.shape).copy_(self.v_windows)  # (W, n, p+1, k, C)
            torch.addmm(self.v_bias, self.v_windows_copy, self.v_weight_t, out=v_pre)
        else:
            torch.add(self.v_windows, self.tap_offsets, out=self.v_windows_copy.view(self.v_windows.shape))
            torch.add(F.embedding_bag(self.v_windows_copy, self.tables, mode="sum"), self.v_bias, out=v_pre)
        torch.addmm(self.vh_bias, v_pre, self.vh_weight_t, out=vh)  # (W*n, 2C) sees rows < r
        if condition is not None:
            vh.addmm_(condition, self.cond_h_t)  # (W*n, 2C): the conditioning map at this row
        if self.next_v is not None:
            if self.bias_v is not None:
                self.v_pre.add_(self.bias_v)  # (W, n, 2C)
            if condition is not None:
                v_pre.add_(self.cond_v)  # the row above's conditioning
                torch.mm(condition, self.cond_v_t, out=self.cond_v)  # this row's, for the next one
            torch.mul(self.v_pre_a.tanh_(), self.v_pre_b.sigmoid_(), out=self.next_v)  # (W, n, C), as gate()
        # the rows up one, the oldest dropped: v_new is free for the next row's input (overlapping unless p = 1)
        self.v_rows[:-1].copy_(self.v_rows[1:] if self.p == 1 else self.v_rows[1:].clone())


class GatedPixelCNNRows:
    """A :class:`~vqvae_prior.prior.GatedPixelCNN`'s work once a row: every layer's vertical stack over the row above
    (``vertical``, one :class:`VerticalState` a layer, each writing the next one's input), and the layout of the
    codes, each pixel's G image channels side by side in a row of the code map (``embed``).

    A prior conditioned on a code map (the top level's) is given it whole, ``condition`` (n, h / scale, w / scale):
    its conditioning map (``GatedPixelCNN.condition_map``) is computed once, laid out by rows (``condition_rows``
    (h, W n, C_s + 1), each row's channels and a column of ones), and each row's is handed to every layer. The row
    is picked by a row counter on the device (``row``), reset in the first row and moved on in each later one, so
    that a CUDA graph of one row's work picks the right row when replayed."""

    def __init__(
        self, model: GatedPixelCNN, n: int, width: int, labels: Tensor | None, weights: SamplingWeights,
        condition: Tensor | None = None,
    ) -> None:
        if model.training:
            raise RuntimeError("the sampling states compute the eval-mode network (no dropout): call .eval()")
        self.G, self.K = model.image_channels, model.config.codebook_size
        self.embedding, self.d = model.embedding, model.embedding.embedding_dim  # d = C / G
        self.offsets = torch.arange(self.G, device=model.device) * self.K  # (G,) each channel's embedding rows
        # the first layer's vertical input: codes (its convolution by table look-ups), as logits_from_codes
        self.vertical = [VerticalState(layer, n, width, labels, w) for layer, w in zip(model.layers, weights.layers)]
        for layer, after in zip(self.vertical, self.vertical[1:] + [None]):
            layer.connect(after)
        self.condition_row = None
        if condition is not None:
            rows = rearrange(model.condition_map(condition), "n c h w -> h (w n) c")  # (h, W*n, C_s)
            self.condition_rows = F.pad(rows, (0, 1), value=1.0)  # (h, W*n, C_s + 1)
            self.condition_row = self.condition_rows[:1].clone()  # (1, W*n, C_s + 1): the current row's
            self.row = torch.zeros(1, dtype=torch.long, device=model.device)

    def start_row(self, above: Tensor | None) -> None:
        """Every layer's vertical stack over the codes of the row above (n, w*G), or None in the first row."""
        if above is not None:  # the first layer's vertical input: the embedding rows of the codes
            self.vertical[0].v_new.copy_(rearrange(above, "n (w g) -> w n g", g=self.G) + self.offsets)  # (w, n, G)
        condition = None
        if self.condition_row is not None:
            self.row.zero_() if above is None else self.row.add_(1)
            torch.index_select(self.condition_rows, 0, self.row, out=self.condition_row)
            condition = self.condition_row[0]  # (W*n, C_s + 1)
        for layer in self.vertical:
            layer.begin_row(above is None, condition)

    def embed(self, codes: Tensor, channel: int) -> Tensor:
        """The embedding (n, C / G) of the codes (n,) of image channel ``channel``."""
        return self.embedding(codes + self.offsets[channel] if self.G > 1 else codes)


class HorizontalState:
    """A :class:`~vqvae_prior.layers.GatedLayer`'s horizontal stack, one position at a time, from a cache of its
    input row; its vertical stack's contribution is the :class:`VerticalState`'s ``vh``.

    Per position (r, c) the layer's horizontal input at column c is written (by :meth:`put`, or by the layer below,
    see :meth:`connect`), and :meth:`step` runs the horizontal convolution on its cached window and writes the
    layer's outputs. The buffers:

    - ``h_row`` (n, W + p, C): the current row of the horizontal input, padded p columns on the left (never written,
      so zero). The window of column c, ``h_row[:, c : c + kw]``, is a (n, kw C) matrix as it lies (no copy);
      a column is written before any window reads it, so the row from before is never cleared;
    - the pre-activation of column c: vh's column itself, turned into it in place (with G image channels each pixel's
      G steps need vh's column as it was, and write into ``h_pre`` instead);
    - ``gated`` (n, C + 1): the gated units of the current position and a constant 1, given by :meth:`connect`. The
      1x1 output convolution's weights carry the bias as one more row (``weights.residual``, (C+1, C)), so that a
      product of ``gated`` adds it. The skip output is left to :class:`GatedPixelCNNState`, which sums every
      layer's with one product of their ``gated`` and their stacked ``weights.skip``.

    :meth:`step` runs once per layer and position, so it is written for few operator calls: the views it reads and
    writes are made once per column here, the weights come laid out for the products, and the outputs go into
    preallocated buffers: five operators a step.
    """

    def __init__(self, layer: GatedLayer, vertical: VerticalState, n: int, width: int,
                 weights: GatedLayerWeights) -> None:
        C, p = layer.channels, layer.pad
        self.first, self.kw = layer.first, weights.h.shape[0] // C
        self.h_weight_t, self.res_weight_t = weights.h, weights.residual  # (kw*C, 2C), (C+1, C)
        self.h_row = weights.h.new_zeros(n, width + p, C)
        # per column c: the window (n, kw*C), vh (n, 2C), the pre-activation and its halves, and the input (n, C)
        # there, all views (each list made by one unbind). The window: columns c .. c + kw - 1 of h_row, kw*C
        # consecutive floats per code map
        self.windows = self.h_row.as_strided((width, n, self.kw * C), (C, (width + p) * C, 1)).unbind(0)
        self.vh_columns = vertical.vh.unbind(0)
        if layer.groups == 1:
            self.h_pre = self.vh_columns
            self.h_pre_a, self.h_pre_b = (half.unbind(0) for half in vertical.vh.chunk(2, dim=-1))  # (n, C) each
        else:
            h_pre = weights.h.new_empty(n, 2 * C)
            self.h_pre, self.h_pre_a, self.h_pre_b = [h_pre] * width, [h_pre[:, :C]] * width, [h_pre[:, C:]] * width
        self.inputs = self.h_row[:, p:].unbind(1)
        self.connect(weights.h.new_ones(n, C + 1), None)

    def connect(self, gated: Tensor, after: HorizontalState | None) -> None:
        """Where :meth:`step` writes: the gated units into ``gated`` (n, C + 1), whose last column must be 1, and the
        horizontal output into ``after``'s input (the next layer; None for the last, whose output nobody reads)."""
        self.gated, self.units = gated, gated[:, :-1]  # (n, C + 1), (n, C)
        next_inputs = [None] * len(self.inputs) if after is None else after.inputs
        # per column c, every view that step reads or writes there, in one tuple (fewer look-ups a step)
        self.columns = list(zip(self.vh_columns, self.windows, self.h_pre, self.h_pre_a, self.h_pre_b, self.inputs,
                                next_inputs))

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


class GatedPixelCNNState:
    """A :class:`~vqvae_prior.prior.GatedPixelCNN` computed one raster position at a time: the cached sampler's view
    of the network (a ``SamplingState``). The logits at each position equal those of a full forward pass over the
    codes put so far.

    With G image channels the code map's column c holds channel c % G of pixel c // G: the layers step over pixels,
    and each channel of a pixel is one more step at that pixel (the values put so far changed its input), whose
    logits are those of its channel; the channel masks keep the values not yet put from reaching them."""

    def __init__(self, model: GatedPixelCNN, n: int, shape: tuple[int, int], labels: Tensor | None,
                 condition: Tensor | None = None) -> None:
        weights, width = prepared_weights(model), shape[1] // model.image_channels  # width: pixels per row
        self.rows = GatedPixelCNNRows(model, n, width, labels, weights, condition)
        self.G, self.K = self.rows.G, self.rows.K
        self.layers = [
            HorizontalState(layer, vertical, n, width, layer_weights)
            for layer, vertical, layer_weights in zip(model.layers, self.rows.vertical, weights.layers)
        ]
        C, L = model.config.channels, len(self.layers)
        # every layer's gated units and a constant 1, side by side: the skip outputs' sum (biases included) is one
        # product of them with the layers' skip weights, stacked
        self.gated = weights.skip.new_ones(n, L, C + 1)  # (n, L, C+1)
        self.gated_rows = self.gated.view(n, L * (C + 1))
        for i, (layer, after) in enumerate(zip(self.layers, self.layers[1:] + [None])):
            layer.connect(self.gated[:, i], after)
        self.skip_weight_t = weights.skip  # (L*(C+1), C)
        self.skips = weights.skip.new_ones(n, C + 1)  # (n, C + 1): the skips' sum and a column of ones
        self.skip_sum = self.skips[:, :C]
        self.head = model.head.step(n, weights.head)

    def start_row(self, above: Tensor | None) -> None:
        """Start a row, given the codes of the row above (n, w*G), or None in the first row."""
        self.rows.start_row(above)

    def logits(self, c: int) -> Tensor:
        """Logits (n, K) at column c of the current row, given the codes put before it."""
        pixel, channel = divmod(c, self.G)
        for layer in self.layers:
            layer.step(pixel)  # its gated units, and the next layer's input at this pixel
        torch.mm(self.gated_rows, self.skip_weight_t, out=self.skip_sum)  # (n, C): the skips' sum
        logits = self.head(self.skips)  # (n, G*K)
        return logits if self.G == 1 else logits[:, channel * self.K : (channel + 1) * self.K]  # (n, K)

    def put(self, c: int, codes: Tensor) -> None:
        """The codes (n,) chosen at column c of the current row: the first layer's input for what comes after."""
        if self.G == 1:  # one value per position: as few operators as possible
            torch.index_select(self.rows.embedding.weight, 0, codes, out=self.layers[0].inputs[c])  # (n, C)
            return
        pixel, channel = divmod(c, self.G)
        self.layers[0].put(pixel, self.rows.embed(codes, channel), channel * self.rows.d)  # (n, C / G)
