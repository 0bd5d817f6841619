"""Training-throughput benchmark: the VQ-VAE (images/s) and the gated PixelCNN prior (code maps/s).

    python -m benchmarks.training --threads 2 --out benchmarks/results/training-cpu.json
    python -m benchmarks.training --threads 2 --precision fp32 bf16 --out benchmarks/results/training-bf16.json

One training step is what ``pipelines.fit_vqvae`` / ``pipelines.fit_prior`` do per batch: forward, loss, backward
and an Adam step. The VQ-VAE is ``VQVAEConfig(in_channels=C, downsample=--downsample)`` (every other field at its
default, EMA codebook) on random inputs in [0, 1] of each ``--vqvae-shapes`` (28x28 images, a 128x80 spectrogram);
the prior is ``PriorConfig(K=256, 10 classes, dropout=--dropout)`` on random code maps and labels of each
``--prior-grids``; the fit entry points' audio defaults are ``--downsample 8 --dropout 0.5`` (BENCHMARKS.md). Each
is warmed up for ``--warmup`` steps, then ``--steps`` steps are timed one by one; the median step gives the
throughput. ``--precision``: each row at each precision, the step as the fits take it (``MixedPrecision``: the
forward pass under autocast, fp16 with a gradient scaler).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from benchmarks.common import (
    jsonable, machine, markdown_table, median, parse_shape, shape_str, time_steps, write_json,
)
from vqvae_prior.training.steps import pick_device
from vqvae_prior.training.steps import PRECISIONS, MixedPrecision, adam
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.vqvae import VQVAE, VQVAEConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae-shapes", nargs="*", type=parse_shape, default=[(1, 28, 28), (1, 128, 80)],
                        help="VQ-VAE inputs C x H x W")
    parser.add_argument("--prior-grids", nargs="*", type=parse_shape, default=[(7, 7), (32, 20)],
                        help="prior code maps h x w")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--downsample", type=int, default=VQVAEConfig().downsample, help="of the VQ-VAE")
    parser.add_argument("--dropout", type=float, default=0.0, help="of the prior's gated layers")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (as the fit entry points)")
    parser.add_argument("--precision", nargs="+", choices=tuple(PRECISIONS), default=["fp32"],
                        help="one row per precision (fp16: CUDA)")
    parser.add_argument("--compile", action="store_true", help="also each row with the model torch.compile'd "
                        "(as fit_* --compile)")
    parser.add_argument("--prior-layers", type=int, default=PriorConfig.num_layers)
    parser.add_argument("--prior-head", type=int, default=PriorConfig.head_channels, help="prior head channels")
    parser.add_argument("--prior-codebook", type=int, default=256, help="prior codebook size K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/training.json", help="JSON results")
    return parser


def vqvae_step(
    shape: tuple[int, int, int], batch: int, lr: float, device: torch.device, downsample: int,
    precision: MixedPrecision, compile: bool = False,
) -> Callable[[], None]:
    """One VQ-VAE training step on a fixed random batch (B, C, H, W), as in ``pipelines.fit_vqvae``."""
    model = VQVAE(VQVAEConfig(in_channels=shape[0], downsample=downsample)).to(device).train()
    if compile:
        model.compile()
    optimizer = adam(model, lr)  # as the fits build it
    x = torch.rand(batch, *shape, device=device)  # (B, C, H, W) in [0, 1]

    def step() -> None:
        with precision.autocast():
            out = model(x)
        precision.step(out.loss, optimizer)

    return step


def prior_step(
    grid: tuple[int, int], batch: int, lr: float, device: torch.device, dropout: float, precision: MixedPrecision,
    compile: bool = False, layers: int = PriorConfig.num_layers, head: int = PriorConfig.head_channels,
    codebook_size: int = 256,
) -> Callable[[], None]:
    """One prior training step on fixed random code maps (B, h, w) and labels (B,), as in ``pipelines.fit_prior``."""
    config = PriorConfig(codebook_size=codebook_size, num_classes=10, num_layers=layers, head_channels=head,
                         dropout=dropout)
    model = GatedPixelCNN(config).to(device).train()
    if compile:
        model.compile()
    optimizer = adam(model, lr)  # as the fits build it
    codes = torch.randint(config.codebook_size, (batch, *grid), device=device)  # (B, h, w)
    labels = torch.randint(config.num_classes, (batch,), device=device)  # (B,)

    def step() -> None:
        with precision.autocast():
            loss = model.nll(codes, labels)
        precision.step(loss, optimizer)

    return step


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise ValueError("need --steps >= 1, --warmup >= 0 and --batch-size >= 1")
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    result = {"machine": machine(device), "batch_size": args.batch_size,
              "args": jsonable(vars(args))}
    print(result["machine"])
    jobs = []
    for name in args.precision:
        precision = MixedPrecision(name, device)
        for compiled in (False, True) if args.compile else (False,):
            label = name + (" compiled" if compiled else "")
            jobs += [("VQ-VAE", "images/s", shape, label,
                      vqvae_step(shape, args.batch_size, args.lr, device, args.downsample, precision, compiled))
                     for shape in args.vqvae_shapes]
            jobs += [("prior", "code maps/s", grid, label,
                      prior_step(grid, args.batch_size, args.lr, device, args.dropout, precision, compiled,
                                 args.prior_layers, args.prior_head, args.prior_codebook))
                     for grid in args.prior_grids]

    rows, runs = [], []
    for model, unit, shape, precision_name, step in jobs:
        times = time_steps(step, args.warmup, args.steps, device)
        seconds = median(times)
        runs.append({"model": model, "input": list(shape), "precision": precision_name, "unit": unit,
                     "batch": args.batch_size,
                     "step_seconds": seconds, "per_second": args.batch_size / seconds, "step_runs": times})
        rows.append([model, shape_str(shape), precision_name, str(args.batch_size), f"{seconds:.4g}",
                     f"{args.batch_size / seconds:,.1f} {unit}"])
        print(" | ".join(rows[-1]), flush=True)
    result["runs"] = runs
    result["table"] = markdown_table(["model", "input", "precision", "batch", "s/step (median)", "throughput"], rows)
    print("\n" + result["table"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
