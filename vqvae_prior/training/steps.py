"""What a training step needs: the device, the optimizer, mixed precision, the learning-rate schedule, and stopping a
fit whose loss is no longer finite.

A diverged fit (too high a learning rate, a NaN in the data or a loss weight) must not write NaN weights over its
last good checkpoint and exit 0. :class:`FiniteLoss` notes on the device the first step whose loss is not finite,
without waiting for the device each step, and the loop reads it every ``CHECK_EVERY`` steps and at the end of the
epoch; the weights and the held-out metric are checked before each checkpoint is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import platform
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vqvae_prior.checkpoint import nonfinite
from vqvae_prior.errors import UsageError, VQPriorError

__all__ = [
    "CHECK_EVERY", "PRECISIONS", "DivergedError", "FiniteLoss", "MixedPrecision", "adam", "lr_schedule", "pick_device",
    "retain_freed_memory",
]

CHECK_EVERY = 20  # steps between reads of the device's note: one wait for the device per 20 steps


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # --precision: the autocast dtype


class MixedPrecision:
    """A training step at ``precision``: the forward pass under autocast (bf16 or fp16; the quantizer and the losses
    stay fp32) and the backward pass and optimizer step, with a gradient scaler for fp16. The weights stay fp32, so
    checkpoints load anywhere; held-out metrics are computed in fp32 outside it.

    Args:
        precision: "fp32", "bf16" (CUDA, or a CPU with fast bf16) or "fp16" (CUDA only: its scaler).
        device: the device of the fit.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise UsageError(f"--precision fp16 needs CUDA (its gradient scaler); on {device.type} pass bf16 or fp32")
        self.device, self.dtype = device, PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of the forward pass."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward from ``loss`` and one optimizer step (skipped by the fp16 scaler after an overflow)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (fp16), for ``--resume``; empty otherwise."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


class DivergedError(VQPriorError, RuntimeError):
    """A fit's loss, weights or held-out metric stopped being finite; nothing was written after it happened."""


class FiniteLoss:
    """Watches one epoch's losses; :meth:`check` raises :class:`DivergedError` once one was not finite.

    Args:
        epoch: the epoch (from 1), for the message.
        steps: the number of steps of the epoch.
        device: where the losses are.
        after: what the message says about the checkpoints (``RunFolder.last_good``).
    """

    def __init__(self, epoch: int, steps: int, device: torch.device, after: Callable[[], str]) -> None:
        self.epoch, self.steps, self.after = epoch, steps, after
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # step (from 1) or -1

    def update(self, loss: Tensor, step: int) -> None:
        """Note ``step`` (from 1) if its loss is not finite and no earlier step's was; reads nothing back."""
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)
        if step % CHECK_EVERY == 0 or step == self.steps:
            self.check()

    def check(self) -> None:
        step = int(self.first_bad)
        if step >= 0:
            self._fail(f"the training loss is not finite at epoch {self.epoch}, step {step} of {self.steps}")

    def check_epoch(self, model: nn.Module, name: str, value: float) -> None:
        """After the epoch: the weights and the held-out metric ``name`` = ``value`` must be finite."""
        self.check()
        bad = nonfinite(model.state_dict())
        if bad:
            self._fail(f"after epoch {self.epoch} the weights hold NaN or infinite values ({', '.join(bad[:3])})")
        if not math.isfinite(value):
            self._fail(f"after epoch {self.epoch} the held-out {name} is {value}")

    def _fail(self, what: str) -> None:
        raise DivergedError(f"the fit diverged: {what}; it stopped without writing it: {self.after()}. Lower --lr or a "
                            "loss weight (--beta), or look for NaN or infinite values in the data")


def pick_device(name: str | None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", "mps") or, when None / "auto", CUDA if available, else the CPU; a device
    that is not one of these, or not on this machine, is refused naming ``--device``."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; pass --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine; pass --device cpu")
    return device


def adam(model: nn.Module, lr: float) -> torch.optim.Adam:
    """Adam over the model's parameters, with PyTorch's fused update (one kernel for all parameters) on CPU and CUDA:
    the same update as the for-loop one, a fraction of its cost (the peer-size prior, 1.9 M parameters, on 2 CPU
    cores: 3.5 ms a step against 15.7)."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.Adam(model.parameters(), lr=lr, fused=fused or None)


def retain_freed_memory() -> bool:
    """Have the C allocator keep the memory of freed tensors for the next ones instead of returning it to the system;
    whether it could (Linux with glibc; elsewhere nothing changes).

    glibc's malloc serves a block over its threshold (at most 32 MiB) with fresh pages from mmap and gives the top of
    its heap back when it is freed, so a CPU training step's large tensors fault their pages in anew at every step; on
    a virtual machine a fault is slow (the default-size 16x16 prior step: 2.23-2.36 s kept, 2.67-3.05 s not). With
    mmap off (``M_MMAP_MAX`` 0) and the heap never trimmed (``M_TRIM_THRESHOLD`` -1), a step reuses the last step's
    pages: the in-process form of PyTorch's advice to train on the CPU with jemalloc or tcmalloc (BENCHMARKS.md). The
    process's peak memory is about the same; what it frees stays with it until it exits."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own libc
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # malloc.h
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))  # -1: never trim (mallopt(3))


def lr_schedule(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate held ``constant``, or decayed to zero over ``total_steps`` steps on a half ``cosine``."""
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    raise UsageError(f"--lr-schedule must be constant or cosine, got {name!r}")
