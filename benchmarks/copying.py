"""The copying check's search: each code map's nearest train code map (``vqvae_prior.evaluation.copying.nearest``),
this checkout against a baseline revision's, in one process, on a data set's real code maps.

    python -m benchmarks.copying --codes ~/.cache/vqvae_prior/judge/codes-KEY.pt --queries 1000 --baseline f25b2b8 \
        --out benchmarks/results/copying.json

``--codes``: a code cache that ``image_check`` (or ``fit_prior``) wrote (``codes-*.pt``: the train and held-out code
maps of a VQ-VAE's data set; of a two-level VQ-VAE, the bottom level's are searched, as the check does). The first
``--queries`` held-out maps are searched among every train map by each side, ``--rounds`` times alternately; the
distances must be equal. The median seconds of each side and their ratio are reported, with the peak resident
memory of the whole process.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import finish, import_baseline, machine, median
from vqvae_prior.evaluation import copying


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", required=True, help="a code cache codes-KEY.pt (image_check's, fit_prior's)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out code maps searched")
    parser.add_argument("--baseline", required=True, help="git revision (or folder holding vqvae_prior/) to compare")
    parser.add_argument("--rounds", type=int, default=2, help="timed searches of each side, alternately")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/copying.json", help="JSON results")
    return parser


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    train, held_out = copying.searched_maps(torch.load(args.codes, weights_only=True))  # (N, h, w) each
    queries = held_out[: args.queries]  # (n, h, w)
    with tempfile.TemporaryDirectory() as folder:
        baseline = import_baseline(args.baseline, Path(folder), "evaluation.copying")
    sides = {"baseline": baseline.nearest, "this": copying.nearest}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    distances = {}
    for _ in range(args.rounds):
        for name, nearest in sides.items():
            start = time.perf_counter()
            distances[name] = nearest(queries, train)  # (n,)
            seconds[name].append(time.perf_counter() - start)
    if not torch.equal(distances["baseline"].float(), distances["this"]):
        raise SystemExit("the two sides' distances differ")
    ratio = median(seconds["baseline"]) / median(seconds["this"])
    result = {"machine": machine(torch.device("cpu")), "args": vars(args), "seconds": seconds,
              "maps": {"train": list(train.shape), "queries": list(queries.shape)}, "speedup": ratio,
              "mean_distance": float(distances["this"].mean()),
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    row = [f"{len(queries):,} x {tuple(queries.shape[1:])}", f"{len(train):,}", f"{median(seconds['baseline']):.1f}",
           f"{median(seconds['this']):.1f}", f"{ratio:.1f}x"]
    return finish(result, ["queries (maps)", "train maps", f"{args.baseline} s", "this s", "speedup"], [row], args.out)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
