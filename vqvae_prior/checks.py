"""Checks of arguments that the library and the command line share: whole numbers, finite numbers and seeds.

Each raises :class:`vqvae_prior.errors.UsageError` naming the argument as the caller spells it (``n`` in Python,
``--n`` on the command line), so that a wrong value is refused in one line before any work rather than truncated,
or failing later inside torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vqvae_prior.errors import UsageError

__all__ = ["SEEDS", "finite_number", "whole_number"]

SEEDS = (0, 2**64 - 1)  # the seeds a torch.Generator takes (it also takes negative ones; --seed does not)


def whole_number(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``minimum`` .. ``maximum``: a Python or NumPy integer, or a 0-d integer tensor (a
    bool is no number here); else a :class:`UsageError` naming the argument ``name``."""
    if isinstance(value, Tensor) and value.ndim == 0 and not (value.is_floating_point() or value.dtype == torch.bool):
        value = int(value)
    allowed = f"in {minimum} .. {maximum}" if maximum is not None else f">= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{name} must be a whole number {allowed}, got {type(value).__name__} {value!r:.40}")
    if value < minimum or (maximum is not None and value > maximum):
        raise UsageError(f"{name} must be {allowed}, got {value}")
    return int(value)


def finite_number(value: Any, name: str, zero: bool = False) -> Any:
    """``value`` unchanged when it is a finite real number > 0 (>= 0 with ``zero``), or a sequence of them (one per
    level of a two-level prior); else a :class:`UsageError` naming the argument ``name``."""
    for v in value if isinstance(value, (tuple, list)) and value else [value]:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) or not (
            math.isfinite(v) and (v >= 0 if zero else v > 0)
        ):
            raise UsageError(f"{name} must be a finite number {'>= 0' if zero else '> 0'}, got {value!r:.40}")
    return value
