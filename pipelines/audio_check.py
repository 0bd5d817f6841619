"""Intelligibility check of generated audio: do classifiers trained on the real recordings, listening with their own
ears, recognize the class asked for, and how far are the generated clips from real ones?

    python -m pipelines.audio_check --vqvae runs/fsdd/vqvae.pt --prior runs/fsdd-prior/prior.pt \
        --out runs/fsdd-check.json

1. **The judges**: ``--seeds`` small CNNs (:class:`vqvae_prior.evaluation.classifier.ConvClassifier`, seeds
   ``--classifier-seed``, +1, ...) trained on the real train recordings of the VQ-VAE's data set (the files named in
   its data spec, ``--data-root`` reads them from another folder), read as waveforms, not through the VQ-VAE's
   spectrograms. Each hears a clip through its own front end (:mod:`vqvae_prior.evaluation.audio_judges`): a 1 s
   window at 8 kHz, 512-sample FFTs every 128 samples, 40 mel bands of log power floored at -100 dB, standardized by
   the train clips' mean and deviation; settings independent of the model's (FSDD's VQ-VAE: 254-sample FFTs every 64
   samples, 64 mel bands of log magnitude, 0.632 s). Trained with augmentation: a random time shift (up to 0.1 s),
   gain (up to 6 dB), speed (up to 8% faster or slower, pitch with it), then one time mask (up to 8 frames) and one
   frequency mask (up to 6 bands). Each judge is cached in ``--cache-dir`` under a digest of the train waveforms and
   every setting.
2. **What they judge**: the real held-out clips three ways, as they are (``real``: the judges' own accuracy),
   through the VQ-VAE's spectrogram and Griffin-Lim (``real_griffin_lim``: what the representation and inversion
   cost) and through the VQ-VAE's reconstruction and Griffin-Lim (``reconstructed_griffin_lim``: what the codes
   cost on top, the ceiling of the prior); and ``--per-class`` clips of every class from the class-conditional
   prior (``generated``, at ``--temperature`` and ``--guidance``, Griffin-Lim waveforms as ``generate`` writes them).
3. **Figures** of each set (:mod:`vqvae_prior.evaluation.metrics`): the fraction recognized as the class asked for,
   overall and per class, with the confusion matrix (rows: class asked for, columns: class recognized); the
   inception-style score; and, for all but ``real``, the Frechet distance of the judge's penultimate features to real
   held-out half A beside the real-vs-real floor FD(B, A) at the same set size m = min(n, N_held_out // 2), and their
   ratio (the Griffin-Lim sets judged by their clips of half B, so none is paired with a clip of A). Every figure is
   given for each judge (``per_seed``) and as the ``mean`` and ``std`` (population) over the judges.
4. **Copying**: the distance from each generated code map to its nearest train code map (the fraction of
   positions whose codes differ), beside the same for real held-out code maps, and the number of exact copies.

The JSON report goes to ``--out``, with the seconds each part took. Seeded: the same arguments give the same report
on the same machine. Cost on FSDD with the defaults, in CPU time on this project's machine (measured once, under
load): each judge trains in about 2 minutes (the first, seed 0, recognizes 99.2% of the 250 real held-out clips),
once, then comes from the cache; the 1,000 Griffin-Lim inversions (250 + 250 held-out clips, 500 generated) take
about 5 minutes, as in the earlier check; the rest is seconds.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from pipelines import check_cli, cli
from vqvae_prior.audio import Spectrograms, invert
from vqvae_prior.checkpoint import weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation import audio_judges, classifier, copying, metrics, reports
from vqvae_prior.pipeline import seeded
from vqvae_prior.training import batching

def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    group = check_cli.add_check_args(parser, Spectrograms, epochs=20, batch_size=64,
                                     epochs_help="epochs of each judge (20)")
    group.add_argument("--seeds", type=int, default=3, help="judges, each trained with its own seed; figures averaged")
    parser.add_argument("--per-class", type=int, default=50,
                        help="generated clips per class (50: a per-class accuracy within about +-7 points)")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the check; returns the report (also written to ``args.out``)."""
    watch = reports.Stopwatch()
    # every refusal before any long work
    out = check_cli.check_shared_args(args)
    cli.at_least(args, 1, "per_class", "seeds")
    pipe = check_cli.load_pipeline(args, Spectrograms)  # refuses an out-of-date audio checkpoint too
    vqvae, spec, device = pipe.vqvae, pipe.data_spec, pipe.device
    if not pipe.prior.config.num_classes:
        raise UsageError(f"--prior {args.prior} is unconditional: fit it without --unconditional to ask for classes")
    cfg = pipe.modality.config
    hearing, aug = audio_judges.Hearing(), audio_judges.AugmentSettings()

    with watch("data"):
        splits = batching.load_splits(spec, args.data_root)
        label_names = list(splits.label_names)
        train_waves, y_train = audio_judges.read_clips(splits.train.paths, hearing), splits.train.labels  # (N, T), (N,)
        real_waves, y_test = audio_judges.read_clips(splits.test.paths, hearing), splits.test.labels
        halves = metrics.RealHalves.draw(len(real_waves), args.per_class * len(label_names), args.seed)
        front = audio_judges.LogMel(hearing).fit(train_waves).to(device)

    # the sets to judge: real held-out clips three ways, and generated clips of every class
    with watch("griffin_lim"):
        x_test = splits.test.images  # (N, 1, n_frames, F) the VQ-VAE's spectrograms
        with torch.no_grad():
            outputs = [vqvae(xb.to(device)) for xb in x_test.split(256)]
        recon = torch.cat([out.reconstruction.clamp(0, 1).cpu() for out in outputs])  # (N, 1, n_frames, F)
        held_out_maps = torch.cat([out.indices.cpu() for out in outputs])  # (N, h, w)
        through = {name: audio_judges.to_hearing(np.stack([invert(s[0].numpy(), cfg) for s in specs]),
                                                 cfg.sample_rate, hearing)
                   for name, specs in (("real_griffin_lim", x_test), ("reconstructed_griffin_lim", recon))}
    with watch("generate"):
        asked = torch.arange(len(label_names)).repeat_interleave(args.per_class)  # (n,)
        result = pipe(len(asked), asked, args.temperature, seeded(args.seed, device), guidance=args.guidance)
        sets = {"real": (real_waves, y_test), **{k: (w, y_test) for k, w in through.items()},
                "generated": (audio_judges.to_hearing(result.waveforms, result.sample_rate, hearing), asked)}

    # each judge: trained (or from the cache), then the figures of every set
    config = classifier.ClassifierConfig(1, len(label_names), args.classifier_channels)
    data_digest = weights_digest([train_waves, y_train])
    per_seed, cached = [], []
    for seed in range(args.classifier_seed, args.classifier_seed + args.seeds):
        settings = classifier.TrainSettings(args.classifier_epochs, args.classifier_batch_size, seed=seed)
        key = {"kind": "audio-classifier", "data": data_digest, "label_names": label_names, "hearing": asdict(hearing),
               "augment": asdict(aug), "config": asdict(config), "train": asdict(settings)}
        with watch("classifiers"):
            model, hit = classifier.cached_classifier(
                check_cli.cache_dir(args), key, lambda: classifier.ConvClassifier(config),
                lambda: audio_judges.train_judge(train_waves, y_train, front, config, settings, aug, device), device,
            )
        cached.append(hit)
        print(f"judge {seed}: " + ("from the cache" if hit else f"{settings.epochs} epochs on {len(train_waves)} "
                                   f"real train clips") + f" ({watch.seconds['classifiers']:.0f} s so far)")
        with watch("figures"):
            predictions = {name: classifier.predict(model, w, device, prepare=front) for name, (w, _) in sets.items()}
            real = predictions["real"]
            per_seed.append({
                "real": {**metrics.accuracy(real.labels, y_test, label_names),
                         "inception_score": metrics.inception_score(real.probs)},
                **{name: metrics.judge_set(predictions[name], real, halves, label_names, args.seed, target,
                                           None if name == "generated" else halves.b)
                   for name, (_, target) in sets.items() if name != "real"},
            })
    mean, std = metrics.mean_and_std(per_seed)

    # copying, from code maps cached beside the judges
    with watch("copying"):
        train_maps, _ = copying.code_maps(vqvae, spec, args.data_root, device, check_cli.cache_dir(args))
        report_copying = copying.copying(result.codes, held_out_maps, train_maps)

    report = {
        "vqvae": str(args.vqvae),
        "prior": str(args.prior),
        "args": vars(args),
        "label_names": label_names,
        "classifier": {"hearing": asdict(hearing), "augment": asdict(aug), "config": asdict(config),
                       "train": asdict(classifier.TrainSettings(args.classifier_epochs, args.classifier_batch_size)),
                       "seeds": list(range(args.classifier_seed, args.classifier_seed + args.seeds)),
                       "parameters": sum(p.numel() for p in model.parameters()), "train_clips": len(train_waves),
                       "cached": cached},
        "mean": mean,
        "std": std,
        "per_seed": per_seed,
        "copying": report_copying,
        "seconds": watch.seconds,
    }
    reports.write_report(report, out)
    print_report(report)
    print(f"wrote {out}")
    return report


def print_report(report: dict[str, Any]) -> None:
    mean, std = report["mean"], report["std"]
    print(f"mean (std) over {len(report['per_seed'])} judges:")
    for name in mean:
        r, s = mean[name], std[name]
        per_class = " ".join(f"{k}:{v:.2f}" for k, v in r["per_class"].items())
        line = (f"{name:>26}: recognized {r['accuracy']:.3f} ({s['accuracy']:.3f}) (n={r['n']}; {per_class}) "
                f"score {r['inception_score']:.2f} ({s['inception_score']:.2f})")
        if "frechet" in r:
            fd, fs = r["frechet"], s["frechet"]
            line += f" Frechet {fd['ratio']:.2f} ({fs['ratio']:.2f}) x the real floor (m={fd['m']})"
        print(line)
    reports.print_copying(report["copying"])

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
