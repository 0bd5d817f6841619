"""The VQ-VAE's training step of this checkout against a baseline commit's, side by side in one process.

    python -m benchmarks.vqvae_step --threads 2 --baseline d6fe37e --shapes 1x28x28 1x80x64 --downsample 4 8

As ``benchmarks.prior_step``: the baseline's ``vqvae_prior`` package is extracted from git (or read from a folder)
and imported beside this checkout's; both VQ-VAEs are built with the same config and hold the same weights (the
baseline's loaded from this checkout's state dict), their first losses are printed and must agree, and their steps
alternate round by round. A step: forward (encoder, quantizer with its EMA codebook update, decoder) + the loss +
backward + Adam (PyTorch's fused update on both sides), on fixed random inputs in [0, 1] of each ``--shapes``, batch
``--batch-size`` (64 and 32: the image and audio fits' defaults), the config ``VQVAEConfig(in_channels=C,
downsample=D)`` with the image defaults' 64 channels, 32 residual channels and K=512. Reported: the median step of
each, the ratio of the medians, and the median of each round's ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import (
    against_baseline, finish, import_baseline, interleaved, parse_shape, run_arguments, shape_str, start,
    timed_step,
)
from vqvae_prior.training.steps import adam
from vqvae_prior.vqvae import VQVAE, VQVAEConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="d6fe37e",
                        help="the VQ-VAE to time against this checkout's: a git revision, or a folder holding its "
                             "vqvae_prior package")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=[(1, 28, 28), (1, 80, 64)],
                        help="inputs C x H x W")
    parser.add_argument("--downsample", nargs="+", type=int, default=[4, 8],
                        help="the VQ-VAE's downsampling for each shape (the image and audio defaults)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch-size", nargs="+", type=int, default=[64, 32],
                        help="for each shape (the image and audio fits' defaults)")
    run_arguments(parser)
    parser.add_argument("--out", default="benchmarks/results/vqvae-step.json", help="JSON results")
    return parser


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                  device: torch.device) -> Callable[[], float]:
    """One timed training step of a VQ-VAE: forward, its loss, backward, the optimizer."""
    return timed_step(optimizer, lambda: model(x).loss, device)


def main(args: argparse.Namespace) -> dict:
    for name in ("downsample", "batch_size"):
        if len(getattr(args, name)) != len(args.shapes):
            raise ValueError(f"--{name.replace('_', '-')}: one per shape ({len(args.shapes)}), got "
                             f"{len(getattr(args, name))}")
    device, result = start(args)
    result["runs"] = []
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        baseline = import_baseline(args.baseline, Path(folder), module="vqvae")
        for shape, downsample, batch_size in zip(args.shapes, args.downsample, args.batch_size):
            torch.manual_seed(args.seed)
            sizes = dict(in_channels=shape[0], downsample=downsample, channels=64, residual_channels=32,
                         codebook_size=512)
            models = {"this": VQVAE(VQVAEConfig(**sizes)).to(device).train()}
            models["baseline"] = baseline.VQVAE(baseline.VQVAEConfig(**sizes)).to(device).train()
            models["baseline"].load_state_dict(models["this"].state_dict())
            x = torch.rand(batch_size, *shape, device=device)  # (B, C, H, W) in [0, 1]
            with torch.no_grad():
                losses = {name: model.eval()(x).loss.item() for name, model in models.items()}
            print(f"{shape_str(shape)}: first losses {losses}")
            steps = {name: training_step(model.train(), adam(model, 1e-3), x, device)
                     for name, model in models.items()}
            times = interleaved(steps, args.rounds)
            figures = against_baseline(times)
            result["runs"].append({"shape": list(shape), "downsample": downsample, "batch_size": batch_size,
                                   "rounds": args.rounds, "first_losses": losses, **figures})
            rows.append([shape_str(shape), str(downsample), str(batch_size), str(args.rounds),
                         f"{figures['baseline_step_seconds'] * 1e3:.1f}", f"{figures['this_step_seconds'] * 1e3:.1f}",
                         f"{figures['speedup']:.3f}x", f"{figures['paired_speedup']:.3f}x"])
            print(" | ".join(rows[-1]), flush=True)
    return finish(result, ["input", "downsample", "batch", "rounds", f"{args.baseline} ms/step", "this ms/step",
                           "speedup (medians)", "speedup (median of rounds' ratios)"], rows, args.out)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
