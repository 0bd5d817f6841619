"""Gated PixelCNN prior: causality, shapes, conditioning, likelihood (its full receptive field, against the plain
stack's blind spot: test_plain_prior.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vqvae_prior.layers import MaskedConv2d, gate, shift_down
from vqvae_prior.prior import GatedPixelCNN, PriorConfig


def dependency_map(logits_fn, channels: int, shape: tuple[int, int], position: tuple[int, int]) -> torch.Tensor:
    """|d logits[position] / d input| summed over channels: (h, w), from a float64 input."""
    x = torch.randn(1, channels, *shape, dtype=torch.float64, requires_grad=True)
    logits_fn(x)[0, :, position[0], position[1]].sum().backward()
    return x.grad[0].abs().sum(0)  # (h, w)


def raster_masks(shape: tuple[int, int], position: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(before, at_or_after) boolean (h, w) masks of a position in raster order."""
    order = torch.arange(shape[0] * shape[1]).reshape(shape)
    p = position[0] * shape[1] + position[1]
    return order < p, order >= p


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gate_and_shift_down_equal_their_definitions_and_gradients(layout):
    """The layer's two hand-written autograd functions: values as the plain expressions (tanh . sigmoid of the halves;
    a zero-padded shift), gradients checked against finite differences, the input's memory layout kept."""
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    assert torch.allclose(gate(x), torch.tanh(x[:, :3]) * torch.sigmoid(x[:, 3:]), rtol=0, atol=1e-15)
    a, b = x.detach().float().chunk(2, dim=1)
    with torch.no_grad():  # sampling: torch.tanh itself, as the cached samplers compute it
        assert torch.equal(gate(torch.cat([a, b], dim=1).contiguous(memory_format=layout)),
                           torch.tanh(a) * torch.sigmoid(b))
    trained = gate(torch.cat([a, b], dim=1).requires_grad_())  # training on the CPU: 2 sigmoid(2a) - 1 for tanh
    assert torch.allclose(trained, torch.tanh(a) * torch.sigmoid(b), rtol=0, atol=3e-7)
    assert torch.autograd.gradcheck(gate, (x,))
    assert torch.autograd.gradcheck(lambda t: gate(t, dim=-1), (x[..., :2].detach().requires_grad_(),))
    with pytest.raises(ValueError, match="rows must be >= 0"):
        shift_down(x, -1)
    for rows in (0, 1, 2, 4, 5):
        expected = torch.cat([torch.zeros_like(x[:, :, :rows]), x[:, :, : max(4 - rows, 0)]], dim=2)[:, :, :4]
        assert torch.equal(shift_down(x, rows), expected)
        assert shift_down(x, rows).is_contiguous(memory_format=layout)
        assert torch.autograd.gradcheck(lambda t: shift_down(t, rows), (x,))


@pytest.mark.parametrize("shape", [(6, 6), (5, 9), (9, 4)])
@pytest.mark.parametrize("num_classes,dropout", [(0, 0.0), (3, 0.0), (3, 0.5)])
def test_causality_gradient_is_exactly_zero_at_and_after_each_position(shape, num_classes, dropout):
    """Also in training mode with dropout (elementwise: it cannot move information between positions)."""
    torch.manual_seed(0)
    config = PriorConfig(16, num_classes, channels=8, num_layers=3, head_channels=16, dropout=dropout)
    model = GatedPixelCNN(config).double().train(dropout > 0)
    labels = torch.tensor([1]) if num_classes else None
    for position in [(0, 0), (shape[0] // 2, shape[1] // 2), (shape[0] - 1, shape[1] - 1), (1, shape[1] - 1)]:
        grad = dependency_map(lambda x: model.logits_from_embeddings(x, labels), 8, shape, position)
        _, at_or_after = raster_masks(shape, position)
        assert torch.all(grad[at_or_after] == 0), f"position {position} sees the future: {grad}"


@pytest.mark.parametrize("shape", [(7, 7), (8, 5), (3, 12)])
def test_logits_shape_and_bits_per_code(shape, tiny_prior):
    model = tiny_prior(num_classes=4)
    indices = torch.randint(0, 16, (3, *shape))
    labels = torch.tensor([0, 3, 1])
    assert model(indices, labels).shape == (3, 16, *shape)
    bits = model.bits_per_code(indices, labels).detach()
    assert bits.shape == () and bits > 0
    assert math.isclose(float(bits), float(model.nll(indices, labels).detach()) / math.log(2), rel_tol=1e-6)


def test_uniform_prior_has_log2_k_bits_per_code(tiny_prior):
    model = tiny_prior()
    for p in model.head[-1].parameters():
        nn.init.zeros_(p)  # all logits zero: the uniform distribution over K = 16 codes
    assert math.isclose(float(model.bits_per_code(torch.randint(0, 16, (2, 5, 5))).detach()), 4.0, rel_tol=1e-6)


def test_class_label_changes_the_logits(tiny_prior):
    model = tiny_prior(num_classes=3)
    for layer in model.layers:
        nn.init.normal_(layer.label_bias.weight)
    indices = torch.randint(0, 16, (1, 4, 4))
    assert not torch.allclose(model(indices, torch.tensor([0])), model(indices, torch.tensor([2])))


def test_label_errors(tiny_prior):
    conditional, unconditional = tiny_prior(num_classes=3), tiny_prior()
    with pytest.raises(ValueError, match="class-conditional"):
        conditional.check_labels(None, 2)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        conditional.check_labels([0, 3], 2)
    with pytest.raises(ValueError, match="expected 2 labels"):
        conditional.check_labels([0], 2)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.check_labels([0, 1], 2)


def test_masked_conv_masks():
    a, b = MaskedConv2d(1, 1, 3, "A").mask, MaskedConv2d(1, 1, 3, "B").mask
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("fields,shape", [
    ({"num_classes": 3}, (5, 6)),
    ({"image_channels": 3, "channels": 12, "head_channels": 24, "codebook_size": 8}, (4, 9)),  # RGB: G tables, masks
    ({"first_kernel_size": 5, "num_layers": 1}, (3, 7)),
])
def test_forward_from_codes_equals_forward_from_embeddings(fields, shape):
    """The first layer's convolutions computed from the codes (a table per kernel tap) are the convolutions of the
    embedded codes: the same logits and the same gradients, to float rounding."""
    torch.manual_seed(0)
    model = GatedPixelCNN(PriorConfig(**{"codebook_size": 16, "channels": 8, "num_layers": 3, "head_channels": 16,
                                         **fields}))
    indices = torch.randint(model.config.codebook_size, (4, *shape))
    labels = torch.tensor([0, 2, 1, 0]) if model.config.num_classes else None
    from_codes = model(indices, labels)
    from_embeddings = model.code_map_logits(model.embed(indices), labels)
    torch.testing.assert_close(from_codes, from_embeddings, rtol=1e-5, atol=1e-6)
    params = list(model.parameters())
    grads = torch.autograd.grad(from_codes.square().sum(), params)
    for g, g_ref in zip(grads, torch.autograd.grad(from_embeddings.square().sum(), params)):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)
