"""Pieces shared by the benchmarks: shapes on the command line, device sync, interleaved timing, a baseline
commit's package beside this checkout's, machine, tables."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from vqvae_prior.training.steps import pick_device, retain_freed_memory


def parse_shape(text: str) -> tuple[int, ...]:
    """'32x20' -> (32, 20); '1x28x28' -> (1, 28, 28)."""
    try:
        shape = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected a shape such as 32x20, got {text!r}") from None
    if min(shape) < 1:
        raise ValueError(f"shape sides must be >= 1, got {text!r}")
    return shape


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def jsonable(args: dict[str, Any]) -> dict[str, Any]:
    """Command-line arguments for a JSON file: shapes as '32x20' strings."""
    def convert(v: Any) -> Any:
        if isinstance(v, tuple):
            return shape_str(v)
        return [convert(x) for x in v] if isinstance(v, list) else v

    return {k: convert(v) for k, v in args.items()}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock reading includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> list[float]:
    """Seconds of each of ``steps`` timed steps, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def prior_step_arguments(parser: argparse.ArgumentParser, rounds: list[int]) -> None:
    """The arguments of an interleaved comparison of prior training steps (benchmarks.prior_step, .first_layer): the
    grids, rounds per grid, and the prior's size (ritheshkumar95/pytorch-vqvae's GatedPixelCNN by default)."""
    parser.add_argument("--grids", nargs="+", type=parse_shape, default=[(7, 7), (16, 16)])
    parser.add_argument("--rounds", nargs="+", type=int, default=rounds, help="rounds per grid (one number: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=15)
    parser.add_argument("--head", type=int, default=512, help="head channels")
    parser.add_argument("--codebook", type=int, default=512, help="codebook size K")
    run_arguments(parser)


def run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--device`` and ``--threads``, for :func:`start`."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--allocator", choices=["default", "retain"], default="default",
                        help="retain: the C allocator keeps freed memory for reuse, as the fits set it on the CPU "
                             "(vqvae_prior.training.steps.retain_freed_memory); for the whole process, so for both "
                             "sides of a comparison")


def start(args: argparse.Namespace) -> tuple[torch.device, dict[str, Any]]:
    """The torch threads set and the device picked from :func:`run_arguments`; the results' start, the machine
    (printed) and the arguments."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == "retain" and not retain_freed_memory():
        raise ValueError("--allocator retain needs Linux with glibc")
    device = pick_device(args.device)
    result = {"machine": machine(device), "args": jsonable(vars(args))}
    print(result["machine"])
    return device, result


def rounds_per_grid(args: argparse.Namespace) -> list[int]:
    """``--rounds``: one number for every grid, or one per grid."""
    if len(args.rounds) == 1:
        return args.rounds * len(args.grids)
    if len(args.rounds) != len(args.grids):
        raise ValueError(f"--rounds: one number, or one per grid ({len(args.grids)}), got {len(args.rounds)}")
    return args.rounds


def prior_training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, codes: torch.Tensor, labels: torch.Tensor,
    device: torch.device,
) -> Callable[[], float]:
    """One timed training step of a prior: forward + cross-entropy (``model.nll``) + backward + the optimizer."""
    return timed_step(optimizer, lambda: model.nll(codes, labels), device)


def timed_step(optimizer: torch.optim.Optimizer, loss: Callable[[], torch.Tensor],
               device: torch.device) -> Callable[[], float]:
    """One timed training step: ``loss()`` (the forward pass), its backward and the optimizer; returns seconds."""
    def step() -> float:
        sync(device)
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
        sync(device)
        return time.perf_counter() - t0

    return step


def interleaved(
    steps: dict[str, Callable[[], float]], rounds: int, min_time: float = 0.0, max_rounds: int = 100,
    warm_up: bool = True,
) -> dict[str, list[float]]:
    """Durations of each named step over at least ``rounds`` rounds, and more (up to ``max_rounds``) until every
    step's durations add up to ``min_time``; after one untimed warm-up call each unless ``warm_up`` is False. Every
    round runs each step once, in alternating order, so that the machine's noise falls on all alike, and a ratio of
    two steps can be taken round by round."""
    if warm_up:
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    r = 0
    while r < rounds or (r < max_rounds and min(sum(t) for t in times.values()) < min_time):
        for name in steps if r % 2 == 0 else reversed(steps):
            times[name].append(steps[name]())
        r += 1
    return times


PACKAGE = "vqvae_prior"


def against_baseline(times: dict[str, list[float]]) -> dict[str, Any]:
    """A comparison's figures from each side's step times, ``{"this": [...], "baseline": [...]}`` taken in rounds:
    the median of each, their ratio, and the median of the rounds' ratios (a round's two steps ran back to back, so
    the machine's drift between rounds cancels), with the times themselves."""
    this_s, baseline_s = median(times["this"]), median(times["baseline"])
    return {"this_step_seconds": this_s, "baseline_step_seconds": baseline_s, "speedup": baseline_s / this_s,
            "paired_speedup": median([b / t for b, t in zip(times["baseline"], times["this"])]),
            "this_runs": times["this"], "baseline_runs": times["baseline"]}


def finish(result: dict[str, Any], header: list[str], rows: list[list[str]], out: str) -> dict[str, Any]:
    """The results' markdown table of ``rows`` under ``header``, printed and kept in ``result``, written to ``out``."""
    result["table"] = markdown_table(header, rows)
    print("\n" + result["table"])
    write_json(out, result)
    return result


def import_baseline(baseline: str, folder: Path, module: str = "prior") -> ModuleType:
    """The ``vqvae_prior.MODULE`` module of a baseline (``vqvae_prior.prior`` by default; a dotted MODULE names one in
    a subpackage, ``evaluation.copying``), imported beside this
    checkout's package. ``baseline``: a folder that holds a ``vqvae_prior`` package (for a machine without the git
    history: ``git archive REV vqvae_prior | tar -x -C FOLDER`` beforehand), or a git revision, whose package is
    extracted into ``folder``. The baseline's modules are kept out of ``sys.modules`` after the import (they hold their
    own globals), so that this checkout's package is the one every later import finds."""
    if (Path(baseline) / PACKAGE / f"{module.replace('.', '/')}.py").is_file():
        folder = Path(baseline)
    else:
        root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        archive = subprocess.run(["git", "-C", root.stdout.strip() or ".", "archive", baseline, PACKAGE],
                                 capture_output=True)
        if archive.returncode:
            raise ValueError(f"--baseline {baseline!r}: neither a folder holding {PACKAGE}/ nor a git revision here "
                             f"({archive.stderr.decode().strip()})")
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)

    def ours(name: str) -> bool:
        return name == PACKAGE or name.startswith(PACKAGE + ".")

    current = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
    sys.path.insert(0, str(folder))
    try:
        imported = importlib.import_module(f"{PACKAGE}.{module}")
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(current)
    return imported


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on. A virtual machine may name its CPU vaguely ("AMD EPYC"): its family and
    model numbers and the vector instructions PyTorch's CPU kernels use tell one generation from another."""
    cpu, cpu_id = platform.processor() or platform.machine(), None
    if Path("/proc/cpuinfo").is_file():
        first = open("/proc/cpuinfo").read().split("\n\n")[0]  # the first processor's block
        info = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
        info = {key.strip(): value.strip() for key, value in info.items()}
        cpu = info.get("model name", cpu)
        if "cpu family" in info:
            cpu_id = f"family {info['cpu family']} model {info.get('model')}"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu,
        "cpu_id": cpu_id,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" ---: " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
