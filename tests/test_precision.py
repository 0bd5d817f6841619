"""--precision and --compile: mixed-precision fits keep fp32 weights and checkpoints that load anywhere; fp16
without CUDA is refused before any work; a compiled fit writes the plain module's checkpoints."""

from __future__ import annotations

import math
import platform
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from fits import PRIOR_3_LAYERS, VQVAE_32_CODES
from pipelines import fit_prior, fit_vqvae
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.training import distributed
from vqvae_prior.training.steps import MixedPrecision
from vqvae_prior import load_prior, load_vqvae
from vqvae_prior.errors import UsageError


def fit_both(tmp_path, digit_folder, *extra: str) -> tuple[dict, dict]:
    common = ["--epochs", "1", "--no-progress", "--device", "cpu", "--batch-size", "16", *extra]
    vq = fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(
        ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path / "vq"), *VQVAE_32_CODES,
         *common]))
    prior = fit_prior.main(fit_prior.get_args_parser().parse_args(
        ["--vqvae", str(tmp_path / "vq" / "vqvae.pt"), "--out", str(tmp_path / "prior"), *PRIOR_3_LAYERS, *common]))
    return vq, prior


def test_bf16_fits_keep_fp32_weights_and_fp32_held_out_metrics(tmp_path, digit_folder):
    vq, prior = fit_both(tmp_path, digit_folder, "--precision", "bf16")
    assert math.isfinite(vq["test_mse"]) and 0 < prior["test_bits_per_code"] < 10
    for model, payload in (load_vqvae(tmp_path / "vq" / "vqvae.pt"), load_prior(tmp_path / "prior" / "prior.pt")):
        assert {p.dtype for p in model.state_dict().values() if p.is_floating_point()} == {torch.float32}
        assert payload["args"]["precision"] == "bf16"


def test_autocast_runs_the_forward_pass_in_bf16_and_the_step_in_fp32():
    precision = MixedPrecision("bf16", torch.device("cpu"))
    layer = nn.Linear(4, 3)
    with precision.autocast():
        y = layer(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    precision.step(y.float().square().mean(), optimizer)
    assert layer.weight.dtype == torch.float32 and not torch.equal(layer.weight, before)
    assert precision.state_dict() == {}  # no scaler outside fp16


def test_fp16_without_cuda_is_refused_before_any_work(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: fp16 is allowed")
    with pytest.raises(UsageError, match="--precision fp16 needs CUDA .* pass bf16 or fp32"):
        fit_vqvae.fit(tmp_path / "vq", precision="fp16", device="cpu")
    assert not (tmp_path / "vq").exists()


def test_a_compiled_fit_writes_the_plain_modules_checkpoints(tmp_path, digit_folder, monkeypatch):
    """--compile compiles the model in place (``nn.Module.compile``), so its checkpoints hold the plain module's
    keys; the compiler itself is replaced here by a record of the call (a real compile takes minutes on 2 cores:
    the slow test below runs it)."""
    compiled = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    fit_both(tmp_path, digit_folder, "--compile")
    assert compiled == ["VQVAE", "GatedPixelCNN"]
    for model, _ in (load_vqvae(tmp_path / "vq" / "vqvae.pt"), load_prior(tmp_path / "prior" / "prior.pt")):
        assert not any("_orig_mod" in key for key in model.state_dict())


@pytest.mark.slow
def test_a_compiled_fit_equals_an_eager_one(tmp_path, digit_folder):
    eager = fit_both(tmp_path / "eager", digit_folder)
    compiled = fit_both(tmp_path / "compiled", digit_folder, "--compile")
    assert compiled[0]["test_mse"] == pytest.approx(eager[0]["test_mse"], rel=1e-3)
    assert compiled[1]["test_bits_per_code"] == pytest.approx(eager[1]["test_bits_per_code"], rel=1e-3)


def test_the_training_forward_equals_the_sampling_forward_to_rounding():
    """In training the gates compute tanh as 2 sigmoid(2a) - 1 on the CPU (faster there); the loss is the one the
    samplers' forward (torch.tanh) gives, to fp32 rounding, and so are the logits."""
    torch.manual_seed(0)
    model = GatedPixelCNN(PriorConfig(32, num_classes=3, channels=16, num_layers=4, head_channels=32)).train()
    codes, labels = torch.randint(32, (8, 6, 5)), torch.randint(3, (8,))
    trained = model.nll(codes, labels)
    logits = model(codes, labels)
    with torch.no_grad():
        sampled = model.nll(codes, labels)
        assert torch.allclose(model(codes, labels), logits, rtol=0, atol=1e-5)
    assert trained.requires_grad and abs(trained.item() - sampled.item()) <= 1e-6 * sampled.item()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc options")
def test_fits_on_the_cpu_keep_freed_memory_for_reuse(tmp_path, digit_folder, monkeypatch):
    """retain_freed_memory: a 64 MiB block comes from the heap (no mmap) and stays there once freed (no trim), so the
    next step's tensors reuse its pages; checked in a process of its own with glibc's mallinfo2. The fits set it."""
    probe = textwrap.dedent("""
        import ctypes, torch
        from vqvae_prior.training.steps import retain_freed_memory
        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Info
        assert retain_freed_memory()
        before = libc.mallinfo2().hblkhd
        x = torch.empty(16 * 2**20)  # 64 MiB
        mapped = libc.mallinfo2().hblkhd - before
        del x
        print(mapped, libc.mallinfo2().fordblks)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    mapped, free_in_heap = map(int, out)
    assert mapped < 2**20 and free_in_heap >= 64 * 2**20
    calls = []
    monkeypatch.setattr(distributed, "retain_freed_memory", lambda: calls.append(1) or True)
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(
        ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path), "--epochs", "1",
         "--batch-size", "16", "--no-progress", "--device", "cpu", *VQVAE_32_CODES]))
    assert calls == [1]
