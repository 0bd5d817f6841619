r"""Intelligibility check of generated audio: do classifiers trained on the real recordings, listening with their own
ears, recognize the class asked for, and how far are the generated clips from real ones?

    python -m pipelines.audio_check --vqvae runs/fsdd/vqvae.pt --prior runs/fsdd-prior/prior.pt \
        --out runs/fsdd-check.json

1. **The judges**, in families that hear differently (``--families``, by default both; figures per family):
   ``--seeds`` small CNNs a family (:class:`vqvae_prior.evaluation.classifier.ConvClassifier`, seeds
   ``--classifier-seed``, +1, ...) trained on the real train recordings of the VQ-VAE's data set (the files named in
   its data spec, ``--data-root`` reads them from another folder), read as waveforms, not through the VQ-VAE's
   spectrograms. Each family hears a clip (1 s at 8 kHz) through its own front end
   (:mod:`vqvae_prior.evaluation.audio_judges`), with settings independent of the model's (FSDD's VQ-VAE:
   254-sample FFTs every 64 samples, 64 mel bands of log magnitude, 0.632 s), standardized by the train clips:

   - ``log-mel``: 512-sample FFTs every 128 samples, 40 mel bands of log power floored at -100 dB; trained with a
     random time shift (up to 0.1 s), gain (up to 6 dB), speed (up to 8% faster or slower, pitch with it), then one
     time mask (up to 8 frames) and one frequency mask (up to 6 bands).
   - ``mfcc``: 256-sample FFTs every 80 samples (10 ms), 20 cepstral coefficients of 40 log mel bands with their
     deltas and delta-deltas as three channels; the same shift, gain and speed, and no masks. Masked judges learn to
     do without a band of frames or of frequencies, some of what a VQ-VAE's reconstruction blurs: on FSDD (a VQ-VAE
     fitted for 6 epochs, three judges of each kind, measured once) the masks raise the share of its reconstructions
     recognized by about a point (log-mel 95.5% -> 96.7%, mfcc 95.7% -> 96.4%, higher for every seed), while the
     real clips, as they are or through Griffin-Lim, are recognized alike (about 99% either way).

   Each judge is cached in ``--cache-dir`` under a digest of the train waveforms, its family and every setting.
2. **What they judge**: the real held-out clips three ways, as they are (``real``: the judges' own accuracy),
   through the VQ-VAE's spectrogram and Griffin-Lim (``real_griffin_lim``: what the representation and inversion
   cost) and through the VQ-VAE's reconstruction and Griffin-Lim (``reconstructed_griffin_lim``: what the codes
   cost on top, the ceiling of the prior); and ``--per-class`` clips of every class from the class-conditional
   prior (``generated``, at ``--temperature`` and ``--guidance``, Griffin-Lim waveforms as ``generate`` writes them).
   With ``--given-top`` (a two-level prior), also each held-out clip's own top code map, as the VQ-VAE encodes it,
   with a bottom map sampled by the prior given it and the clip's class (``generated_given_top``, one a clip, at the
   bottom level's temperature and guidance): beside ``generated`` and ``reconstructed_griffin_lim``, it splits what
   the samples lose between the two levels' priors.
3. **Figures** of each set (:mod:`vqvae_prior.evaluation.metrics`): the fraction recognized as the class asked for,
   overall and per class, with the confusion matrix (rows: class asked for, columns: class recognized); the
   inception-style score; and, for all but ``real``, the Frechet distance of the judge's penultimate features to real
   held-out half A beside the real-vs-real floor FD(B, A) at the same set size m = min(n, N_held_out // 2), and their
   ratio (the Griffin-Lim sets judged by their clips of half B, so none is paired with a clip of A). Every figure is
   given per family (``families``: its ``classifier`` settings, and the figures for each judge, ``per_seed``, and
   as the ``mean`` and ``std`` (population) over its judges). The headline, ``recognized``, is set by set the
   lowest family mean (:func:`vqvae_prior.evaluation.metrics.lowest_mean`), with its ``std``, the ``family`` that
   gave it and every family's mean: what judges that hear differently all grant.
4. **Copying**: the distance from each generated code map to its nearest train code map (the fraction of
   positions whose codes differ), beside the same for real held-out code maps, and the number of exact copies.

The JSON report goes to ``--out``, with the seconds each part took. Seeded: the same arguments give the same report
on the same machine. Cost on FSDD with the defaults, in CPU time on this project's machine (measured once, under
load): each judge trains in about 1 to 2 minutes (an ``mfcc`` one about 1.5 times as long as a ``log-mel`` one; the
first ``log-mel`` judge, seed 0, recognizes 99.2% of the 250 real held-out clips, the first ``mfcc`` one 99.6%),
once, then comes from the cache; the 1,000 Griffin-Lim inversions (250 + 250 held-out clips, 500 generated) take
about 5 minutes, as in the earlier check; the rest is seconds.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor

import data
from pipelines import check_cli, cli
from vqvae_prior.audio import Spectrograms, invert
from vqvae_prior.checkpoint import weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation import audio_judges, classifier, copying, metrics, reports
from vqvae_prior.pipeline import VQPriorPipeline, check_samples, seeded
from vqvae_prior.training import batching

def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    group = check_cli.add_check_args(parser, Spectrograms, epochs=20, batch_size=64,
                                     epochs_help="epochs of each judge (20)")
    group.add_argument("--seeds", type=int, default=3,
                       help="judges of each family, each trained with its own seed; figures averaged")
    group.add_argument("--families", nargs="+", default=list(audio_judges.FAMILIES), metavar="FAMILY",
                       help=f"the families of judges, each hearing through its own front end: "
                            f"{', '.join(audio_judges.FAMILIES)}")
    parser.add_argument("--per-class", type=int, default=50,
                        help="generated clips per class (50: a per-class accuracy within about +-7 points)")
    parser.add_argument("--given-top", action="store_true",
                        help="also judge bottom codes sampled on each held-out clip's own top codes (a two-level "
                             "prior): what the bottom level's prior alone costs")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the check; returns the report (also written to ``args.out``)."""
    watch = reports.Stopwatch()
    # every refusal before any long work
    out = check_cli.check_shared_args(args)
    cli.at_least(args, 1, "per_class", "seeds")
    families = pick_families(args.families)
    pipe = check_cli.load_pipeline(args, Spectrograms)  # refuses an out-of-date audio checkpoint too
    vqvae, spec, device = pipe.vqvae, pipe.data_spec, pipe.device
    if not pipe.prior.config.num_classes:
        raise UsageError(f"--prior {args.prior} is unconditional: fit it without --unconditional to ask for classes")
    if args.given_top and getattr(pipe.prior, "levels", 1) != 2:
        raise UsageError(f"--given-top: --prior {args.prior} models one level of codes; the option samples a "
                         "two-level prior's bottom codes given real top codes")
    cfg = pipe.modality.config

    check_samples(args.per_class * pipe.prior.config.num_classes,
                  f"--per-class {args.per_class} x {pipe.prior.config.num_classes} classes", args.guidance)
    with watch("data"):
        splits = batching.load_splits(spec, args.data_root, pipe.sample_shape)
        label_names = list(splits.label_names)
        halves = metrics.RealHalves.draw(len(splits.test.labels), args.per_class * len(label_names), args.seed)

    # the sets to judge, as waveforms at their own rate: real held-out clips through Griffin-Lim two ways (the clips
    # as they are are read by each family), and generated clips of every class
    with watch("griffin_lim"):
        x_test = splits.test.images  # (N, 1, n_frames, F) the VQ-VAE's spectrograms
        with torch.no_grad():
            outputs = [vqvae(xb.to(device)) for xb in x_test.split(256)]
        recon = torch.cat([out.reconstruction.clamp(0, 1).cpu() for out in outputs])  # (N, 1, n_frames, F)
        held_out_maps = torch.cat([out.indices.cpu() for out in outputs])  # (N, h, w)
        through = {name: (np.stack([invert(s[0].numpy(), cfg) for s in specs]), cfg.sample_rate, splits.test.labels)
                   for name, specs in (("real_griffin_lim", x_test), ("reconstructed_griffin_lim", recon))}
    with watch("generate"):
        asked = torch.arange(len(label_names)).repeat_interleave(args.per_class)  # (n,)
        result = pipe(len(asked), asked, args.temperature, seeded(args.seed, device), guidance=args.guidance)
        waves = {**through, "generated": (result.waveforms, result.sample_rate, asked)}  # name -> (N, T), rate, (N,)
        if args.given_top:
            labels = splits.test.labels  # (N,)
            top = torch.cat([out.level_indices[0] for out in outputs])  # (N, h/2, w/2), as the VQ-VAE encodes them
            codes = bottoms_given_top(pipe, top, labels, args.temperature, args.guidance, seeded(args.seed, device))
            waves["generated_given_top"] = (*pipe.modality.outputs(pipe.decode(codes)), labels)

    by_family = {family.name: judge_family(family, args, splits, waves, halves, watch, device) for family in families}

    # copying, from code maps cached beside the judges
    with watch("copying"):
        train_maps, _ = copying.code_maps(vqvae, spec, args.data_root, device, check_cli.cache_dir(args))
        report_copying = copying.copying(result.codes, held_out_maps, train_maps)

    report = {
        "vqvae": str(args.vqvae),
        "prior": str(args.prior),
        "digests": check_cli.digests(pipe),
        "args": vars(args),
        "label_names": label_names,
        "recognized": metrics.lowest_mean(by_family),
        "families": by_family,
        "copying": report_copying,
        "seconds": watch.seconds,
    }
    reports.write_report(report, out)
    print_report(report)
    print(f"wrote {out}")
    return report


@torch.no_grad()
def bottoms_given_top(
    pipe: VQPriorPipeline, top: Tensor, labels: Tensor, temperature: Any, guidance: Any, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The top code maps ``top`` (N, h/2, w/2), kept, and bottom maps (N, h, w) sampled by the two-level prior given
    them and ``labels`` (N,), at the bottom level's ``temperature`` and ``guidance`` (each one number, or one per
    level)."""
    top = top.to(pipe.device)
    bottom = torch.full((len(top), *pipe.code_shape), -1, dtype=top.dtype, device=top.device)  # (N, h, w): sampled
    return pipe.sample_codes(len(top), labels.to(pipe.device), temperature, generator, (top, bottom), "auto", guidance)


def pick_families(names: list[str]) -> list[audio_judges.Family]:
    """The families of ``--families``; an unknown or repeated name is refused."""
    for name in names:
        if name not in audio_judges.FAMILIES:
            raise UsageError(f"--families {name}: unknown; the families are {', '.join(audio_judges.FAMILIES)}")
        if names.count(name) > 1:
            raise UsageError(f"--families {name}: given twice")
    return [audio_judges.FAMILIES[name] for name in names]


def judge_family(
    family: audio_judges.Family, args: argparse.Namespace, splits: data.DatasetSplits,
    waves: dict[str, tuple[np.ndarray | Tensor, int, Tensor]], halves: metrics.RealHalves, watch: reports.Stopwatch,
    device: torch.device,
) -> dict[str, Any]:
    """``--seeds`` judges of one family, trained on the real train clips (or from the cache), and the figures of every
    set they judge: the real held-out clips as the family reads them, and ``waves`` (a set's name -> its waveforms
    (N, T), their sample rate and the classes asked for (N,)). Returns ``{"classifier": what defines the judges,
    "mean": ..., "std": ..., "per_seed": [...]}``."""
    hearing, label_names = family.hearing, list(splits.label_names)
    with watch("data"):
        train_waves, y_train = audio_judges.read_clips(splits.train.paths, hearing), splits.train.labels  # (N, T), (N,)
        y_test = splits.test.labels
        heard = {name: (audio_judges.to_hearing(w, rate, hearing), target) for name, (w, rate, target) in waves.items()}
        sets = {"real": (audio_judges.read_clips(splits.test.paths, hearing), y_test), **heard}
        front = family.front(hearing).fit(train_waves).to(device)
    config = classifier.ClassifierConfig(family.front.channels, len(label_names), args.classifier_channels)
    data_digest = weights_digest([train_waves, y_train])
    seeds = list(range(args.classifier_seed, args.classifier_seed + args.seeds))
    per_seed, cached = [], []
    for seed in seeds:
        settings = classifier.TrainSettings(args.classifier_epochs, args.classifier_batch_size, seed=seed)
        with watch("classifiers"):
            model, hit = classifier.cached_classifier(
                check_cli.cache_dir(args), audio_judges.judge_key(family, data_digest, label_names, config, settings),
                lambda: classifier.ConvClassifier(config),
                lambda: audio_judges.train_judge(train_waves, y_train, front, config, settings, family.augment, device),
                device,
            )
        cached.append(hit)
        print(f"{family.name} judge {seed}: " + ("from the cache" if hit else f"{settings.epochs} epochs on "
              f"{len(train_waves)} real train clips") + f" ({watch.seconds['classifiers']:.0f} s so far)")
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
    train = classifier.TrainSettings(args.classifier_epochs, args.classifier_batch_size)
    return {
        "classifier": {**family.settings(), "config": asdict(config), "train": asdict(train), "seeds": seeds,
                       "parameters": sum(p.numel() for p in model.parameters()), "train_clips": len(train_waves),
                       "cached": cached},
        "mean": mean,
        "std": std,
        "per_seed": per_seed,
    }


def print_report(report: dict[str, Any]) -> None:
    for name, family in report["families"].items():
        mean, std = family["mean"], family["std"]
        print(f"{name} judges, mean (std) over {len(family['per_seed'])}:")
        for set_name in mean:
            r, s = mean[set_name], std[set_name]
            per_class = " ".join(f"{k}:{v:.2f}" for k, v in r["per_class"].items())
            line = (f"{set_name:>26}: recognized {r['accuracy']:.3f} ({s['accuracy']:.3f}) (n={r['n']}; {per_class}) "
                    f"score {r['inception_score']:.2f} ({s['inception_score']:.2f})")
            if "frechet" in r:
                fd, fs = r["frechet"], s["frechet"]
                line += f" Frechet {fd['ratio']:.2f} ({fs['ratio']:.2f}) x the real floor (m={fd['m']})"
            print(line)
    print("recognized, the lowest family mean:")
    for set_name, r in report["recognized"].items():
        others = ", ".join(f"{k} {v:.3f}" for k, v in r["by_family"].items())
        print(f"{set_name:>26}: {r['accuracy']:.3f} ({r['std']:.3f}) by {r['family']} ({others})")
    reports.print_copying(report["copying"])

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
