"""Today's sampler draws the codes that the cached sampler of main at commit 1811e11 drew, before each layer owned its
step-by-step computation: that sampler is kept below verbatim, except that it also records the logits and draws with
today's ``sample_from_logits`` (changed since for tiny temperatures: logits shifted to a maximum of 0, the first code
whose cumulative probability exceeds u; the same draws at temperature 1 but for exact ties).

Today's layers compute each convolution as one matrix product over column-major rows, where 1811e11 ran
``F.conv2d``: the same sums in another order, so the logits agree to float rounding (checked to 1e-5), not to the
bit. A draw could differ only where a uniform falls within that rounding of a cumulative probability; for these
seeds none does, and every code is the same."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vqvae_prior.layers import gate
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.sampling import stepwise
from vqvae_prior.sampling.draw import sample_from_logits


def _start(model, n, shape, temperature, generator, given):
    device = model.device
    u = torch.rand((n, *shape), generator=generator, device=device)  # (n, h, w)
    if given is None:
        given = torch.full((n, *shape), -1, dtype=torch.long, device=device)
    given = given.to(device=device, dtype=torch.long)
    keep = given >= 0  # (n, h, w)
    return u, given.clamp(min=0), keep


@torch.no_grad()
def sample_cached_1811e11(
    model, n, shape, labels=None, temperature=1.0, generator=None, given=None, record=None
) -> Tensor:
    """``record``: a list that receives the logits (n, K) of every position, in raster order."""
    labels = model.check_labels(labels, n)
    u, indices, keep = _start(model, n, shape, temperature, generator, given)
    H, W = shape
    layers = model.layers
    C = model.config.channels

    # per layer: weights as matrices, label biases, and the row caches
    h_weights = [rearrange(layer.h_conv.weight, "o c 1 k -> o (c k)") for layer in layers]  # (2C, C*kw)
    h_out = [rearrange(layer.h_out.weight, "o i 1 1 -> o i") for layer in layers]  # (2C, C)
    bias_v, bias_h = [], []
    for layer in layers:
        if layer.label_bias is None:
            bias_v.append(None)
            bias_h.append(None)
        else:
            bv, bh = layer.label_bias(labels).chunk(2, dim=1)  # (n, 2C) each
            bias_v.append(bv[:, :, None, None])
            bias_h.append(bh[:, :, None])
    pads = [layer.pad for layer in layers]
    widths = [layer.h_conv.weight.shape[-1] for layer in layers]  # horizontal kernel widths
    _, head_in, _, head_out = model.head  # ReLU, 1x1, ReLU, 1x1: as matrices for one position
    head_weights = [rearrange(conv.weight, "o i 1 1 -> o i") for conv in (head_in, head_out)]
    x0 = torch.zeros(n, C, 1, W, device=model.device)
    # v_rows[l]: the last p+1 rows of layer l's vertical input, padded by p columns on each side
    v_rows = [F.pad(x0, (p, p, p, 0)) for p in pads]  # (n, C, p+1, W+2p), rows < 0 are zero
    # h_rows[l]: the current row of layer l's horizontal input, padded by p columns on the left
    h_rows = [F.pad(x0[:, :, 0], (p, 0)) for p in pads]  # (n, C, W+p)
    # vh[l]: the vertical stack's contribution to the horizontal pre-activation of the current row
    vh: list[Tensor] = []

    for r in range(H):
        # -- start of row r: vertical stacks over row r-1 (zero input above the grid) -------------------------
        vh = []
        v_in = rearrange(model.embedding(indices[:, r - 1]), "n w c -> n c 1 w") if r > 0 else None
        for i, layer in enumerate(layers):
            p = pads[i]
            if v_in is None:
                v_pre = torch.zeros(n, 2 * C, 1, W, device=model.device)  # shift_down's zero row
            else:
                v_rows[i] = torch.cat([v_rows[i][:, :, 1:], F.pad(v_in, (p, p))], dim=2)  # (n, C, p+1, W+2p)
                v_pre = F.conv2d(v_rows[i], layer.v_conv.weight, layer.v_conv.bias)  # (n, 2C, 1, W)
            vh_i = F.conv2d(v_pre, layer.v_to_h.weight, layer.v_to_h.bias)[:, :, 0]  # (n, 2C, W)
            vh.append(vh_i if bias_h[i] is None else vh_i + bias_h[i])
            if v_in is not None:
                v_in = gate(v_pre if bias_v[i] is None else v_pre + bias_v[i])  # (n, C, 1, W) next layer's input
        h_rows = [torch.zeros_like(row) for row in h_rows]

        # -- positions of row r: horizontal stacks on their cached windows -------------------------------------
        for c in range(W):
            skips = 0
            for i, layer in enumerate(layers):
                p = pads[i]
                kw = widths[i]
                window = h_rows[i][:, :, c : c + kw]  # (n, C, kw): input columns c-p .. c (.. c-1 if first)
                h_pre = F.linear(rearrange(window, "n c k -> n (c k)"), h_weights[i], layer.h_conv.bias)  # (n, 2C)
                h_pre = h_pre + vh[i][:, :, c]
                residual, skip = F.linear(gate(h_pre), h_out[i], layer.h_out.bias).chunk(2, dim=1)  # (n, C) each
                skips = skips + skip
                if i + 1 < len(layers):
                    h_next = residual if layer.first else h_rows[i][:, :, c + p] + residual  # (n, C)
                    h_rows[i + 1][:, :, c + pads[i + 1]] = h_next
            hidden = F.relu(F.linear(F.relu(skips), head_weights[0], head_in.bias))  # (n, head_channels)
            logits = F.linear(hidden, head_weights[1], head_out.bias)  # (n, K)
            if record is not None:
                record.append(logits.clone())
            drawn = sample_from_logits(logits, u[:, r, c], temperature)  # (n,) today's rule
            indices[:, r, c] = torch.where(keep[:, r, c], indices[:, r, c], drawn)
            h_rows[0][:, :, c + pads[0]] = model.embedding(indices[:, r, c])  # (n, C) input of position c+1
    return indices


# ---------------------------------------------------------------------------------------------- the test

K = 16

CASES = [  # (num_classes, num_layers, first_kernel_size, shape, temperature, given rows)
    (3, 3, 7, (7, 7), 1.0, 0), (0, 4, 7, (5, 9), 1.0, 0), (3, 2, 3, (10, 8), 0.7, 0), (0, 1, 5, (3, 4), 1.0, 0),
    (3, 3, 7, (7, 7), 1.0, 3), (3, 2, 3, (10, 8), 1.0, 3),
]


@pytest.mark.parametrize("num_classes,num_layers,first_kernel,shape,temperature,given_rows", CASES)
def test_codes_are_bit_identical_and_logits_equal_to_rounding_to_the_cached_sampler_of_1811e11(
    num_classes, num_layers, first_kernel, shape, temperature, given_rows, monkeypatch
):
    """Same generator seed -> the same codes as before the layers owned their step computation, and the same logits
    at every step to float rounding: generate() returns what it returned then; so does a completion (given rows)."""
    config = PriorConfig(K, num_classes, channels=8, num_layers=num_layers, first_kernel_size=first_kernel,
                         head_channels=16)
    prior = GatedPixelCNN(config).eval()
    labels = torch.arange(6) % num_classes if num_classes else None
    given = None
    if given_rows:
        given = torch.full((6, *shape), -1)
        given[:, :given_rows] = torch.randint(0, K, (6, given_rows, shape[1]))
    old_logits, new_logits = [], []
    generator = torch.Generator().manual_seed(5)
    old = sample_cached_1811e11(prior, 6, shape, labels, temperature, generator, given, record=old_logits)
    original = stepwise.sample_from_logits
    record = lambda logits, u, t: new_logits.append(logits.clone()) or original(logits, u, t)  # noqa: E731
    monkeypatch.setattr(stepwise, "sample_from_logits", record)
    new = prior.sample(6, shape, labels, temperature, torch.Generator().manual_seed(5), given)
    assert torch.equal(new, old)
    assert len(new_logits) == len(old_logits) == shape[0] * shape[1]
    for a, b in zip(new_logits, old_logits):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
