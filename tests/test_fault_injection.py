"""Fault injection: tiny fits killed with SIGKILL at random moments, at least 20 times, always resume to the
weights of an uninterrupted fit, leave no temporary files or lock behind, and log each epoch exactly once.

The kill loop runs in one subprocess (tests/kill_loop.py) that forks every fit, so each costs a fork rather than a
Python start: the whole test takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fits import assert_equal_weights
from vqvae_prior.checkpoint import load_checkpoint

pytestmark = [pytest.mark.faults, pytest.mark.skipif(os.name != "posix", reason="SIGKILL and fork are POSIX")]

TINY_VQVAE = ["--channels", "8", "--residual-channels", "4", "--codebook-size", "8", "--code-dim", "4"]
TINY_PRIOR = ["--layers", "2", "--channels", "8", "--head-channels", "8", "--samples-per-class", "1"]
COMMON = ["--batch-size", "16", "--no-progress", "--device", "cpu"]


def kill_loop(root: Path, module: str, args: list[str], kills: int) -> dict:
    plan = {"root": str(root), "module": module, "args": args, "kills": kills, "max_trials": 4 * kills, "seed": 0}
    root.mkdir()
    (root / "plan.json").write_text(json.dumps(plan))
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("kill_loop.py")), str(root / "plan.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_resumed_like_the_reference(root: Path, report: dict, kind: str, epochs: int) -> None:
    assert report["reference_status"] == 0, (root / "reference.log").read_text()
    reference = {name: load_checkpoint(root / "reference" / name) for name in (f"{kind}.pt", f"{kind}-last.pt")}
    for trial in report["trials"]:
        out = Path(trial["out"])
        for run in trial["runs"]:
            assert run["status"] in (0, -9), (out.parent / f"{out.name}.log").read_text()  # ended, or killed
            assert run["epochs_logged"] == list(range(1, len(run["epochs_logged"]) + 1)), run  # never repeated
        assert trial["runs"][-1]["status"] == 0 and trial["runs"][-1]["epochs_logged"] == list(range(1, epochs + 1))
        for name, expected in reference.items():
            found = load_checkpoint(out / name)
            assert found["epoch"] == expected["epoch"], out / name
            assert_equal_weights(expected, found, out / name)
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == "fit.lock"]


def test_killed_fits_resume_exactly(tmp_path, make_digit_folder):
    """20 SIGKILLs of a 3-epoch VQ-VAE fit, then 6 of a 2-epoch prior fit over the reference VQ-VAE, on 30 digits."""
    digits = make_digit_folder(tmp_path / "digits", per_class=10)  # 27 train: 2 steps per epoch
    vq_args = ["--dataset", "image-folder", "--data-root", str(digits), *TINY_VQVAE, *COMMON, "--epochs", "3"]
    report = kill_loop(tmp_path / "vq", "fit_vqvae", vq_args, kills=20)
    assert report["kills"] >= 20
    check_resumed_like_the_reference(tmp_path / "vq", report, "vqvae", epochs=3)

    prior_args = ["--vqvae", str(tmp_path / "vq" / "reference" / "vqvae.pt"), *TINY_PRIOR, *COMMON, "--epochs", "2"]
    report = kill_loop(tmp_path / "prior", "fit_prior", prior_args, kills=6)
    assert report["kills"] >= 6
    check_resumed_like_the_reference(tmp_path / "prior", report, "prior", epochs=2)
