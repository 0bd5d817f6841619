"""Generating from the shipped pretrained models in a new process, nothing fitted: what a user waits for.

    python -m benchmarks.pretrained --rounds 2 --out benchmarks/results/pretrained.json

Each round runs, each in a new Python process started from a temporary folder outside the checkout (so that the
models are read from the package's data): the FSDD call of the README, ``VQPriorPipeline.from_pretrained("fsdd")``
sampling one clip of each digit (10 Griffin-Lim inversions included), and the MNIST command, ``generate
--pretrained mnist --labels all --repeat 8``. The wall clock of each process and its peak resident memory (by
``/usr/bin/time``); then, in one more process, where the FSDD call's time goes (each part timed in turn).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks.common import machine, markdown_table, median, write_json

COMMANDS = {
    "fsdd, Python": [sys.executable, "-c", "from vqvae_prior import VQPriorPipeline; "
                     "VQPriorPipeline.from_pretrained('fsdd')(10, labels=list(range(10)))"],
    "mnist, generate": [sys.executable, "-m", "pipelines.generate", "--pretrained", "mnist", "--labels", "all",
                        "--repeat", "8", "--out", "samples.png"],
}

# the FSDD call in parts, printed as JSON by a process of its own
PARTS = """
import json, time
t = [time.perf_counter()]
import torch
t.append(time.perf_counter())
from vqvae_prior import VQPriorPipeline
t.append(time.perf_counter())
pipe = VQPriorPipeline.from_pretrained("fsdd")
t.append(time.perf_counter())
pipe.sample_codes(10, torch.arange(10), 1.0, None, None, "auto", 0.0)
t.append(time.perf_counter())
pipe(10, labels=list(range(10)))
t.append(time.perf_counter())
names = ["import torch", "import vqvae_prior", "from_pretrained", "sample the codes", "the whole call"]
print(json.dumps({name: round(b - a, 3) for name, a, b in zip(names, t, t[1:])}))
"""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each command, alternating")
    parser.add_argument("--out", default="benchmarks/results/pretrained.json", help="JSON results")
    return parser


def run(command: list[str], folder: str) -> tuple[float, float]:
    """Wall seconds of ``command`` in a new process in ``folder``, and its peak resident memory in GB."""
    wrapped = ["/usr/bin/time", "-f", "%M", *command]
    start = time.perf_counter()
    done = subprocess.run(wrapped, cwd=folder, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1e6  # kB -> GB


def main(args: argparse.Namespace) -> dict:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    memory: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, command in COMMANDS.items():
                seconds, gb = run(command, folder)
                times[name].append(seconds)
                memory[name].append(gb)
        parts = json.loads(subprocess.run([sys.executable, "-c", PARTS], cwd=folder, capture_output=True, text=True,
                                          check=True).stdout.splitlines()[-1])
    rows = [[name, ", ".join(f"{s:.1f} s" for s in times[name]), f"{median(times[name]):.1f} s",
             f"{max(memory[name]):.2f} GB"] for name in COMMANDS]  # fmt: skip
    print(markdown_table(["command", "wall, each round", "median", "peak RSS"], rows))
    print("the FSDD call in parts (s):", parts)
    result = {"machine": machine(torch.device("cpu")), "args": vars(args), "seconds": times, "peak_gb": memory,
              "fsdd_parts_seconds": parts}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
