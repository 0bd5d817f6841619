"""The reports of several ``image_check`` or ``audio_check`` runs of one prior at different seeds, pooled: how often
all their samples are recognized (each class too, the weakest named) and their Frechet distance's mean over the
floor's mean (vqvae_prior.evaluation.metrics.pooled: one seed's floor moves twofold with the real halves it draws,
so one seed's ratio says little):

    for S in 0 1 2 3 4 5 6 7 8 9; do python -m pipelines.image_check --vqvae runs/mnist/vqvae.pt \\
        --prior runs/mnist-prior/prior.pt --guidance 0.5 --seed $S --out runs/check/g0.5-s$S.json; done
    python -m pipelines.check_summary runs/check/g0.5-s*.json [--out runs/check/g0.5.json]

The reports must judge the same VQ-VAE and prior with the same sampling and judges, each at its own seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipelines import cli
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation import metrics, reports
from vqvae_prior.training.options import flag

__all__ = ["get_args_parser", "judged_sets", "main"]

# what may differ between the reports pooled: where they were written and read, the device, and the seed itself
FREE = {"out", "seed", "device", "cache_dir", "data_root", "worst"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("reports", nargs="+", help="JSON reports of pipelines.image_check or pipelines.audio_check")
    parser.add_argument("--out", help="also write the pooled figures to this JSON file")
    return parser


def judged_sets(report: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    """The generated set's figures in a report: image_check's, or each family's mean of audio_check's."""
    if "generated" in report:
        return {"generated": report["generated"]}
    if "families" in report:
        return {f"generated ({name})": family["mean"]["generated"] for name, family in report["families"].items()}
    raise UsageError(f"{path}: not a report of pipelines.image_check or pipelines.audio_check (no generated set)")


def same_setting(name: str, report: dict[str, Any], first: dict[str, Any]) -> bool:
    """Whether two reports were run with the same option ``name``: for the checkpoints, the same weights (their
    digests; in reports without them, the same folder and file name, as a path may be given relative or whole)."""
    a, b = report["args"].get(name), first["args"].get(name)
    if name in ("vqvae", "prior") and a is not None and b is not None:
        if "digests" in report and "digests" in first:
            return report["digests"][name] == first["digests"][name]
        return Path(a).parts[-2:] == Path(b).parts[-2:]
    return a == b


def read(path: str) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a JSON report ({' '.join(str(e).split())})") from None
    if not isinstance(report, dict) or not isinstance(report.get("args"), dict):
        raise UsageError(f"{path}: not a report of pipelines.image_check or pipelines.audio_check (no args)")
    return report


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Print and return the pooled figures of each generated set (also written to ``--out``)."""
    found = [(path, read(path)) for path in args.reports]  # every refusal before any writing
    first_path, first = found[0]
    seeds: dict[Any, str] = {}
    for path, report in found:
        for name in sorted((set(first["args"]) | set(report["args"])) - FREE):
            if not same_setting(name, report, first):
                a, b = report["args"].get(name), first["args"].get(name)
                what = (f"judged other {name} weights ({a}) than {first_path} ({b})" if name in ("vqvae", "prior")
                        else f"was run with {flag(name)} {a!r}, {first_path} with {b!r}")
                raise UsageError(f"{path} {what}: pool the reports of one setting")
        seed = report["args"].get("seed")
        if seed in seeds:
            raise UsageError(f"{path} and {seeds[seed]} are both of --seed {seed}: each report pooled needs its own")
        seeds[seed] = path
    sets = [judged_sets(report, path) for path, report in found]
    summary = {"reports": list(args.reports), "seeds": list(seeds), "args": {k: v for k, v in first["args"].items()
                                                                          if k not in FREE},
               "pooled": {name: metrics.pooled([s[name] for s in sets]) for name in sets[0]}}
    for name, figures in summary["pooled"].items():
        line = f"{name}: {figures['seeds']} seed{'s' if figures['seeds'] > 1 else ''}, {figures['n']:,} samples"
        if "accuracy" in figures:
            per_seed, weakest = figures["per_seed_accuracy"], figures["weakest_class"]
            line += (f"; recognized {figures['accuracy']:.2%} ({min(per_seed):.1%} to {max(per_seed):.1%} a seed), "
                     f"the weakest class {weakest['class']} {weakest['accuracy']:.1%}")
        if "frechet" in figures:
            fd = figures["frechet"]
            line += (f"; Frechet {fd['distance']:.3g} over the floor's {fd['floor']:.3g} = {fd['ratio']:.2f}x (the "
                     f"ratios' mean {fd['mean_ratio']:.2f}x, {fd['least_ratio']:.2f}x to {fd['most_ratio']:.2f}x; "
                     f"m={fd['m']})")
        print(line)
    if args.out:
        reports.write_report(summary, Path(args.out))
        print(f"wrote {args.out}")
    return summary


console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
