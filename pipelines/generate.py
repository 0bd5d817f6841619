r"""Generate images or sounds: sample code maps from the prior, decode them with the VQ-VAE; or complete real ones.

    python -m pipelines.generate --vqvae runs/mnist/vqvae.pt --prior runs/mnist-prior/prior.pt \
        --labels all --repeat 8 --seed 0 --out samples.png
    python -m pipelines.generate --pretrained list
    python -m pipelines.generate --pretrained NAME --labels all --seed 0 --out samples.png
    python -m pipelines.generate --vqvae runs/mnist/vqvae.pt --prior runs/mnist-prior/prior.pt \
        --complete digits/ --keep-rows 3 --repeat 6 --seed 0 --out completions.png

Writes a PNG grid of the images (or spectrograms); for an audio VQ-VAE also one WAV file per sample beside it.

``--complete FILE_OR_FOLDER`` completes real inputs instead: image files (PNG/JPEG) of the VQ-VAE's size, or
recordings (WAV/FLAC/OGG, read as its data set's were) for an audio VQ-VAE. The top ``--keep-rows`` rows of each
input's code map (for audio: the first frames) are kept, and the rest is sampled ``--repeat`` times from the prior,
conditioned on them and on the input's label. Labels: ``--labels`` (one per input in sorted path order, or one for
all), else from the file names by the data set's convention (audio: its label pattern; images: a parent folder
named after the class, as in an image folder). The PNG has one row per input: the input, the part kept, then the
completions; for audio, one WAV per completion beside it.

``--pretrained NAME`` takes a model shipped in the package in place of ``--vqvae`` and ``--prior``;
``--pretrained list`` lists them (:mod:`vqvae_prior.pretrained`).

Both are thin wrappers over :class:`vqvae_prior.VQPriorPipeline`, which loads and checks the checkpoints once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from pipelines import cli
from vqvae_prior import pretrained
from vqvae_prior.errors import UsageError, VQPriorError
from vqvae_prior.checks import finite_number, whole_number
from vqvae_prior.pipeline import CompletionOutput, PipelineOutput, VQPriorPipeline, check_samples, seeded
from vqvae_prior.sampling import METHODS

GenerateOutput = PipelineOutput  # what generate() returns (its name before the pipeline existed)


@torch.no_grad()
def generate(
    vqvae_checkpoint: str | Path | None,
    prior_checkpoint: str | Path,
    n: int,
    labels: list[int] | Tensor | None = None,
    temperature: float | Sequence[float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    method: str = "auto",
    guidance: float | Sequence[float] = 0.0,
) -> PipelineOutput:
    """Load both checkpoints, sample ``n`` code maps from the prior and decode them: a one-call
    :class:`VQPriorPipeline` (build one with ``VQPriorPipeline.from_checkpoints`` to sample repeatedly).

    Args:
        vqvae_checkpoint: written by ``pipelines.fit_vqvae``; None for a prior over pixels (``fit_prior --pixels``).
        prior_checkpoint: written by ``pipelines.fit_prior`` over that VQ-VAE's codes (or over pixels).
        n: number of samples.
        labels: (n,) class labels, required by a class-conditional prior and refused by an unconditional one.
        temperature: softmax temperature of the prior (finite, > 0; near 0: the most likely code everywhere); one
            number, or one per level of a two-level prior (top, bottom); None: the pipeline's
            ``default_temperature`` (0.7 and 0.6 for a two-level model of recordings, else 1).
        seed: seeds a ``torch.Generator`` for reproducible samples; None draws from torch's global generator.
        device: "cpu", "cuda", ...; None picks CUDA when available.
        method: "auto" (default: the cached sampler where the prior has one), "cached" or "reference" (one
                full forward pass per position).
        guidance: classifier-free guidance weight (>= 0; > 0 needs a prior fitted with ``--label-dropout``); one
            number, or one per level, as ``temperature``.

    Returns:
        a :class:`PipelineOutput`; ``.images`` is (n, C, H, W) in [0, 1].
    """
    n = whole_number(n, "n", 1)  # before loading anything
    if temperature is not None:
        finite_number(temperature, "temperature")
    device = cli.pick_device(None if device is None else str(device))
    pipe = VQPriorPipeline.from_checkpoints(vqvae_checkpoint, prior_checkpoint, device)
    return pipe(n, labels, temperature, seeded(seed, device), method, guidance)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--vqvae", help="checkpoint written by pipelines.fit_vqvae (none for a prior over pixels)")
    parser.add_argument("--prior", help="checkpoint written by pipelines.fit_prior")
    parser.add_argument("--pretrained", metavar="NAME",
                        help=f"a model shipped in the package, instead of --vqvae and --prior; '{pretrained.LIST}' "
                             f"lists them (${pretrained.ENV} names another folder of them)")
    parser.add_argument("--n", type=int, default=64, help="number of samples (without --labels); at most 2048 (1024 "
                        "with --guidance), as --labels x --repeat and inputs x --repeat")
    parser.add_argument("--labels", nargs="+",
                        help="class names, or class indices 0 .. K-1, or 'all' for every class; where class names "
                             "are numbers, numbers are names only (unless the names are 0 .. K-1 in order); with "
                             "--complete: the inputs' classes")
    parser.add_argument("--repeat", type=int, default=1,
                        help="samples per label given (with --labels); with --complete: completions per input")
    parser.add_argument("--complete", metavar="FILE_OR_FOLDER",
                        help="complete these images (or recordings, for an audio VQ-VAE) instead of sampling anew")
    parser.add_argument("--keep-rows", type=int, help="with --complete: code rows kept (audio: the first frames)")
    cli.add_sampling(parser, "> 0; near 0: the most likely code", "classifier-free guidance weight w >= 0: codes "
                     "drawn from l_c + w (l_c - l_u); > 0 needs a prior fitted with --label-dropout")
    parser.add_argument("--seed", type=int, help="of the samples (default: none, other samples at each run)")
    cli.add_device(parser)
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="sampler: auto (fused on CUDA, else cached, where the prior has them), fused, cached, "
                        "or reference")
    parser.add_argument("--out", default="samples.png", help="PNG grid; WAV files of audio go beside it")
    parser.add_argument("--nrow", type=int, help="images per row of the grid (default: --repeat, or 8)")
    return parser


def parse_labels(words: list[str] | None, label_names: list[str]) -> list[int] | None:
    """Command-line labels -> class indices: 'all', class names, or class indices.

    The rule is unambiguous: a word that is a class name means that class. A number that is not a class name is an
    index, unless some class names are numbers (classes '3' and '7': '1' would be '7' as an index), where it is
    refused; when the names are exactly '0' .. 'K-1' both readings agree.
    """
    if words is None:
        return None
    if words == ["all"]:
        return list(range(len(label_names)))
    numeric_names = any(name.lstrip("-").isdigit() for name in label_names)
    indices_are_names = label_names == [str(i) for i in range(len(label_names))]
    labels = []
    for word in words:
        if word in label_names:
            labels.append(label_names.index(word))
        elif word.lstrip("-").isdigit() and numeric_names and not indices_are_names:
            raise UsageError(f"--labels {word}: this data set's class names are numbers ({label_names}), so --labels "
                             f"takes those names, not indices; {word!r} is not one of them")
        elif word.lstrip("-").isdigit():
            if not 0 <= int(word) < len(label_names):
                raise UsageError(f"--labels {word}: class indices run from 0 to {len(label_names) - 1} "
                                 f"({label_names})")
            labels.append(int(word))
        else:
            raise UsageError(f"--labels: {word!r} is neither a class index nor one of {label_names}")
    return labels


def read_inputs(files: list[Path], pipe: VQPriorPipeline) -> Tensor:
    """The inputs of the files, as the pipeline's modality reads them: images (N, C, H, W) in [0, 1] of the
    VQ-VAE's size, or waveforms (N, T) of recordings."""
    return torch.stack([pipe.modality.read(f, pipe.sample_shape) for f in files])


def labels_from_names(files: list[Path], pipe: VQPriorPipeline) -> list[int]:
    """Each file's class by its data set's convention (the modality's: a recording's name, an image's folder)."""
    labels = []
    for f in files:
        name = pipe.modality.label_of(f)
        if name not in pipe.label_names:
            raise UsageError(f"--complete: {pipe.modality.where_label()} gives {f} no class of {pipe.label_names}; "
                             "pass --labels")
        labels.append(pipe.label_names.index(name))
    return labels


def complete_files(pipe: VQPriorPipeline, args: argparse.Namespace, out: Path) -> CompletionOutput:
    """``--complete``: read the inputs, complete them, write the PNG ``out`` (and WAVs beside it)."""
    if args.keep_rows is None:
        raise UsageError("--complete needs --keep-rows N, the code rows to keep")
    try:
        files = pipe.modality.files(Path(args.complete))
        check_samples(len(files) * args.repeat, f"--complete ({len(files)} inputs) x --repeat {args.repeat}",
                      args.guidance)
        inputs = read_inputs(files, pipe)
    except UsageError as e:
        raise UsageError(f"--complete: {e}") from None
    labels = parse_labels(args.labels, pipe.label_names)
    if labels is not None and len(labels) not in (1, len(files)):
        raise UsageError(f"--labels: give one label per input ({len(files)}) or one for all, got {len(labels)}")
    if labels is None and pipe.prior.config.num_classes:
        labels = labels_from_names(files, pipe)
    labels = labels * len(files) if labels is not None and len(labels) == 1 else labels
    result = pipe.complete(inputs, args.keep_rows, labels, args.repeat, args.temperature,
                           seeded(args.seed, pipe.device), args.method, args.guidance)
    rows = torch.cat([result.inputs[:, None], result.kept[:, None], result.images], dim=1)  # (N, 2 + S, C, H, W)
    pipe.modality.save_grid(rows.flatten(0, 1), out, rows.shape[1])
    print(f"wrote {len(files)} inputs, each with its kept part and {args.repeat} completions, to {out}")
    if result.waveforms is not None:
        paths = [out.with_name(f"{out.stem}_{i:03d}_{f.stem}_{j}.wav")
                 for i, f in enumerate(files) for j in range(result.waveforms.shape[1])]  # fmt: skip
        pipe.modality.write_outputs((result.waveforms.flatten(0, 1), result.sample_rate), paths)
        print(f"wrote {len(paths)} WAV files beside it")
    return result


def list_pretrained() -> dict[str, str]:
    """``--pretrained list``: print the pretrained models' names and summaries."""
    models = pretrained.available()
    for name, line in models.items():
        print(f"{name}: {line}")
    if not models:
        print(f"no pretrained models in {pretrained.folder()}; python -m pipelines.package_model adds one")
    return models


def load_pipeline(args: argparse.Namespace, device: torch.device) -> VQPriorPipeline:
    """The pipeline of ``--pretrained`` or of ``--vqvae`` and ``--prior``."""
    if args.pretrained is None:
        return VQPriorPipeline.from_checkpoints(args.vqvae, args.prior, device)
    try:
        return VQPriorPipeline.from_pretrained(args.pretrained, device)
    except VQPriorError as e:
        raise type(e)(f"--pretrained {args.pretrained}: {e}") from None


def main(args: argparse.Namespace) -> PipelineOutput | CompletionOutput | dict[str, str]:
    if args.pretrained is not None and (args.vqvae is not None or args.prior is not None):
        raise UsageError(f"--pretrained {args.pretrained} takes the place of --vqvae and --prior: give one or the "
                         "other")
    if args.pretrained is None and args.prior is None:
        raise UsageError(f"give --pretrained NAME (--pretrained {pretrained.LIST} lists them), or --prior (and "
                         "--vqvae) checkpoints")
    if args.pretrained == pretrained.LIST:
        return list_pretrained()
    cli.at_least(args, 1, "n", "repeat", "nrow")
    cli.at_least(args, 0, "keep_rows")
    cli.sampling_settings(args)
    if args.complete is None and args.keep_rows is not None:
        raise UsageError("--keep-rows N goes with --complete FILE_OR_FOLDER")
    if args.complete is None and args.repeat != 1 and args.labels is None:
        raise UsageError("--repeat gives the samples per label of --labels; without --labels, ask for --n samples")
    if args.complete is None and args.labels is None:
        check_samples(args.n, f"--n {args.n}", args.guidance)  # before loading anything
    check_samples(args.repeat, f"--repeat {args.repeat}", args.guidance)
    out = cli.check_image_path(args.out)
    device = cli.pick_device(args.device)
    pipe = load_pipeline(args, device)
    args.temperature = pipe.temperature_or_default(args.temperature, "--temperature")
    args.guidance = pipe.per_level(args.guidance, "--guidance")
    if args.complete is not None:
        return complete_files(pipe, args, out)
    conditional = bool(pipe.prior.config.num_classes)
    if conditional != (args.labels is not None):
        prior = args.prior or f"--pretrained {args.pretrained}"
        raise UsageError(f"{prior} is class-conditional: pass --labels (class names, indices or all)"
                         if conditional else f"{prior} is unconditional: leave out --labels")
    labels = parse_labels(args.labels, pipe.label_names)
    if labels is not None:  # checked before the list of labels is made: it could hold billions
        check_samples(len(labels) * args.repeat, f"--labels ({len(labels)}) x --repeat {args.repeat}", args.guidance)
        labels = [label for label in labels for _ in range(args.repeat)]
    n = len(labels) if labels is not None else args.n
    result = pipe(n, labels, args.temperature, seeded(args.seed, device), args.method, args.guidance)
    nrow = args.nrow or (args.repeat if labels is not None and args.repeat > 1 else 8)
    pipe.modality.save_grid(result.images, out, nrow)
    print(f"wrote {n} samples to {out}")
    if result.waveforms is not None:
        names = [result.label_names[int(y)] for y in result.labels] if result.labels is not None else ["x"] * n
        paths = [out.with_name(f"{out.stem}_{i:03d}_{name}.wav") for i, name in enumerate(names)]
        pipe.modality.write_outputs((result.waveforms, result.sample_rate), paths)
        print(f"wrote {n} WAV files beside it")
    return result

console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
