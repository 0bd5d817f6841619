"""The cached sampler of this checkout against a baseline commit's, side by side in one process.

    python -m benchmarks.sampling_baseline --threads 2 --baseline 89929d2 --grids 7x7 16x16 32x32 --batches 1 64

The baseline's ``vqvae_prior`` package is imported beside this checkout's (:func:`benchmarks.common.import_baseline`:
a git revision, or a folder that holds the package). Both priors have the config of ``benchmarks.sampling``
(``PriorConfig(K=256, 10 classes)``, the rest default) and the same weights. For each grid and batch size, every
round runs back to back, in alternating order: one cached sample of each (the same seed; labels 0, 1, ..., 9, 0,
...) and one forward pass of this checkout's network over a batch of random code maps, the unit of "full passes"
(the reference sampler's cost per position, less its draw). The machine's speed drifts on a scale of seconds, so
besides the medians of each, the median of each round's ratios is reported: the baseline's time over this one's,
and each sampler's time in full passes. The two samplers must draw the same codes (the script says whether they did).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import (
    import_baseline, interleaved, markdown_table, median, parse_shape, run_arguments, shape_str, start, sync,
    write_json,
)
from vqvae_prior.prior import GatedPixelCNN, PriorConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="89929d2",
                        help="the sampler to time against this checkout's: a git revision, or a folder holding its "
                             "vqvae_prior package")
    parser.add_argument("--grids", nargs="+", type=parse_shape, default=["16x16"], help="code-map grids h x w")
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--rounds", type=int, default=5, help="at least this many rounds per grid and batch size")
    parser.add_argument("--min-time", type=float, default=2.0,
                        help="more rounds until each sampler's runs add up to this many seconds")
    run_arguments(parser)
    parser.add_argument("--out", default="benchmarks/results/sampling-baseline.json", help="JSON results")
    return parser


def main(args: argparse.Namespace) -> dict:
    device, result = start(args)
    result["cells"] = []
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        baseline = import_baseline(args.baseline, Path(folder))
        torch.manual_seed(args.seed)
        config = dict(codebook_size=256, num_classes=10)
        models = {"this": GatedPixelCNN(PriorConfig(**config)).to(device).eval()}
        models["baseline"] = baseline.GatedPixelCNN(baseline.PriorConfig(**config)).to(device).eval()
        models["baseline"].load_state_dict(models["this"].state_dict())
        for grid in args.grids:
            for n in args.batches:
                labels = torch.arange(n, device=device) % 10  # (n,)
                codes = torch.randint(256, (n, *grid), device=device)  # (n, h, w): the forward pass's input
                drawn = {}

                def sample(name: str) -> float:
                    generator = torch.Generator(device).manual_seed(args.seed)
                    sync(device)
                    t0 = time.perf_counter()
                    drawn[name] = models[name].sample(n, grid, labels, generator=generator, method="cached")
                    sync(device)
                    return time.perf_counter() - t0

                def forward() -> float:
                    with torch.inference_mode():
                        sync(device)
                        t0 = time.perf_counter()
                        models["this"](codes, labels)
                        sync(device)
                        return time.perf_counter() - t0

                times = interleaved({"baseline": lambda: sample("baseline"), "this": lambda: sample("this"),
                                     "forward": forward}, args.rounds, args.min_time)
                same = torch.equal(drawn["this"], drawn["baseline"])
                base, this, full = times["baseline"], times["this"], times["forward"]
                cell = {"grid": list(grid), "batch": n, "same_codes": same,
                        **{f"{name}_runs": runs for name, runs in times.items()},
                        "speedup": median([b / t for b, t in zip(base, this)]),
                        "baseline_in_full_passes": median([b / f for b, f in zip(base, full)]),
                        "this_in_full_passes": median([t / f for t, f in zip(this, full)])}
                result["cells"].append(cell)
                rows.append([shape_str(grid), str(n), str(len(this)), f"{median(base):.4g}", f"{median(this):.4g}",
                             f"{median(full) * 1e3:.3g}", f"{cell['speedup']:.2f}x",
                             f"{cell['baseline_in_full_passes']:.2f}", f"{cell['this_in_full_passes']:.2f}",
                             "yes" if same else "NO"])
                print(" | ".join(rows[-1]), flush=True)
    result["table"] = markdown_table(
        ["grid", "batch", "rounds", f"{args.baseline} s a call", "this s a call", "forward pass ms",
         "speedup", f"{args.baseline} in full passes", "this in full passes", "same codes"], rows)
    print("\n" + result["table"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
