"""Vector quantizer: straight-through gradient, eval round trip, EMA updates, dead-code restarts, fp32, usage."""

from __future__ import annotations

import pytest
import torch

from vqvae_prior.quantizer import CodeUsage, VectorQuantizer


def test_straight_through_gradient_is_the_identity():
    q = VectorQuantizer(8, 4)
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    weights = torch.randn(2, 4, 3, 5)
    (q(z).quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)


@pytest.mark.parametrize("ema", [True, False])
def test_eval_output_equals_decoding_its_indices(ema):
    q = VectorQuantizer(16, 4, ema=ema)
    q(torch.randn(4, 4, 6, 5))  # training step: initializes the codebook from the data
    q.eval()
    z = torch.randn(3, 4, 6, 5)
    out = q(z)
    assert out.indices.shape == (3, 6, 5)
    torch.testing.assert_close(out.quantized, q.decode(out.indices))
    torch.testing.assert_close(q.encode(z), out.indices)
    # each index is the nearest code
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.equal(torch.cdist(flat, q.codebook).argmin(1), out.indices.flatten())


def test_codebook_is_initialized_from_the_first_batch():
    q = VectorQuantizer(8, 3, dead_code_threshold=0)
    z = torch.randn(2, 3, 4, 4)
    q(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 3)
    # every code is one of the batch's vectors (EMA moved it at most a little toward its cluster)
    assert torch.cdist(q.codebook, rows).min(1).values.max() < 1.0
    assert bool(q.initialized)


class CountedFlag(torch.Tensor):
    """A bool tensor that counts how often it is read on the host."""

    reads = 0

    def __bool__(self) -> bool:
        CountedFlag.reads += 1
        return super().__bool__()


def test_the_initialized_flag_is_read_from_the_device_once_and_again_after_a_load():
    """Training steps do not wait for the device to learn whether the codebook is initialized (a host sync per
    step on a GPU): the flag is read once, and again after load_state_dict, which may bring an uninitialized
    codebook (then it is initialized from the next batch)."""
    q = VectorQuantizer(8, 3)
    q._buffers["initialized"] = torch.tensor(False).as_subclass(CountedFlag)
    CountedFlag.reads = 0
    for _ in range(3):
        q(torch.randn(2, 3, 4, 4))
    assert CountedFlag.reads == 1 and q.usage.sum() > 0
    q.load_state_dict(VectorQuantizer(8, 3).state_dict())  # initialized: False, usage zero
    q(torch.randn(2, 3, 4, 4))
    assert CountedFlag.reads == 2 and bool(q.initialized) and q.usage.min() > 0  # initialized: usage 1 each, decayed


def test_ema_moves_codes_toward_their_assigned_vectors():
    q = VectorQuantizer(2, 2, decay=0.9, dead_code_threshold=0)
    q.initialized.fill_(True)
    q.codebook.data = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    q.ema_sum.copy_(q.codebook.data)
    q.usage.fill_(1.0)
    target = torch.tensor([1.0, -1.0])
    z = target.view(1, 2, 1, 1).expand(1, 2, 4, 4).contiguous()  # 16 vectors, all nearest to code 0
    before = (q.codebook[0] - target).norm()
    for _ in range(5):
        q(z)
    assert (q.codebook[0] - target).norm() < before * 0.5
    # an unused code keeps its value, up to the Laplace smoothing of the cluster sizes
    torch.testing.assert_close(q.codebook[1], torch.tensor([10.0, 10.0]), rtol=1e-3, atol=0)


def test_dead_code_is_restarted_from_an_encoder_output():
    q = VectorQuantizer(4, 2, dead_code_threshold=1.0)
    q.initialized.fill_(True)
    q.codebook.data = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [100.0, 100.0]])
    q.ema_sum.copy_(q.codebook.data)
    q.usage.fill_(1.0)
    z = torch.randn(1, 2, 4, 4) * 0.1
    q(z)  # code 3 gets nothing: its usage drops under the threshold and it is restarted
    rows = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.cdist(q.codebook[3:4], rows).min() < 1e-6
    assert q.usage[3] == 1.0


def test_codebook_loss_mode_learns_by_gradient():
    q = VectorQuantizer(4, 2, ema=False)
    assert q.codebook.requires_grad
    out = q(torch.randn(2, 2, 3, 3))
    (out.codebook_loss + out.commitment_loss).backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
    assert not VectorQuantizer(4, 2, ema=True).codebook.requires_grad


def test_quantizer_computes_in_fp32_under_autocast():
    q = VectorQuantizer(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(2, 4, 3, 3, dtype=torch.bfloat16))
    assert out.quantized.dtype == torch.float32
    assert q.codebook.dtype == torch.float32 and q.ema_sum.dtype == torch.float32


def test_code_usage_counts_perplexity_and_codes_used():
    usage = CodeUsage(8)
    usage.update(torch.arange(4).repeat(5))
    usage.update(torch.tensor([[0, 1], [2, 3]]))
    assert usage.codes_used == 4
    assert abs(usage.perplexity - 4.0) < 1e-6


@pytest.mark.parametrize("ema", [True, False])
def test_training_step_quantizes_to_the_codes_it_looked_up(ema):
    """In a training step, each vector goes to the code vector nearest to it *before* this step's EMA update and
    dead-code restarts (encodec's order): a code restarted in this step must not send its vectors to a random encoder
    output, and the EMA must not move the vectors it returns."""
    q = VectorQuantizer(4, 2, ema=ema, dead_code_threshold=1.0)
    q.initialized.fill_(True)
    q.codebook.data.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    q.ema_sum.copy_(q.codebook.data)
    q.usage.copy_(torch.tensor([5.0, 0.0, 5.0, 5.0]))  # code 1 is dead: it is restarted in this step
    before = q.codebook.detach().clone()  # (K, D)
    z = torch.tensor([[9.0, 9.5], [0.5, 0.2], [-9.0, 9.0], [8.0, -9.0]]).view(4, 2, 1, 1)  # (B, D, 1, 1)
    out = q(z)
    assert out.indices.flatten().tolist() == [1, 0, 2, 3]
    torch.testing.assert_close(out.quantized, before[out.indices].permute(0, 3, 1, 2))  # (B, D, 1, 1)
    assert not torch.equal(q.codebook, before)  # the step did update (and restart) the codebook
