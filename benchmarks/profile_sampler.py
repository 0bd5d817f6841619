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
from vqvae_prior.sampling.cached import GatedPixelCNNState


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
    """Seconds of the cached sampler's matrix products per position, and of its row convolutions per row: the
    products of its own state (``GatedPixelCNNState``, its buffers and prepared weights), timed alone in a loop."""
    with torch.inference_mode():
        state = GatedPixelCNNState(model, n, shape, torch.arange(n) % model.config.num_classes)
        state.start_row(None)
        state.start_row(torch.zeros(n, shape[1], dtype=torch.long))  # every row buffer filled once
        layers, vertical = state.layers, state.rows.vertical

        def per_position() -> None:
            for layer in layers:
                torch.mm(layer.windows[0], layer.h_weight_t)  # (n, 2C): the horizontal convolution
                torch.mm(layer.gated, layer.res_weight_t)  # (n, C): the residual
            torch.mm(state.gated_rows, state.skip_weight_t)  # (n, C): the skips' sum
            state.head(state.skips)  # (n, K): its two products (and two ReLUs)

        def per_row() -> None:
            for layer in vertical:
                if layer.tables is None:  # the vertical convolution: a product, or table rows (the first layer)
                    v_pre = torch.mm(layer.v_windows_copy, layer.v_weight_t)  # (W*n, 2C)
                else:
                    v_pre = F.embedding_bag(layer.v_windows_copy, layer.tables, mode="sum")  # (W*n, 2C)
                torch.mm(v_pre, layer.vh_weight_t)  # (W*n, 2C): what the horizontal stack adds

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
