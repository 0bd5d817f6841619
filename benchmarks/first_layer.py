"""The prior's training step with its first layer's convolutions computed from the codes (table look-ups per kernel
tap, what ``GatedPixelCNN.forward`` does) against computed from the embedded codes (the convolutions, as before),
interleaved in one process so that the machine's noise falls on both alike.

    python -m benchmarks.first_layer --threads 2 --grids 7x7 16x16 --rounds 12 4

Forward + cross-entropy + backward + Adam on fixed random code maps and labels, batch ``--batch-size``, the prior at
``--layers`` x 64 channels, head ``--head``, K ``--codebook`` and 10 classes; each round times one step of each path,
in alternating order; the median step of each path and their ratio are reported.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import jsonable, machine, markdown_table, median, parse_shape, shape_str, sync, write_json
from pipelines.cli import pick_device
from vqvae_prior.prior import AutoregressivePrior, GatedPixelCNN, PriorConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", nargs="+", type=parse_shape, default=[(7, 7), (16, 16)])
    parser.add_argument("--rounds", nargs="+", type=int, default=[12, 4], help="rounds per grid (one number: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=15)
    parser.add_argument("--head", type=int, default=512, help="head channels")
    parser.add_argument("--codebook", type=int, default=512, help="codebook size K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/first-layer.json", help="JSON results")
    return parser


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rounds = args.rounds * len(args.grids) if len(args.rounds) == 1 else args.rounds
    if len(rounds) != len(args.grids):
        raise ValueError(f"--rounds: one number, or one per grid ({len(args.grids)}), got {len(args.rounds)}")
    result = {"machine": machine(device), "args": jsonable(vars(args)), "runs": []}
    print(result["machine"])
    paths = {"codes": GatedPixelCNN.logits_from_codes, "embeddings": AutoregressivePrior.logits_from_codes}
    rows = []
    for grid, n_rounds in zip(args.grids, rounds):
        torch.manual_seed(args.seed)
        config = PriorConfig(codebook_size=args.codebook, num_classes=10, num_layers=args.layers,
                             head_channels=args.head)
        model = GatedPixelCNN(config).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        codes = torch.randint(config.codebook_size, (args.batch_size, *grid), device=device)  # (B, h, w)
        labels = torch.randint(config.num_classes, (args.batch_size,), device=device)  # (B,)
        times: dict[str, list[float]] = {name: [] for name in paths}

        def step(name: str) -> float:
            model.logits_from_codes = paths[name].__get__(model)  # this instance only
            sync(device)
            t0 = time.perf_counter()
            optimizer.zero_grad()
            model.nll(codes, labels).backward()
            optimizer.step()
            sync(device)
            return time.perf_counter() - t0

        for name in paths:  # warm-up
            step(name)
        for r in range(n_rounds):
            for name in paths if r % 2 == 0 else reversed(paths):
                times[name].append(step(name))
        codes_s, embeddings_s = median(times["codes"]), median(times["embeddings"])
        result["runs"].append({"grid": list(grid), "rounds": n_rounds, "codes_step_seconds": codes_s,
                               "embeddings_step_seconds": embeddings_s, "speedup": embeddings_s / codes_s,
                               "codes_runs": times["codes"], "embeddings_runs": times["embeddings"]})
        rows.append([shape_str(grid), str(n_rounds), f"{embeddings_s:.4g}", f"{codes_s:.4g}",
                     f"{args.batch_size / embeddings_s:.1f}", f"{args.batch_size / codes_s:.1f}",
                     f"{embeddings_s / codes_s:.3f}x"])
        print(" | ".join(rows[-1]), flush=True)
    result["table"] = markdown_table(["grid", "rounds", "from embeddings s/step", "from codes s/step",
                                      "code maps/s before", "code maps/s now", "speedup"], rows)
    print("\n" + result["table"])
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
