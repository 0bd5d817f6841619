"""Sampling benchmark: the reference and the cached sampler of the default gated PixelCNN prior, side by side.

    python -m benchmarks.sampling --threads 2 --reference-positions 16 --check-grid 16x16 --check-batch 4

For every grid and batch size: seconds per sample of each sampler (same ``torch.Generator`` seed, class labels
0, 1, ..., 9, 0, ...) and the speedup, as a markdown table and a JSON file. The prior is ``PriorConfig(K=256, 10
classes)`` with every other field at its default, randomly initialized (the cost does not depend on the weights).

The reference sampler runs the whole network h*w times, each time on the same-size grid, so its cost per position
is constant: it is timed on its first P positions (``--reference-positions``) and extrapolated linearly to h*w
(cells marked ``*``). The script checks that claim first: one full reference run on ``--check-grid``, compared
with the extrapolation from its own first P positions. The cached sampler is always timed in full; its time is
also given in full passes, units of one forward pass of the network over the batch (the reference's cost per
position; the cached sampler's arithmetic is about one). Each cell is warmed up once, then timed in rounds, each
running every sampler once, back to back (at least ``--rounds``, and until each sampler's runs add up to
``--min-time`` seconds): seconds per sample are the medians of the runs, the speedup and the full passes the medians
of each round's ratio, so that the machine's drift between rounds cancels; the table gives each cell's rounds and
the range of the full passes over them.

With ``--vqvae`` and ``--prior`` checkpoints it also times ``pipelines.generate.generate(n=64, labels)`` end to end
(checkpoint loading included), and its sample + decode chain on models already loaded: median of ``--runs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch
from torch import nn

from benchmarks.common import (
    interleaved, markdown_table, median, parse_shape, run_arguments, shape_str, start, sync, write_json,
)
from pipelines.generate import generate
from vqvae_prior.sampling import stepwise
from vqvae_prior.checkpoint import load_prior, load_vqvae
from vqvae_prior.prior import GatedPixelCNN, PriorConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", nargs="+", type=parse_shape, help="code-map grids h x w",
                        default=[(7, 7), (16, 16), (28, 28), (32, 32), (32, 20)])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--reference-positions", type=int, default=16, help="P, positions the reference is timed "
                        "on before extrapolating to h*w; 0: all (no extrapolation)")
    parser.add_argument("--check-grid", type=parse_shape, default="7x7", help="grid of the extrapolation check")
    parser.add_argument("--check-batch", type=int, default=16, help="0: no check")
    parser.add_argument("--methods", nargs="+", default=["cached"], help="samplers timed against the reference: "
                        "cached, fused; NAME-eager runs it without CUDA graphs (sampling.stepwise.CUDA_GRAPHS off)")
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="time rounds until each sampler's runs add up to this many seconds")
    parser.add_argument("--rounds", type=int, default=3, help="at least this many rounds of every sampler")
    run_arguments(parser)
    parser.add_argument("--vqvae", help="VQ-VAE checkpoint: also time generate() (needs --prior)")
    parser.add_argument("--prior", help="prior checkpoint fitted on that VQ-VAE's codes")
    parser.add_argument("--n", type=int, default=64, help="samples per generate() call")
    parser.add_argument("--runs", type=int, default=5, help="timed generate() calls")
    parser.add_argument("--out", default="benchmarks/results/sampling.json", help="JSON results")
    return parser


class _Stop(Exception):
    """Raised inside a sampler by a forward pre-hook to end it early."""


def time_sampler(model: GatedPixelCNN, method: str, n: int, shape: tuple[int, int], seed: int,
                 clock: nn.Module | None = None, stop_after: int | None = None) -> tuple[float, list[float]]:
    """Seconds of one ``model.sample(n, shape, labels, method=method)`` call with a generator seeded by ``seed``.

    With ``clock``: also the times (from the start) at which ``clock`` was called; with ``stop_after`` the sampler is
    stopped when ``clock`` is about to be called for the (stop_after + 1)-th time, and the time up to then returned.
    """
    device, marks = model.device, []

    def hook(module: nn.Module, inputs: tuple) -> None:
        sync(device)
        marks.append(time.perf_counter() - t0)
        if stop_after is not None and len(marks) > stop_after:
            raise _Stop

    handle = clock.register_forward_pre_hook(hook) if clock is not None else None
    labels = torch.arange(n, device=device) % model.config.num_classes  # (n,)
    generator = torch.Generator(device).manual_seed(seed)
    try:
        sync(device)
        t0 = time.perf_counter()
        model.sample(n, shape, labels, generator=generator, method=method)
        sync(device)
        seconds = time.perf_counter() - t0
    except _Stop:
        seconds = marks[-1]
    finally:
        if handle is not None:
            handle.remove()
    return seconds, marks


def reference_seconds(model: GatedPixelCNN, n: int, shape: tuple[int, int], P: int, seed: int) -> float:
    """Seconds of the reference sampler on (n, h, w), timed on its first P positions and extrapolated to h * w."""
    positions = shape[0] * shape[1]
    seconds, marks = time_sampler(model, "reference", n, shape, seed, clock=model, stop_after=P)
    if P >= positions:
        return seconds
    return marks[0] + (marks[P] - marks[0]) * positions / P  # set-up before position 0, then P equal positions


def check_extrapolation(model: GatedPixelCNN, shape: tuple[int, int], n: int, P: int, seed: int) -> dict:
    """One full reference run; its time against the extrapolation from its own first P positions."""
    time_sampler(model, "reference", n, shape, seed, clock=model, stop_after=P)  # warm-up: P positions, as timed
    full, marks = time_sampler(model, "reference", n, shape, seed, clock=model)  # marks[i]: start of position i
    P = min(P, len(marks) - 1)
    extrapolated = marks[0] + (marks[P] - marks[0]) * len(marks) / P
    return {"grid": list(shape), "batch": n, "positions": len(marks), "P": P, "full_seconds": full,
            "extrapolated_seconds": extrapolated, "ratio": extrapolated / full}


def time_method(model: GatedPixelCNN, name: str, n: int, shape: tuple[int, int], seed: int) -> float:
    """Seconds of one call of the sampler ``name`` ("cached", "fused", or either + "-eager": no CUDA graphs)."""
    method, eager = name.removesuffix("-eager"), name.endswith("-eager")
    graphs, stepwise.CUDA_GRAPHS = stepwise.CUDA_GRAPHS, not eager
    try:
        return time_sampler(model, method, n, shape, seed)[0]
    finally:
        stepwise.CUDA_GRAPHS = graphs


def progress(line: str) -> None:
    """A line of progress as each sampler of a cell finishes, with the clock: where a run that is cut short stood."""
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", flush=True)


def benchmark_cell(model: GatedPixelCNN, shape: tuple[int, int], n: int, P: int, min_time: float, seed: int,
                   methods: tuple[str, ...] = ("cached",), min_rounds: int = 3) -> dict:
    """Seconds per sample of the reference and of each of ``methods`` on one grid and batch size, timed in rounds
    (:func:`benchmarks.common.interleaved`): at least ``min_rounds``, and until each sampler's runs add up to
    ``min_time`` seconds."""
    positions = shape[0] * shape[1]
    P = min(P or positions, positions)
    time_sampler(model, "reference", n, shape, seed, clock=model, stop_after=1)  # warm-up: one position
    warm_ups = {name: time_method(model, name, n, shape, seed) for name in methods}  # Triton compiles at the first
    samplers = {"reference": lambda: reference_seconds(model, n, shape, P, seed)}  # whole batch, h*w positions
    samplers |= {name: (lambda name=name: time_method(model, name, n, shape, seed)) for name in methods}
    times = interleaved(samplers, min_rounds, min_time, warm_up=False)
    ref = times["reference"]
    cell = {"grid": list(shape), "batch": n, "reference_positions": P, "extrapolated": P < positions,
            "reference_runs": ref, "reference_s_per_sample": median(ref) / n}
    progress(f"{shape_str(shape)} x {n}: reference {median(ref):.4g} s ({len(ref)} runs)")
    for name in methods:
        runs = times[name]
        progress(f"{shape_str(shape)} x {n}: {name} {median(runs):.4g} s ({len(runs)} runs; warm-up "
                 f"{warm_ups[name]:.3g} s)")
        # speedup and full passes: the median of each round's, its runs back to back (the machine's drift cancels)
        passes = [positions * t / r for r, t in zip(ref, runs)]
        cell |= {f"{name}_runs": runs, f"{name}_s_per_sample": median(runs) / n,
                 f"{name}_speedup": median([r / t for r, t in zip(ref, runs)]),
                 f"{name}_in_full_passes": median(passes), f"{name}_full_passes_range": [min(passes), max(passes)]}
    if "cached" in methods:  # the names of earlier result files
        cell |= {"speedup": cell["cached_speedup"], "cached_in_full_passes": cell["cached_in_full_passes"]}
    cell["load_average"] = os.getloadavg()[0]  # > threads: other processes competed for the cores
    return cell


def time_generate(args: argparse.Namespace, device: torch.device) -> dict:
    """generate() end to end, and its sample -> decode chain on loaded models (seconds, median of args.runs)."""
    vqvae, _ = load_vqvae(args.vqvae, device)
    prior, ckpt = load_prior(args.prior, device)
    shape, classes = tuple(ckpt["code_shape"]), prior.config.num_classes
    labels = [i % classes for i in range(args.n)] if classes else None

    def end_to_end() -> float:
        t0 = time.perf_counter()
        generate(args.vqvae, args.prior, args.n, labels, seed=args.seed, device=device)
        return time.perf_counter() - t0

    def sample_decode() -> tuple[float, float]:
        t0 = time.perf_counter()
        generator = torch.Generator(device).manual_seed(args.seed)
        codes = prior.sample(args.n, shape, prior.check_labels(labels, args.n), generator=generator)  # (n, h, w)
        sync(device)
        t1 = time.perf_counter()
        vqvae.decode_indices(codes).clamp(0, 1).cpu()  # (n, C, H, W), as generate() returns it
        return t1 - t0, time.perf_counter() - t1

    end_to_end(), sample_decode()  # warm-up
    e2e = [end_to_end() for _ in range(args.runs)]
    chain = [sample_decode() for _ in range(args.runs)]
    return {"n": args.n, "code_shape": list(shape), "vqvae": args.vqvae, "prior": args.prior, "runs": args.runs,
            "end_to_end_seconds": median(e2e), "sample_decode_seconds": median([s + d for s, d in chain]),
            "sample_seconds": median([s for s, _ in chain]), "decode_seconds": median([d for _, d in chain]),
            "end_to_end_runs": e2e, "sample_decode_runs": chain}


def main(args: argparse.Namespace) -> dict:
    if (args.vqvae is None) != (args.prior is None):
        raise ValueError("pass both --vqvae and --prior to time generate(), or neither")
    device, result = start(args)
    torch.manual_seed(args.seed)
    config = PriorConfig(codebook_size=256, num_classes=10)
    model = GatedPixelCNN(config).to(device).eval()
    P = args.reference_positions
    result |= {"prior": dataclasses.asdict(config), "reference_positions": P}

    check = None
    if P and args.check_batch:
        check = check_extrapolation(model, args.check_grid, args.check_batch, P, args.seed)
    result["check"] = check
    if check:
        print(f"check, reference on {shape_str(args.check_grid)} x batch {check['batch']}: all {check['positions']} "
              f"positions {check['full_seconds']:.3f} s; extrapolated from the first {check['P']}: "
              f"{check['extrapolated_seconds']:.3f} s (ratio {check['ratio']:.3f})")

    cells, rows = [], []
    for shape in args.grids:
        for n in args.batches:
            cell = benchmark_cell(model, shape, n, P, args.min_time, args.seed, tuple(args.methods), args.rounds)
            cells.append(cell)
            star = " *" if cell["extrapolated"] else ""
            rows.append([shape_str(shape), str(n), str(len(cell["reference_runs"])),
                         f"{cell['reference_s_per_sample']:.4g}{star}"])
            for name in args.methods:
                low, high = cell[f"{name}_full_passes_range"]
                rows[-1] += [f"{cell[name + '_s_per_sample']:.4g}", f"{cell[name + '_speedup']:.1f}x{star}",
                             f"{cell[name + '_in_full_passes']:.2f}{star} ({low:.2f} to {high:.2f})"]
            print(" | ".join(rows[-1]), flush=True)
    result["cells"] = cells
    header = ["grid", "batch", "rounds", "reference s/sample"]
    for name in args.methods:
        header += [f"{name} s/sample", "speedup", f"{name}, in full passes (rounds' range)"]
    table = markdown_table(header, rows)
    if any(cell["extrapolated"] for cell in cells):
        table += f"\n\n\\* reference timed on its first P = {P} positions and extrapolated linearly to h*w"
        table += (f" (check on {shape_str(args.check_grid)}, batch {check['batch']}: extrapolated / full = "
                  f"{check['ratio']:.3f})." if check else ".")
    result["table"] = table
    print("\n" + table)

    if args.vqvae is not None:
        gen = time_generate(args, device)
        result["generate"] = gen
        print(f"\ngenerate(n={gen['n']}, {shape_str(tuple(gen['code_shape']))} codes), median of {gen['runs']}: "
              f"end to end {gen['end_to_end_seconds']:.3f} s; sample + decode {gen['sample_decode_seconds']:.3f} s "
              f"(sample {gen['sample_seconds']:.3f} s, decode {gen['decode_seconds']:.3f} s)")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
