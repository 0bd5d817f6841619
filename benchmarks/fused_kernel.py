"""The fused sampler's kernel alone: seconds per launch at several batch sizes and launch options.

    python -m benchmarks.fused_kernel --device cuda --batches 1 16 64 256 --warps 4 8 --precisions ieee tf32x3

For each batch n, each ``num_warps`` and each precision of the kernel's products (``ieee``: plain fp32, what the
sampler runs; ``tf32x3``: three TF32 tensor-core products, about fp32's accuracy): a fused state of the default prior (``PriorConfig(K=256, 10 classes)``,
randomly initialized) at the first row of a ``--grid`` map, then ``--launches`` launches of its kernel at one pixel
back to back, timed with one synchronization (``launches`` column: what a sampler that launches from Python can
reach, the larger of the host's launch cost and the kernel's time) and, on CUDA, the same launches captured once as
a CUDA graph and replayed (``graph`` column: the kernel's own time, as the sampler's row replay sees it). Without
CUDA it runs in Triton's interpreter (``TRITON_INTERPRET=1``), for the tests only.
"""

from __future__ import annotations

import argparse
import itertools

import torch

from benchmarks.common import jsonable, machine, markdown_table, median, parse_shape, time_steps, write_json
from vqvae_prior.training.steps import pick_device
from vqvae_prior.prior import GatedPixelCNN, PriorConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=parse_shape, default="32x32", help="code-map grid h x w")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--warps", nargs="+", type=int, default=[4], help="Triton num_warps values")
    parser.add_argument("--precisions", nargs="+", choices=("ieee", "tf32x3"), default=["ieee"],
                        help="input_precision of the kernel's products")
    parser.add_argument("--launches", type=int, default=100, help="launches per timed step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--out", default="benchmarks/results/fused-kernel.json", help="JSON results")
    return parser


def main(args: argparse.Namespace) -> dict:
    from vqvae_prior.sampling.fused import FusedGatedPixelCNNState  # imports Triton

    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    model = GatedPixelCNN(PriorConfig(codebook_size=256, num_classes=10)).to(device).eval()
    result = {"machine": machine(device), "args": jsonable(vars(args)), "runs": []}
    print(result["machine"])
    rows = []
    for n in args.batches:
        with torch.inference_mode():
            state = FusedGatedPixelCNNState(model, n, tuple(args.grid), torch.arange(n, device=device) % 10)
            state.start_row(None)
            for warps, precision in itertools.product(args.warps, args.precisions):

                def launches() -> None:
                    for _ in range(args.launches):
                        state.launch(args.grid[1] // 2, num_warps=warps, PRECISION=precision)

                per_launch = median(time_steps(launches, 1, args.steps, device)) / args.launches
                graph_launch = None
                if device.type == "cuda":
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        launches()
                    graph_launch = median(time_steps(graph.replay, 1, args.steps, device)) / args.launches
                result["runs"].append({"batch": n, "num_warps": warps, "precision": precision,
                                       "launch_seconds": per_launch, "graph_launch_seconds": graph_launch})
                rows.append([str(n), str(warps), precision, f"{per_launch * 1e6:.1f}",
                             "-" if graph_launch is None else f"{graph_launch * 1e6:.1f}"])
                print(" | ".join(rows[-1]), flush=True)
    result["table"] = markdown_table(
        ["batch", "num_warps", "precision", "us per launch, launches", "us per launch, graph"], rows)
    print("\n" + result["table"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
