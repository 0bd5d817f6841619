"""A check's report: the JSON file, the seconds each part took (:class:`Stopwatch`), and the printed lines that the
checks share."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vqvae_prior.files import atomic_write

__all__ = ["Stopwatch", "print_copying", "write_report"]


def write_report(report: dict[str, Any], path: Path) -> None:
    """The report as indented JSON, written atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))


class Stopwatch:
    """Seconds taken by each named part of a check: ``with watch("part"): ...``; ``watch.seconds`` collects them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name, self._t0 = "", 0.0

    def __call__(self, name: str) -> Stopwatch:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + time.perf_counter() - self._t0


def print_copying(report: dict[str, Any]) -> None:
    """One line of the :func:`vqvae_prior.evaluation.copying.copying` report."""
    print(f"nearest train code map, fraction of codes that differ: generated {report['generated_mean_distance']:.3f}, "
          f"real held-out {report['held_out_mean_distance']:.3f}; exact copies {report['generated_exact_copies']} of "
          f"{report['generated_n']}")
