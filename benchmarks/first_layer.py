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

import torch

from benchmarks.common import (
    interleaved, markdown_table, median, prior_step_arguments, prior_training_step, rounds_per_grid, shape_str,
    start, write_json,
)
from vqvae_prior.prior import AutoregressivePrior, GatedPixelCNN, PriorConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    prior_step_arguments(parser, rounds=[12, 4])
    parser.add_argument("--out", default="benchmarks/results/first-layer.json", help="JSON results")
    return parser


def main(args: argparse.Namespace) -> dict:
    device, result = start(args)
    result["runs"] = []
    paths = {"codes": GatedPixelCNN.logits_from_codes, "embeddings": AutoregressivePrior.logits_from_codes}
    rows = []
    for grid, n_rounds in zip(args.grids, rounds_per_grid(args)):
        torch.manual_seed(args.seed)
        config = PriorConfig(codebook_size=args.codebook, num_classes=10, num_layers=args.layers,
                             head_channels=args.head)
        model = GatedPixelCNN(config).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        codes = torch.randint(config.codebook_size, (args.batch_size, *grid), device=device)  # (B, h, w)
        labels = torch.randint(config.num_classes, (args.batch_size,), device=device)  # (B,)
        step = prior_training_step(model, optimizer, codes, labels, device)

        def on_path(name: str):
            def timed() -> float:
                model.logits_from_codes = paths[name].__get__(model)  # this instance only
                return step()
            return timed

        times = interleaved({name: on_path(name) for name in paths}, n_rounds)
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
