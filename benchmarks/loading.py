"""Loading a fitted model: the inference file (``NAME.pt``, weights and config) against the training file
(``NAME-last.pt``: the same plus the optimizer state, the schedule, the random state and the metrics history).

    python -m benchmarks.loading --checkpoints runs/mnist/vqvae.pt runs/mnist-prior/prior.pt \
        --out benchmarks/results/loading.json

For each checkpoint given and its ``-last`` sibling (when there is one): the file size and the median of ``--runs``
calls of ``load_vqvae`` / ``load_prior`` (read, check, rebuild the model from its config, load the weights), which
is what ``generate()`` and ``VQPriorPipeline.from_checkpoints`` pay per file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import machine, markdown_table, median, time_steps, write_json
from vqvae_prior.checkpoint import load_checkpoint, load_prior, load_vqvae


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True, help="inference files: OUT/vqvae.pt, OUT/prior.pt")
    parser.add_argument("--runs", type=int, default=20, help="timed loads of each file; the median is reported")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/loading.json", help="JSON results")
    return parser


def time_load(path: Path, runs: int) -> list[float]:
    """Seconds of each of ``runs`` loads, after one that warms up (the file in the page cache, the classes imported)."""
    load = load_vqvae if load_checkpoint(path)["kind"] == "vqvae" else load_prior
    return time_steps(lambda: load(path), 1, runs, torch.device("cpu"))


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"machine": machine(torch.device("cpu")), "args": vars(args), "runs": []}
    rows = []
    for best in map(Path, args.checkpoints):
        last = best.with_name(f"{best.stem}-last{best.suffix}")
        for path, what in ((best, "inference"), (last, "training")):
            if not path.is_file():
                continue
            times = time_load(path, args.runs)
            size = path.stat().st_size / 2**20
            result["runs"].append({"path": str(path), "file": what, "megabytes": size, "seconds": median(times),
                                   "load_runs": times})
            rows.append([str(path), what, f"{size:.2f}", f"{median(times) * 1e3:.1f}"])
            print(" | ".join(rows[-1]), flush=True)
    result["table"] = markdown_table(["file", "holds", "MiB", "load, ms (median)"], rows)
    print("\n" + result["table"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
