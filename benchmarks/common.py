"""Pieces shared by the benchmarks: shapes on the command line, device sync, repeated timing, machine, tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


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


def repeat_timing(fn: Callable[[], float], min_time: float, max_runs: int = 100) -> list[float]:
    """Results of ``fn()`` (each a duration in seconds), run at least once and until they add up to ``min_time``."""
    runs = [fn()]
    while sum(runs) < min_time and len(runs) < max_runs:
        runs.append(fn())
    return runs


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


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu,
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
