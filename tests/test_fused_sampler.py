"""The fused sampler (one Triton kernel per position) and the CUDA-graph row replay return the reference samples.

On a machine with CUDA these tests run there (fused kernel compiled, rows replayed as CUDA graphs, both cached
samplers against the reference); without CUDA the fused kernel runs in Triton's CPU interpreter
(``TRITON_INTERPRET=1``, set by conftest.py before Triton is first imported, which is when Triton reads it).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vqvae_prior.errors import UsageError
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.sampling import resolve_method, stepwise

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
METHODS = ["fused", "cached"] if CUDA else ["fused"]  # on CUDA the cached sampler replays CUDA graphs too

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")


@pytest.fixture(autouse=True)
def _fp32_convolutions():
    """The reference runs convolutions; on CUDA cuDNN may use TF32 for them, which rounds far more than fp32."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def prior(**fields) -> GatedPixelCNN:
    return GatedPixelCNN(PriorConfig(**{"codebook_size": 16, "channels": 8, "num_layers": 4, "head_channels": 16,
                                        **fields})).to(DEVICE).eval()


def draw(model, n, shape, labels=None, method="fused", seed=1, **kw):
    generator = torch.Generator(DEVICE).manual_seed(seed)
    return model.sample(n, shape, labels, generator=generator, method=method, **kw)


CASES = [
    ({}, (5, 6)),  # unconditional, a rectangle
    ({"num_classes": 3}, (7, 7)),  # class-conditional
    ({"num_classes": 2, "codebook_size": 300, "channels": 48, "num_layers": 3, "head_channels": 40}, (4, 5)),
    # sizes that are no powers of two (padded inside the kernel)
    ({"num_layers": 1}, (3, 4)),  # the first layer alone
    ({"codebook_size": 8, "channels": 12, "num_layers": 3, "head_channels": 24, "image_channels": 3}, (4, 9)),
    # RGB pixels: three values per position, channel masks
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fields,shape", CASES)
def test_fused_sampler_returns_the_reference_samples(fields, shape, method):
    model = prior(**fields)
    n = 20 if CUDA else 4  # on CUDA more than one program of the kernel (16 code maps each)
    labels = torch.arange(n) % model.config.num_classes if model.config.num_classes else None
    for temperature in (1.0, 0.7):
        reference = draw(model, n, shape, labels, "reference", temperature=temperature)
        assert torch.equal(draw(model, n, shape, labels, method, temperature=temperature), reference)


def test_fused_logits_equal_a_full_forward_pass_at_every_step(monkeypatch):
    model = prior(num_classes=3)
    labels = torch.tensor([2, 0, 1], device=DEVICE)
    steps = []
    original = stepwise.sample_from_logits
    monkeypatch.setattr(stepwise, "sample_from_logits", lambda l, u, t: steps.append(l.clone()) or original(l, u, t))
    monkeypatch.setattr(stepwise, "CUDA_GRAPHS", False)  # a graph replay would not call the Python function
    samples = draw(model, 3, (4, 5), labels)
    assert len(steps) == 20
    for step, logits in enumerate(steps):
        r, c = divmod(step, 5)
        partial = samples.clone().reshape(3, -1)
        partial[:, step:] = 0  # positions not yet sampled at this step
        full = model(partial.reshape(samples.shape), labels)[:, :, r, c]  # (n, K)
        torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_fused_sampler_with_guidance_and_given_entries(method):
    model = prior(num_classes=3, label_dropout=0.1)
    labels = torch.tensor([0, 1, 2], device=DEVICE)
    given = torch.full((3, 4, 5), -1, device=DEVICE)
    given[:, 1, 2], given[0, 0, 0], given[2, 3] = 7, 3, 5
    for kw in ({"guidance": 2.0}, {"given": given}, {"given": given, "guidance": 1.0}):
        reference = draw(model, 3, (4, 5), labels, "reference", **kw)
        assert torch.equal(draw(model, 3, (4, 5), labels, method, **kw), reference)
    assert torch.equal(draw(model, 3, (4, 5), labels, method, given=given)[given >= 0], given[given >= 0])


@pytest.mark.parametrize("method", METHODS)
def test_fused_sampler_with_a_conditioning_map(method):
    """The bottom prior of two levels: the conditioning map reaches each row's vh, which the kernel reads."""
    model = prior(num_classes=3, label_dropout=0.1, condition_codebook_size=6)
    labels = torch.tensor([0, 1, 2], device=DEVICE)
    condition = torch.randint(6, (3, 3, 2), device=DEVICE)
    for kw in ({}, {"guidance": 2.0}):
        reference = draw(model, 3, (6, 4), labels, "reference", condition=condition, **kw)
        assert torch.equal(draw(model, 3, (6, 4), labels, method, condition=condition, **kw), reference)


def test_fused_sampler_refuses_a_device_it_cannot_run_on(monkeypatch):
    model = prior().cpu()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UsageError, match="runs on CUDA"):
        model.sample(2, (3, 3), method="fused")
    assert resolve_method(model, "auto") == "cached"  # auto never picks the interpreter


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need CUDA")
def test_cuda_graph_replay_equals_eager_rows(monkeypatch):
    model = prior(num_classes=3)
    labels = torch.tensor([0, 1, 2, 0], device=DEVICE)
    assert resolve_method(model, "auto") == "fused"
    for method in ("fused", "cached"):
        replayed = draw(model, 4, (6, 5), labels, method)
        monkeypatch.setattr(stepwise, "CUDA_GRAPHS", False)
        assert torch.equal(draw(model, 4, (6, 5), labels, method), replayed)
        monkeypatch.setattr(stepwise, "CUDA_GRAPHS", True)


def buffers(obj, seen=None) -> dict[str, int]:
    """Address of every tensor a sampling state holds (in its attributes, its lists, its layers' states)."""
    seen = set() if seen is None else seen
    found = {}
    if id(obj) in seen or isinstance(obj, torch.nn.Module) or not hasattr(obj, "__dict__"):
        return found
    seen.add(id(obj))
    for name, value in vars(obj).items():
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, torch.Tensor):
                found[f"{type(obj).__name__}.{name}[{i}]"] = item.data_ptr()
            else:
                found |= {f"{name}[{i}].{k}": v for k, v in buffers(item, seen).items()}
    return found


@pytest.mark.parametrize("method", ["cached", "fused"])
def test_row_replay_protocol_on_any_device(method, monkeypatch):
    """The CUDA-graph driver with the capture replaced by its contract (the row's work recorded, not run; each
    replay runs it on the same static buffers): the samples are the reference's, so the driver copies each row's
    inputs in and its codes out correctly; and no row moves a buffer of the state to another address (a graph's
    kernels read and write the addresses they were captured with). On CUDA the real capture is checked above."""
    monkeypatch.setattr(stepwise, "_use_graphs", lambda indices: True)
    monkeypatch.setattr(stepwise, "_capture", lambda work: work)
    addresses = []
    sample_row = stepwise._sample_row
    monkeypatch.setattr(stepwise, "_sample_row", lambda state, *a: addresses.append(buffers(state)) or
                        sample_row(state, *a))
    model = prior(num_classes=3, label_dropout=0.1)
    labels = torch.tensor([0, 1, 2], device=DEVICE)
    given = torch.full((3, 5, 4), -1, device=DEVICE)
    given[:, 3, 1], given[1, 4] = 6, 2
    for kw in ({}, {"given": given}, {"guidance": 1.5}):
        addresses.clear()
        reference = draw(model, 3, (5, 4), labels, "reference", **kw)
        assert torch.equal(draw(model, 3, (5, 4), labels, method, **kw), reference)
        assert len(addresses) == 5 and len(addresses[1]) > 10
        assert all(a == addresses[1] for a in addresses[1:])  # from row 1 (after the first) on, nothing moves
