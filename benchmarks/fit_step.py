"""The training step as each side's fits run it: this checkout in a process set up as its fits set one up (the C
allocator keeping freed memory on the CPU), the baseline in a plain process, as its fits ran; processes alternate.

    python -m benchmarks.fit_step --threads 2 --baseline d6fe37e --model prior --grids 7x7 16x16 --rounds 6
    python -m benchmarks.fit_step --threads 2 --baseline d6fe37e --model vqvae --shapes 1x28x28 1x80x64 --rounds 6
    python -m benchmarks.fit_step --threads 2 --baseline d6fe37e --model prior --precision bf16 --rounds 6

``benchmarks.prior_step`` and ``benchmarks.vqvae_step`` compare the two sides' code in one process, where what is
set for the whole process (the allocator) is the same for both; this one compares what a fit gets. Each round starts
one process per side, in alternating order; a process builds the model (the same config and seed on both sides),
warms up, times ``--steps`` steps and reports their median; the figure is the median over rounds of each side's
median, and the median of the rounds' ratios. The models are those of ``prior_step`` (``--layers`` x 64 channels,
head ``--head``, K ``--codebook``, batch 128) and ``vqvae_step`` (64 channels, K=512, batch 64 and 32); both sides
step with the fused Adam their fits build (d6fe37e's already did). ``--precision bf16``: this checkout's forward
pass under bf16 autocast, as its fits take ``--precision bf16`` (``MixedPrecision``: the weights, the optimizer and
the losses stay fp32); the baseline's stays fp32, as its fits ran.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import (
    against_baseline, finish, import_baseline, median, parse_shape, prior_step_arguments, shape_str, start,
    timed_step,
)
from vqvae_prior.training.steps import MixedPrecision, adam, retain_freed_memory

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="d6fe37e", help="a git revision, or a folder holding its vqvae_prior")
    parser.add_argument("--model", choices=["prior", "vqvae"], default="prior")
    prior_step_arguments(parser, rounds=[6])
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=[(1, 28, 28), (1, 80, 64)],
                        help="VQ-VAE inputs C x H x W")
    parser.add_argument("--downsample", nargs="+", type=int, default=[4, 8], help="VQ-VAE, one per shape")
    parser.add_argument("--vqvae-batch-size", nargs="+", type=int, default=[64, 32], help="VQ-VAE, one per shape")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process, after 2 untimed")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="this checkout's training arithmetic (the baseline's: fp32)")
    parser.add_argument("--worker", choices=["this", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--case", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/fit-step.json", help="JSON results")
    return parser


def cases(args: argparse.Namespace) -> list[str]:
    if args.model == "prior":
        return [shape_str(grid) for grid in args.grids]
    return [f"{shape_str(shape)} /{d} b{b}" for shape, d, b in zip(args.shapes, args.downsample, args.vqvae_batch_size)]


def under(precision: MixedPrecision, loss: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """``loss`` (a forward pass) under ``precision``'s autocast, as a fit's step runs it."""
    def forward() -> torch.Tensor:
        with precision.autocast():
            return loss()

    return forward


def worker(args: argparse.Namespace) -> None:
    """One side's steps in this process: prints the median step in seconds."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        if args.worker == "this":
            retain_freed_memory()  # as fit_folder does on the CPU
            module = importlib.import_module(f"vqvae_prior.{args.model}")
        else:
            module = import_baseline(args.baseline, Path(folder), module=args.model)
        precision = MixedPrecision(args.precision if args.worker == "this" else "fp32", device)
        torch.manual_seed(args.seed)
        if args.model == "prior":
            grid = args.grids[args.case]
            model = module.GatedPixelCNN(module.PriorConfig(codebook_size=args.codebook, num_classes=10,
                                                            num_layers=args.layers, head_channels=args.head)).train()
            codes = torch.randint(args.codebook, (args.batch_size, *grid))  # (B, h, w)
            labels = torch.randint(10, (args.batch_size,))  # (B,)
            step = timed_step(adam(model, 1e-3), under(precision, lambda: model.nll(codes, labels)), device)
        else:
            shape, downsample = args.shapes[args.case], args.downsample[args.case]
            model = module.VQVAE(module.VQVAEConfig(in_channels=shape[0], downsample=downsample, channels=64,
                                                    residual_channels=32, codebook_size=512)).train()
            x = torch.rand(args.vqvae_batch_size[args.case], *shape)  # (B, C, H, W)
            step = timed_step(adam(model, 1e-3), under(precision, lambda: model(x).loss), device)
        for _ in range(2):
            step()
        print(json.dumps(median([step() for _ in range(args.steps)])))


def worker_command(args: argparse.Namespace, side: str, case: int) -> list[str]:
    """The command line of one side's process for ``case``, with every option that shapes the model and its steps."""
    def shapes(values: list[tuple[int, ...]]) -> list[str]:
        return ["x".join(map(str, v)) for v in values]

    argv = [sys.executable, "-m", "benchmarks.fit_step", "--baseline", args.baseline, "--model", args.model,
            "--grids", *shapes(args.grids), "--shapes", *shapes(args.shapes),
            "--downsample", *map(str, args.downsample), "--vqvae-batch-size", *map(str, args.vqvae_batch_size),
            "--batch-size", str(args.batch_size), "--layers", str(args.layers), "--head", str(args.head),
            "--codebook", str(args.codebook), "--steps", str(args.steps), "--seed", str(args.seed),
            "--precision", args.precision,
            "--worker", side, "--case", str(case)]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def main(args: argparse.Namespace) -> dict:
    if args.worker:
        worker(args)
        return {}
    _, result = start(args)
    rounds = args.rounds[0]
    rows, result["runs"] = [], []
    for case, name in enumerate(cases(args)):
        times: dict[str, list[float]] = {"this": [], "baseline": []}
        for r in range(rounds):
            for side in (("this", "baseline") if r % 2 == 0 else ("baseline", "this")):
                out = subprocess.run(worker_command(args, side, case), capture_output=True, text=True, check=True,
                                     cwd=ROOT).stdout
                times[side].append(json.loads(out.strip().splitlines()[-1]))
        figures = against_baseline(times)
        result["runs"].append({"case": name, "rounds": rounds, **figures})
        rows.append([name, str(rounds), f"{figures['baseline_step_seconds']:.4g}",
                     f"{figures['this_step_seconds']:.4g}", f"{figures['speedup']:.3f}x",
                     f"{figures['paired_speedup']:.3f}x"])
        print(" | ".join(rows[-1]), flush=True)
    return finish(result, [args.model, "rounds", f"{args.baseline} s/step (its fits' process)",
                           "this s/step (its fits' process)", "speedup (medians)",
                           "speedup (median of rounds' ratios)"], rows, args.out)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
