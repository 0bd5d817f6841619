r"""Quality check of generated images: does a classifier trained on the real images recognize them, and how far are
they from real ones?

    python -m pipelines.image_check --vqvae runs/mnist/vqvae.pt --prior runs/mnist-prior/prior.pt \
        --per-class 100 --out runs/mnist-check.json

1. **Classifier**: a small CNN (:class:`vqvae_prior.evaluation.classifier.ConvClassifier`) trained on the real train
   split of the VQ-VAE's data set, rebuilt from the data spec in its checkpoint (``--data-root`` reads it from
   another folder), with light augmentation (:func:`vqvae_prior.evaluation.image_judges.augment`: random translations
   by up to ``--shift`` pixels and rotations by up to ``--rotate`` degrees). Seeded by ``--classifier-seed`` alone
   and cached in ``--cache-dir`` under a digest of the train images and labels and every classifier setting, so
   checks of other models on the same data reuse it. ``real``: its accuracy on the real held-out split, and the
   inception-style score of that split.
2. **Reconstructed** (the ceiling the prior can reach through this VQ-VAE): the VQ-VAE's reconstructions of the
   held-out images, judged like the generated ones.
3. **Generated**: ``--per-class`` samples of every class from a class-conditional prior (``--n`` samples from an
   unconditional one), by :class:`vqvae_prior.VQPriorPipeline` at ``--temperature`` and ``--guidance`` with ``--seed``: the fraction
   recognized as the class asked for, overall and per class, and the confusion matrix (rows: class asked for,
   columns: class recognized); for an unconditional prior only the two figures below.
4. For both judged sets: the inception-style score ``exp(E_x KL(p(y|x) || p(y)))``, and the Frechet distance of
   the classifier's penultimate features to real held-out half A beside the real-vs-real floor FD(B, A) at the same
   set size m = min(n, N_held_out // 2), and their ratio (:mod:`vqvae_prior.evaluation.metrics`; the
   reconstructions judged are those of half B's images, so none is paired with an image of A).
5. **Copying**: the distance from each generated code map to its nearest train code map (the fraction of positions
   whose codes differ), beside the same for real held-out code maps, and the number of exact copies.
6. ``worst``: the ``--worst`` samples the classifier found least like the class asked for (lowest probability of
   it; unconditional: of any class), listed in the report and drawn, most doubtful first, in a PNG beside it.

The report (JSON, ``--out``) also gives the seconds each part took. Seeded: the same arguments give the same report
on the same machine. Works for the labelled image data sets of ``data/`` (mnist-sample, mnist, fashion-mnist,
cifar10, image-folder; grayscale or RGB). The default classifier recognizes 98.6% of mnist-sample's 500 held-out
digits (34 epochs on its 4,500 train digits) and 99.3% of MNIST's 10,000 test digits (3 epochs on 60,000); the
whole check on mnist-sample with 100 samples per class takes about 2 minutes on one CPU core the first time,
mostly the classifier, and some 20 seconds once the classifier is cached.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import torch

from pipelines import check_cli, cli
from vqvae_prior.checkpoint import weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation import classifier, copying, image_judges, metrics, reports
from vqvae_prior.modality import Images, save_grid
from vqvae_prior.pipeline import check_samples, seeded
from vqvae_prior.training import batching


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    group = check_cli.add_check_args(parser, Images, epochs=None, batch_size=classifier.TrainSettings.batch_size,
                                     epochs_help="(default: enough to see about 150,000 train images, at least 2)")
    group.add_argument("--shift", type=float, default=image_judges.AugmentSettings.shift,
                       help="augmentation: max shift, pixels")
    group.add_argument("--rotate", type=float, default=image_judges.AugmentSettings.rotate,
                       help="augmentation: max rotation, degrees")
    parser.add_argument("--per-class", type=int,
                        help="samples per class of a class-conditional prior (default 100)")
    parser.add_argument("--n", type=int, help="samples of an unconditional prior (default 1000)")
    parser.add_argument("--worst", type=int, default=50,
                        help="samples least like their class, drawn in a PNG (0: none)")
    return parser


def check_args(args: argparse.Namespace, num_classes: int, prior_path: str) -> tuple[int | None, int]:
    """(samples per class, or None for an unconditional prior; the number of samples), or a clear error about the
    arguments. ``num_classes``: the prior's, 0 when unconditional."""
    if num_classes and args.n is not None:
        raise UsageError(f"--n is for an unconditional prior; {prior_path} is class-conditional: pass --per-class")
    if not num_classes and args.per_class is not None:
        raise UsageError(f"--per-class: {prior_path} is unconditional, its samples have no class to be recognized "
                         "as; pass --n (the check then reports the score and the distance only)")
    if num_classes:
        per_class = 100 if args.per_class is None else args.per_class
        flag, asked, n = "--per-class", per_class, per_class * num_classes
    else:
        per_class = None
        flag, asked = "--n", 1000 if args.n is None else args.n
        n = asked
    if asked < 1:
        raise UsageError(f"{flag} must be >= 1, got {asked}")
    check_samples(n, f"{flag} {asked}" + (f" x {num_classes} classes" if num_classes else ""), args.guidance)
    cli.at_least(args, 0, "worst")
    cli.positive(args, "shift", "rotate", zero=True)
    return per_class, n


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the check; returns the report (also written to ``args.out``)."""
    watch = reports.Stopwatch()
    # every refusal before any long work
    out = check_cli.check_shared_args(args)
    pipe = check_cli.load_pipeline(args, Images)
    vqvae, spec, device = pipe.vqvae, pipe.data_spec, pipe.device
    conditional = pipe.prior.config.num_classes > 0
    per_class, n = check_args(args, pipe.prior.config.num_classes, args.prior)

    with watch("data"):
        splits = batching.load_splits(spec, args.data_root, pipe.sample_shape)
        label_names = list(splits.label_names)
        x_train, y_train = batching.as_tensors(splits.train)  # (N, C, H, W) uint8, (N,)
        x_test, y_test = batching.as_tensors(splits.test)
        halves = metrics.RealHalves.draw(len(x_test), n, args.seed)  # before any long work: refuses < 4 held out

    # 1. the classifier, trained on the real train split (or from the cache), and the real held-out figures
    config = classifier.ClassifierConfig(x_train.shape[1], len(label_names), args.classifier_channels)
    settings = classifier.TrainSettings(args.classifier_epochs or image_judges.default_epochs(len(x_train)),
                                        args.classifier_batch_size, seed=args.classifier_seed)
    aug = image_judges.AugmentSettings(args.shift, args.rotate)
    key = {"kind": "image-classifier", "data": weights_digest([x_train, y_train]), "label_names": label_names,
           "config": asdict(config), "train": asdict(settings), "augment": asdict(aug)}
    with watch("classifier"):
        model, cached = classifier.cached_classifier(
            check_cli.cache_dir(args), key, lambda: classifier.ConvClassifier(config),
            lambda: image_judges.train_classifier(x_train, y_train, config, settings, aug, device), device,
        )
    print(f"classifier: {sum(p.numel() for p in model.parameters()):,} parameters, "
          + ("from the cache" if cached else f"{settings.epochs} epochs on {len(x_train)} real train images")
          + f" ({watch.seconds['classifier']:.0f} s)")
    with watch("real"):
        real = classifier.predict(model, x_test, device)
        report_real = {**metrics.accuracy(real.labels, y_test, label_names),
                       "inception_score": metrics.inception_score(real.probs)}

    # 2. the ceiling: the VQ-VAE's reconstructions of the held-out images (figures of half B's)
    with watch("reconstructed"):
        with torch.no_grad():
            recon = torch.cat([vqvae(xb).reconstruction.clamp(0, 1).cpu()
                               for xb, _ in batching.batches(x_test, y_test, 256, device)])  # (N, C, H, W)
        recon_pred = classifier.predict(model, recon, device)
        report_recon = metrics.judge_set(recon_pred, real, halves, label_names, args.seed, y_test, halves.b)

    # 3. generated samples
    with watch("generate"):
        asked = torch.arange(len(label_names)).repeat_interleave(per_class) if conditional else None  # (n,)
        result = pipe(n, asked, args.temperature, seeded(args.seed, device), guidance=args.guidance)
    with watch("generated"):
        gen_pred = classifier.predict(model, result.images, device)
        report_gen = metrics.judge_set(gen_pred, real, halves, label_names, args.seed, asked)

    # 4. copying, from code maps cached beside the classifiers
    with watch("copying"):
        train_maps, held_out_maps = copying.code_maps(vqvae, spec, args.data_root, device, check_cli.cache_dir(args))
        report_copying = copying.copying(result.codes, held_out_maps, train_maps)

    # 5. the samples least like their class
    order, worst = metrics.worst_samples(gen_pred.probs, asked, label_names, args.worst)
    worst_png = out.with_name(f"{out.stem}-worst.png")
    if args.worst:
        save_grid(result.images[order], worst_png, nrow=10)

    report = {
        "vqvae": str(args.vqvae),
        "prior": str(args.prior),
        "digests": check_cli.digests(pipe),
        "args": vars(args),
        "label_names": label_names,
        "classifier": {"config": asdict(config), "train": asdict(settings), "augment": asdict(aug),
                       "parameters": sum(p.numel() for p in model.parameters()), "train_images": len(x_train),
                       "cached": cached},
        "real": report_real,
        "reconstructed": report_recon,
        "generated": report_gen,
        "copying": report_copying,
        "worst": worst,
        "worst_png": str(worst_png) if args.worst else None,
        "seconds": watch.seconds,
    }
    reports.write_report(report, out)
    print_report(report)
    print(f"wrote {out}" + (f" and {worst_png}" if args.worst else ""))
    return report


def print_report(report: dict[str, Any]) -> None:
    for name in ("real", "reconstructed", "generated"):
        r = report[name]
        line = f"{name:>13}: n={r['n']}"
        if "accuracy" in r:
            per_class = " ".join(f"{k}:{v:.2f}" for k, v in r["per_class"].items())
            line += f" recognized {r['accuracy']:.3f} ({per_class})"
        line += f" score {r['inception_score']:.2f}"
        if "frechet" in r:
            fd = r["frechet"]
            line += (f" Frechet {fd['distance']:.3g} = {fd['ratio']:.2f} x the real floor {fd['floor']:.3g} "
                     f"(m={fd['m']})")
        print(line)
    reports.print_copying(report["copying"])

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
