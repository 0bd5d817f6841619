"""Where the cached sampler's time goes: wall time per position, operator profile, Python profile, arithmetic floor.

    python -m benchmarks.profile_sampler --threads 2 --grid 16x16 --batches 1 64

For each batch size, on the default prior (``PriorConfig(K=256, 10 classes)``): the wall time of one cached
sampling call per position; the ATen operator calls per position and the top operators by self time
(``torch.profiler``); the top Python functions by own time (``cProfile``); and the arithmetic floor, the same
matrix products and row convolutions the sampler needs, timed alone in a loop, as a share of the wall time. The
rest is the cost of calling operators one by one from Python.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import median, parse_shape
from vqvae_prior.prior import GatedPixelCNN, PriorConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=parse_shape, default="16x16", help="code-map grid h x w")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", type=int, default=12, help="rows of each profile table")
    return parser


def timed(fn, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls, after one warm-up call."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return median(runs)


def arithmetic_floor(model: GatedPixelCNN, n: int, shape: tuple[int, int]) -> tuple[float, float]:
    """Seconds of the cached sampler's matrix products per position, and of its row convolutions per row."""
    W, layers = shape[1], model.layers
    h_weights = [(layer.h_conv.weight.flatten(1), layer.h_conv.bias) for layer in layers]  # (2C, C*kw), (2C,)
    out_weights = [(layer.h_out.weight.flatten(1), layer.h_out.bias) for layer in layers]  # (2C, C), (2C,)
    head_weights = [model.head[1].weight.flatten(1), model.head[3].weight.flatten(1)]  # (256, C), (K, 256)
    h_in = [torch.randn(n, w.shape[1]) for w, _ in h_weights]  # (n, C*kw): each layer's window
    x = torch.randn(n, model.config.channels)  # (n, C)
    v_in = [torch.randn(n, layer.channels, layer.pad + 1, W + 2 * layer.pad) for layer in layers]  # row caches

    def per_position() -> None:
        for (hw, hb), (ow, ob), window in zip(h_weights, out_weights, h_in):
            F.linear(window, hw, hb)  # (n, 2C)
            F.linear(x, ow, ob)  # (n, 2C)
        F.linear(F.linear(x, head_weights[0]), head_weights[1])  # (n, K)

    def per_row() -> None:
        for layer, rows in zip(layers, v_in):
            F.conv2d(F.conv2d(rows, layer.v_conv.weight, layer.v_conv.bias), layer.v_to_h.weight)  # (n, 2C, 1, W)

    with torch.no_grad():
        return timed(per_position, 100), timed(per_row, 10)


def main(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GatedPixelCNN(PriorConfig(codebook_size=256, num_classes=10)).eval()
    shape = args.grid
    positions = shape[0] * shape[1]
    for n in args.batches:
        labels = torch.arange(n) % 10  # (n,)
        wall = timed(lambda: model.sample(n, shape, labels), 3)
        print(f"\n=== {shape[0]}x{shape[1]}, batch {n}: {wall:.3f} s, {1e3 * wall / positions:.2f} ms per position")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.sample(n, shape, labels)
        events = prof.key_averages()
        calls = sum(e.count for e in events if e.key.startswith("aten::"))
        print(f"ATen operator calls per position (nested ones included): {calls / positions:.0f}")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
        python = cProfile.Profile()
        python.runcall(model.sample, n, shape, labels)
        stream = io.StringIO()
        pstats.Stats(python, stream=stream).sort_stats("tottime").print_stats(args.rows)
        print(stream.getvalue())
        gemm, row = arithmetic_floor(model, n, shape)
        floor = gemm * positions + row * shape[0]
        print(f"arithmetic floor: {1e3 * gemm:.3f} ms of matrix products per position, {1e3 * row:.2f} ms of row "
              f"convolutions per row: {floor:.3f} s, {100 * floor / wall:.0f} % of the wall time")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
