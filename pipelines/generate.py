"""Generate images or sounds: sample code maps from the prior, decode them with the VQ-VAE.

    python -m pipelines.generate --vqvae runs/mnist/vqvae.pt --prior runs/mnist-prior/prior.pt \
        --labels all --repeat 8 --seed 0 --out samples.png

Writes a PNG grid of the images (or spectrograms); for an audio VQ-VAE also one WAV file per sample beside it.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import Tensor

from pipelines import cli, common, run_folder
from vqvae_prior.checkpoint import CheckpointError, load_prior, load_vqvae, require, weights_digest
from vqvae_prior.errors import UsageError


@dataclass
class GenerateOutput:
    """What :func:`generate` returns.

    Attributes:
        images: (N, C, H, W) in [0, 1]: the decoded images, or the decoded spectrograms of an audio model,
            (N, 1, n_frames, F) with time down the rows (``vqvae_prior.audio.picture`` draws them the usual way).
        codes: (N, h, w) the sampled code maps.
        labels: (N,) the class labels sampled with, or None.
        label_names: the data set's class names.
        waveforms: (N, T) float32 waveforms of an audio model (Griffin-Lim), else None.
        sample_rate: their sample rate, else None.
    """

    images: Tensor
    codes: Tensor
    labels: Tensor | None
    label_names: list[str]
    waveforms: Tensor | None = None
    sample_rate: int | None = None


@torch.no_grad()
def generate(
    vqvae_checkpoint: str | Path,
    prior_checkpoint: str | Path,
    n: int,
    labels: list[int] | Tensor | None = None,
    temperature: float = 1.0,
    seed: int | None = None,
    device: str | torch.device | None = None,
    method: str = "cached",
) -> GenerateOutput:
    """Sample ``n`` code maps from the prior and decode them.

    Args:
        vqvae_checkpoint: written by ``pipelines.fit_vqvae``.
        prior_checkpoint: written by ``pipelines.fit_prior`` over that VQ-VAE's codes.
        n: number of samples.
        labels: (n,) class labels, required by a class-conditional prior and refused by an unconditional one.
        temperature: softmax temperature of the prior (finite, > 0; near 0: the most likely code everywhere).
        seed: seeds a ``torch.Generator`` for reproducible samples; None draws from torch's global generator.
        device: "cpu", "cuda", ...; None picks CUDA when available.
        method: "cached" sampler (default) or "reference" (one full forward pass per position).

    Returns:
        a :class:`GenerateOutput`; ``.images`` is (n, C, H, W) in [0, 1].
    """
    if n < 1:
        raise UsageError(f"n must be >= 1, got {n}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"temperature must be a finite number > 0, got {temperature}")
    device = common.pick_device(None if device is None else str(device))
    vqvae, vq_ckpt = load_vqvae(vqvae_checkpoint, device)
    prior, prior_ckpt = load_prior(prior_checkpoint, device)
    require(vq_ckpt, vqvae_checkpoint, "data")
    require(prior_ckpt, prior_checkpoint, "code_shape", "label_names", "vqvae", "vqvae_digest")
    if prior.config.codebook_size != vqvae.config.codebook_size:
        raise CheckpointError(
            f"{prior_checkpoint} models K={prior.config.codebook_size} codes but {vqvae_checkpoint} has a codebook "
            f"of K={vqvae.config.codebook_size}: fit the prior on this VQ-VAE's codes (pipelines.fit_prior)"
        )
    if prior_ckpt["vqvae_digest"] != weights_digest(vqvae.state_dict()):
        raise CheckpointError(
            f"{prior_checkpoint} was fitted on the codes of other VQ-VAE weights than those in {vqvae_checkpoint} "
            f"(it names {prior_ckpt['vqvae']}); its samples would decode to noise"
        )
    label_tensor = prior.check_labels(labels, n)
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None
    codes = prior.sample(n, tuple(prior_ckpt["code_shape"]), label_tensor, temperature, generator, method=method)
    images = vqvae.decode_indices(codes).clamp(0, 1).cpu()  # (n, C, H, W)
    output = GenerateOutput(images, codes.cpu(), None if label_tensor is None else label_tensor.cpu(),
                            list(prior_ckpt["label_names"]))
    data_spec = vq_ckpt["data"]
    if "spectrogram" in data_spec:  # an audio model: spectrograms -> waveforms by Griffin-Lim
        from vqvae_prior.audio import SpectrogramConfig, invert

        cfg = SpectrogramConfig(**data_spec["spectrogram"])
        waves = [invert(spec[0].numpy(), cfg) for spec in images]  # each (T_samples,) from (n_frames, F)
        output.waveforms = torch.from_numpy(np.stack(waves)).float()  # (n, T)
        output.sample_rate = cfg.sample_rate
    return output


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, help="checkpoint written by pipelines.fit_vqvae")
    parser.add_argument("--prior", required=True, help="checkpoint written by pipelines.fit_prior")
    parser.add_argument("--n", type=int, default=64, help="number of samples (without --labels)")
    parser.add_argument("--labels", nargs="+",
                        help="class names, or class indices 0 .. K-1, or 'all' for every class; where class names "
                             "are numbers, numbers are names only (unless the names are 0 .. K-1 in order)")
    parser.add_argument("--repeat", type=int, default=1, help="samples per label given (with --labels)")
    parser.add_argument("--temperature", type=float, default=1.0, help="> 0; near 0: the most likely code")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--method", choices=("cached", "reference"), default="cached")
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


def main(args: argparse.Namespace) -> GenerateOutput:
    cli.at_least(args, 1, "n", "repeat", "nrow")
    cli.positive(args, "temperature")
    if args.repeat != 1 and args.labels is None:
        raise UsageError("--repeat gives the samples per label of --labels; without --labels, ask for --n samples")
    out = run_folder.check_image_path(args.out)
    _, prior_ckpt = load_prior(args.prior)
    require(prior_ckpt, args.prior, "label_names")
    conditional = bool(prior_ckpt["config"].get("num_classes"))
    if conditional != (args.labels is not None):
        raise UsageError(f"{args.prior} is class-conditional: pass --labels (class names, indices or all)"
                         if conditional else f"{args.prior} is unconditional: leave out --labels")
    labels = parse_labels(args.labels, list(prior_ckpt["label_names"]))
    if labels is not None:
        labels = [label for label in labels for _ in range(args.repeat)]
    n = len(labels) if labels is not None else args.n
    result = generate(args.vqvae, args.prior, n, labels, args.temperature, args.seed, args.device, args.method)
    nrow = args.nrow or (args.repeat if labels is not None and args.repeat > 1 else 8)
    common.save_grid(result.images, out, nrow, spectrograms=result.waveforms is not None)
    print(f"wrote {n} samples to {out}")
    if result.waveforms is not None:
        for i, wave in enumerate(result.waveforms):
            name = result.label_names[int(result.labels[i])] if result.labels is not None else "x"
            soundfile.write(out.with_name(f"{out.stem}_{i:03d}_{name}.wav"), wave.numpy(), result.sample_rate)
        print(f"wrote {n} WAV files beside it")
    return result


if __name__ == "__main__":
    cli.run(main, get_args_parser())
