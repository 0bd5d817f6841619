"""Data-parallel training throughput: the same fits with 1, 2, ... processes under torchrun.

    python -m benchmarks.processes --processes 1 2 --threads 2 --out benchmarks/results/processes-cpu.json

Each row is a fit started the way users start one, ``torchrun --standalone --nproc_per_node=N -m
pipelines.fit_vqvae --dataset mnist-sample --epochs E --out TMP ...``, then ``pipelines.fit_prior`` over the codes
of the 1-process VQ-VAE, every option at its default but ``--epochs`` and ``--samples-per-class 0``. On the CPU the
N processes share ``--threads`` cores (``OMP_NUM_THREADS`` = threads / N each). The throughput is the training
items of the last epoch over its ``train_seconds`` (the first epoch warms up); the held-out metric beside it shows
that the processes computed the same fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import data
from benchmarks.common import machine, markdown_table, write_json

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="numbers of processes, one row each")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU cores the processes share")
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=2, help="of each fit; the last one is timed")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: one GPU per process")
    parser.add_argument("--out", default="benchmarks/results/processes.json", help="JSON results")
    return parser


def fit(module: str, processes: int, threads: int, options: list[str]) -> dict:
    """The last epoch's metrics of ``module`` run by torchrun with ``processes`` processes of ``threads`` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", module, *options]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    out = Path(options[options.index("--out") + 1])
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def main(args: argparse.Namespace) -> dict:
    train_items = len(data.load_dataset(args.dataset, args.data_root).train)
    dataset = ["--dataset", args.dataset, *(["--data-root", args.data_root] if args.data_root else [])]
    common = ["--epochs", str(args.epochs), "--no-progress", "--device", args.device]
    result = {"machine": machine(torch.device(args.device)), "train_items": train_items, "args": vars(args)}
    runs, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        vqvae = f"{tmp}/vq{args.processes[0]}/vqvae.pt"  # the prior fits all model the first VQ-VAE's codes
        for n in args.processes:
            threads = max(1, args.threads // n)
            vq = fit("pipelines.fit_vqvae", n, threads, [*dataset, *common, "--out", f"{tmp}/vq{n}"])
            prior = fit("pipelines.fit_prior", n, threads,
                        ["--vqvae", vqvae, *common, "--samples-per-class", "0", "--out", f"{tmp}/prior{n}"])
            for model, metrics, metric in (("VQ-VAE", vq, "test_mse"), ("prior", prior, "test_bits_per_code")):
                per_second = train_items / metrics["train_seconds"]
                runs.append({"model": model, "processes": n, "threads_each": threads,
                             "train_seconds": metrics["train_seconds"], "per_second": per_second,
                             metric: metrics[metric]})
                rows.append([model, str(n), str(threads), f"{metrics['train_seconds']:.1f}", f"{per_second:,.1f}",
                             f"{metric} {metrics[metric]:.5g}"])
                print(" | ".join(rows[-1]), flush=True)
    result["runs"] = runs
    result["table"] = markdown_table(
        ["fit", "processes", "threads each", "last epoch, s", "train items/s", "held-out"], rows)
    print("\n" + result["table"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
