"""The gated prior's training step of this checkout against a baseline commit's, side by side in one process.

    python -m benchmarks.prior_step --threads 2 --baseline d6fe37e --grids 7x7 16x16 --rounds 12 6

The baseline's ``vqvae_prior`` package is extracted from git (``git archive``) into a temporary folder, or read from
a folder given as ``--baseline``, and imported under its own name beside this checkout's, so both models live in one
process and their steps alternate: the machine's noise falls on both alike. Both are built with the same config and
hold the same weights (the baseline's loaded from this checkout's state dict); their first losses are printed and
must agree, so that the two steps compute the same function. A step: forward + cross-entropy (``model.nll``) +
backward + Adam, each side's as its ``fit_prior`` builds it (``vqvae_prior.training.steps.adam``, PyTorch's fused
update; ``--baseline-adam plain`` for a baseline before 3dc0049, whose fit_prior built the plain one), on fixed
random code maps and labels, batch ``--batch-size``, ``--layers`` x 64 channels, head ``--head``, K ``--codebook``,
10 classes (the size of ritheshkumar95/pytorch-vqvae's GatedPixelCNN by default). Reported: the median step of each,
the ratio of the medians, and the median of each round's ratio (its two steps back to back, so the machine's drift
between rounds cancels).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.common import (
    against_baseline, finish, import_baseline, interleaved, prior_step_arguments, prior_training_step,
    rounds_per_grid, shape_str, start,
)
from vqvae_prior.training.steps import adam
from vqvae_prior.prior import GatedPixelCNN, PriorConfig

def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="d6fe37e",
                        help="the prior to time against this checkout's: a git revision, or a folder holding its "
                             "vqvae_prior package")
    parser.add_argument("--baseline-adam", choices=["fused", "plain"], default="fused",
                        help="the baseline's Adam as its fit_prior built it: fused from 3dc0049 on, plain before")
    prior_step_arguments(parser, rounds=[12, 6])
    parser.add_argument("--out", default="benchmarks/results/prior-step.json", help="JSON results")
    return parser


def main(args: argparse.Namespace) -> dict:
    device, result = start(args)
    rounds = rounds_per_grid(args)
    result["runs"] = []
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        baseline = import_baseline(args.baseline, Path(folder))
        for grid, n_rounds in zip(args.grids, rounds):
            torch.manual_seed(args.seed)
            sizes = dict(codebook_size=args.codebook, num_classes=10, num_layers=args.layers, head_channels=args.head)
            models = {"this": GatedPixelCNN(PriorConfig(**sizes)).to(device).train()}
            models["baseline"] = baseline.GatedPixelCNN(baseline.PriorConfig(**sizes)).to(device).train()
            models["baseline"].load_state_dict(models["this"].state_dict())
            codes = torch.randint(args.codebook, (args.batch_size, *grid), device=device)  # (B, h, w)
            labels = torch.randint(10, (args.batch_size,), device=device)  # (B,)
            losses = {name: model.nll(codes, labels).item() for name, model in models.items()}
            print(f"{shape_str(grid)}: first losses {losses}")
            optimizers = {"this": adam(models["this"], 1e-3),  # each side's Adam as its fit_prior builds it
                          "baseline": adam(models["baseline"], 1e-3) if args.baseline_adam == "fused"
                          else torch.optim.Adam(models["baseline"].parameters(), lr=1e-3)}
            steps = {name: prior_training_step(model, optimizers[name], codes, labels, device)
                     for name, model in models.items()}
            times = interleaved(steps, n_rounds)
            figures = against_baseline(times)
            this_s, baseline_s = figures["this_step_seconds"], figures["baseline_step_seconds"]
            result["runs"].append({"grid": list(grid), "rounds": n_rounds, "first_losses": losses, **figures})
            rows.append([shape_str(grid), str(n_rounds), f"{baseline_s:.4g}", f"{this_s:.4g}",
                         f"{args.batch_size / baseline_s:.1f}", f"{args.batch_size / this_s:.1f}",
                         f"{figures['speedup']:.3f}x", f"{figures['paired_speedup']:.3f}x"])
            print(" | ".join(rows[-1]), flush=True)
    return finish(result, ["grid", "rounds", f"{args.baseline} s/step", "this s/step", f"{args.baseline} code maps/s",
                           "this code maps/s", "speedup (medians)", "speedup (median of rounds' ratios)"], rows,
                  args.out)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
