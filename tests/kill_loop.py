"""Fault injection: a tiny fit killed with SIGKILL at random moments and resumed, again and again.

    python tests/kill_loop.py PLAN.json

PLAN: {"root": folder, "module": "fit_vqvae" | "fit_prior", "args": [...] (without --out), "kills": K,
"max_trials": T, "seed": S}. Writes ``root/reference`` (an uninterrupted fit) and ``root/trial-<i>``: fits started,
killed at a moment drawn uniformly over the reference fit's duration and started again (with ``--resume`` when the
folder holds a fit) until one ends by itself; trials follow one another until K kills have landed. Prints a JSON
report: per run, whether it was resumed, killed, its exit status and the metrics.jsonl epochs after it.
test_fault_injection.py compares the folders with the reference.

Every fit runs in a child forked from this process, which imports torch but computes nothing with it (a fork of a
process whose thread pools have started is not safe): a fit costs a fork, not a Python start.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, as in the tests

import torch  # noqa: E402

from pipelines import fit_prior, fit_vqvae  # noqa: E402
from vqvae_prior.training import run_folder  # noqa: E402

MODULES = {"fit_vqvae": (fit_vqvae, "vqvae"), "fit_prior": (fit_prior, "prior")}


def start(module, argv: list[str], log: Path) -> int:
    """Fork a child that runs ``module.main`` on ``argv``, its output appended to ``log``; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        torch.set_num_threads(1)  # the same arithmetic in every child
        module.main(module.get_args_parser().parse_args(argv))
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def wait(pid: int, timeout: float | None) -> int | None:
    """The exit status of child ``pid`` once it ends, or None if it still runs after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def logged_epochs(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()] if path.exists() else []


def main(plan: dict) -> dict:
    root = Path(plan["root"])
    module, kind = MODULES[plan["module"]]
    rng = random.Random(plan["seed"])
    t0 = time.monotonic()
    reference = root / "reference"
    status = wait(start(module, [*plan["args"], "--out", str(reference)], root / "reference.log"), None)
    duration = time.monotonic() - t0
    report: dict = {"reference_status": status, "reference_seconds": duration, "trials": []}
    kills = 0
    while kills < plan["kills"] and len(report["trials"]) < plan["max_trials"]:
        out, log = root / f"trial-{len(report['trials'])}", root / f"trial-{len(report['trials'])}.log"
        runs: list[dict] = []
        while True:  # killed at a random moment until the fit ends by itself (or fails)
            resume = ["--resume"] if run_folder.has_fit(out, kind) else []
            pid = start(module, [*plan["args"], "--out", str(out), *resume], log)
            delay = rng.uniform(0, duration) if kills < plan["kills"] else None
            status = wait(pid, delay)
            killed = status is None
            if killed:
                os.kill(pid, signal.SIGKILL)
                status = wait(pid, None)
                kills += 1
            runs.append({"resumed": bool(resume), "delay": delay, "killed": killed, "status": status,
                         "epochs_logged": logged_epochs(out)})
            if not killed:
                break
        report["trials"].append({"out": str(out), "runs": runs})
    report["kills"] = kills
    return report


if __name__ == "__main__":
    print(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
