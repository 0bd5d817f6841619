"""Fitting a prior over the code maps of a fitted VQ-VAE, or over the pixels of images: its options, its task for
the fit loop, and the fit.

    from vqvae_prior.training import PriorFit, fit_prior

    fit_prior(PriorFit(out="runs/mnist-prior", vqvae="runs/mnist/vqvae.pt", epochs=12))

The data set is the one the VQ-VAE was fitted on (recorded in its checkpoint; ``data_root`` reads it from another
folder), encoded once by the frozen VQ-VAE (:mod:`vqvae_prior.training.codes`: the cache, ``shifts`` and
``jitter``). Pixels (``pixels=LEVELS``, no VQ-VAE): each pixel of an image is a code with LEVELS values, as in the
PixelCNN papers (:mod:`vqvae_prior.pixels`: 2 levels are binarized images, drawn once with a fixed seed); the
held-out likelihood is then also reported as the papers report it: bits per dimension (``test_bits_per_dim``) and,
for 2 levels, nats per image (``test_nats_per_image``). The prior is class-conditional when the data set has labels,
unless ``unconditional``. The codes of a two-level VQ-VAE are modelled by a prior of two levels
(:class:`vqvae_prior.hierarchy.HierarchicalPrior`: the top maps, and the bottom maps given them), fitted as one
model (the bottom level's network may be sized apart: ``bottom_layers``, ``bottom_channels``); the held-out bits per code are then also reported per
level (``test_top_bits_per_code``, ``test_bottom_bits_per_code``).

Per epoch: train and held-out bits per code (``metrics.jsonl``), a grid of decoded samples (``samples.png``, one
row per class), ``prior.pt``, the epoch with the lowest held-out bits per code so far (what ``generate`` reads), and
``prior-last.pt``, the last epoch with the training state that ``resume`` continues; both hold the config, K, the
label names and the digest of the VQ-VAE weights the prior was fitted on (:mod:`vqvae_prior.training.run_folder`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import data
from vqvae_prior.checkpoint import load_checkpoint, load_vqvae, require
from vqvae_prior.errors import UsageError
from vqvae_prior.hierarchy import HierarchicalPrior, HierarchicalPriorConfig, as_levels
from vqvae_prior.modality import Images, Modality
from vqvae_prior.pixels import BINARIZE_SEED, PixelCodec, PixelConfig, binarize
from vqvae_prior.prior import AutoregressivePrior, PriorConfig
from vqvae_prior.registry import (ARCHITECTURES, autoencoder_architecture, modality_of_spec, prior_architecture,
                                  prior_class)
from vqvae_prior.training.batching import as_tensors, batches
from vqvae_prior.training.codes import draw_shifts, encode_splits, offsets
from vqvae_prior.training.distributed import Distributed, fit_folder
from vqvae_prior.training.loop import fit_in_folder
from vqvae_prior.training.options import FitOptions, at_least, build_config, option, with_defaults
from vqvae_prior.training.resume import FREE_ON_RESUME, check_options

__all__ = ["PriorFit", "PriorTask", "fit_prior"]

_DEFAULT = PriorConfig(codebook_size=2)
# options a resumed fit may change: they do not change what is computed
FREE = FREE_ON_RESUME | {"vqvae", "cache_dir", "samples_per_class"}
# what a checkpoint written before shifts, jitter, arch or ema existed was fitted with
LEGACY = {"shifts": 1, "jitter": 0, "arch": "gated", "bottom_layers": None, "bottom_channels": None, "ema": 0.0}


@dataclass(frozen=True)
class PriorFit(FitOptions):
    """The options of a prior's fit; those left None take the defaults of the data's modality."""

    vqvae: str | None = option(None, "checkpoint written by pipelines.fit_vqvae: model its code maps")
    pixels: int | None = option(None, "no VQ-VAE: model the pixels of --dataset, each a code with LEVELS values "
                                "(2: binarized)", metavar="LEVELS")
    dataset: str | None = option(None, "--pixels: the image data set", choices=data.DATASETS)
    data_root: str | None = option(None, "the data set's folder (--vqvae: read its data set from there instead)")
    out: str = option("runs/prior", "output folder")
    cache_dir: str | None = option(None, "folder of the cached code maps, to share them between fits (None: --out)")
    arch: str = option("gated", "gated PixelCNN (vertical and horizontal stacks, no blind spot) or the plain masked "
                       "PixelCNN of the first paper (blind spot; reference sampler only)", choices=tuple(ARCHITECTURES))
    layers: int = option(_DEFAULT.num_layers, "layers, the first of mask type A (gated layers, or plain residual "
                         "blocks after it)")
    channels: int | None = option(None, "channels between layers (None: the architecture's, gated 64, plain 128)")
    head_channels: int = option(_DEFAULT.head_channels, "hidden channels of the output head")
    bottom_layers: int | None = option(None, "two-level codes: layers of the bottom level's network (None: "
                                       "--layers)")
    bottom_channels: int | None = option(None, "two-level codes: channels of the bottom level's network (None: "
                                         "--channels)")
    dropout: float | None = option(None, "in every gated layer, training only")
    label_dropout: float | None = option(None, "replace each training label by a null class at this rate, so the "
                                         "prior also learns the unconditional model that classifier-free guidance "
                                         "(generate --guidance) needs; 0 with --unconditional")
    shifts: int | None = option(None, "train on each input moved down by 0 .. S-1 rows, one draw per epoch; 1: as it "
                                "is")
    jitter: int | None = option(None, "train on each image moved by up to P pixels in each direction, one of the "
                                "(2P+1)^2 translations drawn per epoch; 0: as it is")
    ema: float | None = option(None, "decay of a moving average of the weights, updated every step (Polyak "
                               "averaging): the held-out figures, samples and checkpoints are the average's; 0: "
                               "the weights as trained")
    unconditional: bool = option(False, "ignore the class labels")
    samples_per_class: int = option(8, "samples per class in samples.png, drawn after every epoch; 0: none (the "
                                    "plain prior's reference sampler runs the network once per position: slow on "
                                    "large maps)")

    def resolved(self) -> tuple[PriorFit, int]:
        """The options with the defaults of the modality of the data filled in, checked before any work; and K,
        the codes the prior models."""
        return self.resolved_for(*self.source())

    def resolved_for(self, modality: type[Modality] | Modality, codebook_size: int,
                     levels: int) -> tuple[PriorFit, int]:
        """:meth:`resolved` for codes of ``modality`` with ``codebook_size`` values and ``levels`` levels."""
        options = self
        if options.unconditional and options.label_dropout is None:  # no labels to drop
            options = dataclasses.replace(options, label_dropout=0.0)
        options = with_defaults(options, modality.prior_defaults, levels)
        if options.channels is None:  # the architecture's own default
            options = dataclasses.replace(options, channels=self.config_class().channels)
        options.check(codebook_size, levels)
        return options, codebook_size

    def source(self) -> tuple[type[Modality] | Modality, int, int]:
        """The modality of the code maps to model, their K and their levels: a VQ-VAE's (``vqvae``) or pixels'
        (``pixels``, one level); refuses, before any work, options that name neither or both."""
        if (self.vqvae is None) == (self.pixels is None):
            raise UsageError("pass --vqvae CHECKPOINT (model the code maps of a VQ-VAE) or --pixels LEVELS with "
                             "--dataset (model the pixels of images), one of them")
        if self.vqvae is not None:
            if self.dataset is not None:
                raise UsageError(f"--dataset goes with --pixels; the VQ-VAE {self.vqvae} was fitted on the data set "
                                 "its checkpoint names (--data-root reads it from another folder)")
            vq_ckpt = load_checkpoint(self.vqvae, "vqvae")
            require(vq_ckpt, self.vqvae, "data")
            levels = autoencoder_architecture(vq_ckpt["arch"]).model.levels
            return modality_of_spec(vq_ckpt["data"]), vq_ckpt["config"]["codebook_size"], levels
        if self.dataset is None:
            raise UsageError("--pixels needs --dataset, an image data set (e.g. --dataset mnist --data-root "
                             "../shared/data/mnist)")
        modality = data.modality_of(self.dataset)
        if not issubclass(modality, Images):
            raise UsageError(f"--pixels models images; --dataset {self.dataset} holds {modality.noun}s")
        if not 2 <= self.pixels <= 256:
            raise UsageError(f"--pixels must be a number of levels in 2 .. 256, got {self.pixels}")
        return modality, self.pixels, 1

    def check(self, codebook_size: int = 2, levels: int = 1) -> None:
        super().check()
        at_least(self, 1, "layers", "channels", "head_channels", "bottom_layers", "bottom_channels")
        at_least(self, 0, "samples_per_class")
        if not 0 <= self.ema < 1:
            raise UsageError(f"--ema must be a decay in [0, 1) (0: no average), got {self.ema}")
        if self.unconditional and self.label_dropout:
            raise UsageError("--label-dropout trains the unconditional model beside the class-conditional one: "
                             "it does not go with --unconditional")
        offsets(self.shifts, self.jitter)
        if self.pixels is not None and (self.shifts > 1 or self.jitter > 0):
            raise UsageError("--shifts and --jitter augment the encodings of a VQ-VAE; with --pixels the "
                             "likelihood is of the images as they are: leave them out")
        self.model_config(codebook_size, num_classes=0, levels=levels)

    def config_class(self) -> type:
        return prior_architecture(ARCHITECTURES[self.arch]).config

    def model_config(self, codebook_size: int, num_classes: int, image_channels: int = 1, levels: int = 1) -> Any:
        """The config of the prior that ``arch`` names (a clear error for a bad value); of codes of two levels, the
        config of a two-level prior: the top level with that network, the bottom one with ``bottom_layers`` and
        ``bottom_channels`` where given."""
        if levels > 1 and self.arch != "gated":
            raise UsageError(f"--vqvae {self.vqvae} has {levels} levels of codes, which only --arch gated models (its "
                             "bottom level conditioned on the top one)")
        bottom = {name: value for name, value in (("num_layers", self.bottom_layers),
                                                   ("channels", self.bottom_channels)) if value is not None}
        if levels == 1 and bottom:
            raise UsageError("--bottom-layers and --bottom-channels size the bottom level of two-level codes; "
                             f"{'--vqvae ' + str(self.vqvae) if self.vqvae else '--pixels'} has one level")
        config = build_config(
            self.config_class(),
            **({"image_channels": image_channels} if image_channels > 1 else {}),
            codebook_size=codebook_size,
            num_classes=0 if self.unconditional else num_classes,
            channels=self.channels,
            num_layers=self.layers,
            head_channels=self.head_channels,
            dropout=self.dropout,
            label_dropout=self.label_dropout,
        )
        return config if levels == 1 else HierarchicalPriorConfig.of(config, **bottom)


class PriorTask:
    """A prior and the code maps it is fitted on, for :func:`vqvae_prior.training.loop.train`."""

    train_method = "nll"

    def __init__(self, options: PriorFit, dist: Distributed, device: torch.device) -> None:
        self.options, self.device = options, device
        cache_dir = Path(options.cache_dir if options.cache_dir is not None else options.out)
        if options.vqvae is not None:  # rank 0 encodes and writes the code cache, then the others read it
            if not dist.is_main:
                dist.barrier()
            self.source = vqvae_source(options, cache_dir, device)
            if dist.is_main:
                dist.barrier()
        else:
            self.source = pixel_source(options)
        codes = self.source.codes
        self.train_codes, self.train_labels = codes["train"]  # (S, N, h, w), (N,)
        self.test_codes, self.test_labels = codes["test"]  # (N, h, w), (N,); of two levels, a tuple of them
        self.shape = tuple(as_levels(self.test_codes)[-1].shape[1:])  # the finest level's
        levels = len(as_levels(self.test_codes))
        decoder = self.source.decoder.config
        config = options.model_config(decoder.codebook_size, len(codes["label_names"]),
                                      decoder.in_channels if options.pixels is not None else 1, levels)
        self.model = prior_class(config)(config).to(device)
        self.steps_per_epoch = math.ceil(len(self.train_labels) / options.batch_size)
        self.info = {"codebook_size": config.codebook_size, "label_names": codes["label_names"],
                     "code_shape": list(self.shape), **self.source.info, "shifts": options.shifts,
                     "jitter": options.jitter, "args": dataclasses.asdict(options)}
        dist.log(f"prior ({options.arch}{', two levels' if levels > 1 else ''}): "
                 f"{sum(p.numel() for p in self.model.parameters()):,} parameters, code maps {self.shape}, "
                 f"K={config.codebook_size}, {config.num_classes or 'no'} classes, {len(self.train_labels)} train "
                 f"({len(as_levels(self.train_codes)[0])} encodings each) / {len(self.test_labels)} held-out, device "
                 f"{device}" + (f", {dist.world_size} processes" if dist.world_size > 1 else ""))

    @property
    def resumed_source(self) -> dict[str, Any]:
        """What a resumed fit's checkpoint must record of the source alike."""
        info = self.source.info
        return {"vqvae_digest": info["vqvae_digest"]} if self.options.vqvae is not None else info

    def batches(self, generator: torch.Generator, dist: Distributed):
        epoch_codes = draw_shifts(self.train_codes, generator)  # (N, h, w)
        self.train_bits, self.trained = torch.zeros((), device=self.device), 0
        return batches(epoch_codes, self.train_labels, self.options.batch_size, self.device, generator, dist.shard)

    def loss(self, forward, batch) -> torch.Tensor:
        xb, yb = batch
        loss = forward(xb, yb if self.model.config.num_classes else None)  # nats per code
        self.train_bits += loss.detach() * len(yb) / math.log(2)
        self.trained += len(yb)
        return loss

    def progress(self, loss: torch.Tensor) -> dict[str, str]:
        return {k: f"{v:.3f}" for k, v in self.source.progress(float(loss)).items()}

    def epoch_metrics(self, epoch: int, dist: Distributed) -> dict[str, Any]:
        train_bits, trained = dist.sum(self.train_bits, self.trained)  # over the processes
        test = evaluate(self.model, self.test_codes, self.test_labels, self.options.batch_size, self.device, dist)
        return {"train_bits_per_code": train_bits / trained, **test,
                **self.source.likelihoods(test["test_bits_per_code"])}

    def pictures(self, out: Path) -> None:
        if self.options.samples_per_class > 0:
            save_samples(self.model, self.source.decoder, self.shape, self.options.samples_per_class,
                         out / "samples.png", self.options.seed, self.source.modality)


@torch.no_grad()
def evaluate(
    model: AutoregressivePrior | HierarchicalPrior, codes: torch.Tensor | tuple[torch.Tensor, ...],
    labels: torch.Tensor, batch_size: int, device: torch.device, dist: Distributed = Distributed(),
) -> dict[str, float]:
    """``test_bits_per_code``: the mean bits per code of the code maps (N, h, w), or of every code of code maps of
    two levels (a tuple), whose mean bits per code at each level are also given (``test_top_bits_per_code``,
    ``test_bottom_bits_per_code``). Under torchrun each process evaluates its part of them and the sums are added
    over the processes."""
    model.eval()
    part = dist.split(len(labels))
    levels = as_levels(codes)
    sizes = [level[0].numel() for level in levels]  # codes per map of each level
    totals = [0.0] * len(levels)
    for xb, yb in batches(codes[part] if len(levels) == 1 else tuple(level[part] for level in levels),
                          labels[part], batch_size, device):
        count, yb = len(yb), yb if model.config.num_classes else None
        bits = model.level_bits(xb, yb) if len(levels) > 1 else [model.bits_per_code(xb, yb)]
        totals = [total + float(b) * count for total, b in zip(totals, bits)]
    *totals, n = dist.sum(*totals, len(labels[part]))
    per_level = [total / n for total in totals]
    metrics = {"test_bits_per_code": sum(b * s for b, s in zip(per_level, sizes)) / sum(sizes)}
    if len(levels) > 1:
        metrics |= {f"test_{name}_bits_per_code": b for name, b in zip(("top", "bottom"), per_level)}
    return metrics


@torch.no_grad()
def save_samples(
    model: AutoregressivePrior | HierarchicalPrior, decoder: nn.Module, shape: tuple[int, int], per_class: int, path: Path,
    seed: int, modality: Modality,
) -> None:
    """A grid of decoded samples: one row per class for a conditional prior, else 8 rows."""
    model.eval()
    n_classes = model.config.num_classes
    labels = torch.arange(n_classes).repeat_interleave(per_class) if n_classes else None
    n = len(labels) if labels is not None else 8 * per_class
    generator = torch.Generator(model.device).manual_seed(seed)
    codes = as_levels(model.sample(n, shape, labels, generator=generator))  # (n, h, w) of each level
    modality.save_grid(decoder.decode_levels(codes).clamp(0, 1), path, per_class)


@dataclasses.dataclass
class CodeSource:
    """The code maps a prior is fitted on and what decodes them.

    Attributes:
        codes: ``train``: ((S, N, h, w) code maps, (N,) labels), ``test``: ((N, h, w), (N,)), ``label_names``.
        decoder: ``decode_levels(codes) -> images``: the VQ-VAE, or a :class:`PixelCodec`.
        info: what the prior's checkpoints record of the source (``vqvae`` and ``vqvae_digest``, or ``pixels``
            and ``data``); a resumed fit must find the same.
        modality: the kind of data the decoded tensors are (the VQ-VAE's data's, or images).
    """

    codes: dict[str, Any]
    decoder: nn.Module
    info: dict[str, Any]
    modality: Modality

    def progress(self, nats_per_code: float) -> dict[str, float]:
        """The training loss in the unit papers use for this source: nats per image of binarized images, bits per
        dimension of other pixels, bits per code of VQ-VAE codes."""
        bits = nats_per_code / math.log(2)
        return {k.removeprefix("test_"): v for k, v in self.likelihoods(bits).items()} or {"bits_per_code": bits}

    def likelihoods(self, bits_per_code: float) -> dict[str, float]:
        """The held-out likelihood as papers on pixels report it: bits per dimension, and nats per image of
        binarized images; nothing more for VQ-VAE codes."""
        if "pixels" not in self.info:
            return {}
        h, w = self.codes["test"][0].shape[1:]
        extra = {"test_bits_per_dim": bits_per_code}
        if self.info["pixels"]["levels"] == 2:
            extra["test_nats_per_image"] = bits_per_code * math.log(2) * h * w
        return extra


def vqvae_source(options: PriorFit, cache_dir: Path, device: torch.device) -> CodeSource:
    """The code maps of the VQ-VAE ``options.vqvae`` on its data set (encoded once, cached)."""
    vqvae, vq_ckpt = load_vqvae(options.vqvae, device)
    codes = encode_splits(vqvae, cache_dir, vq_ckpt["data"], options.data_root, device, options.shifts,
                          options.jitter, vq_ckpt.get("sample_shape"))
    info = {"vqvae": str(options.vqvae), "vqvae_digest": codes["vqvae_digest"]}
    return CodeSource(codes, vqvae, info, modality_of_spec(vq_ckpt["data"]))


def pixel_source(options: PriorFit) -> CodeSource:
    """The pixels of ``--dataset`` as code maps of ``--pixels`` levels (2: binarized, see vqvae_prior/pixels.py)."""
    splits = data.load_dataset(options.dataset, options.data_root)
    G = splits.sample_shape[0]
    if G > 1 and options.arch != "gated":
        raise UsageError(f"--pixels: {options.dataset} has {G}-channel images, which only --arch gated models (with "
                         "channel masks); the plain PixelCNN here takes one value per position")
    codec = PixelCodec(PixelConfig(options.pixels, G))
    codes: dict[str, Any] = {"label_names": list(splits.label_names), "vqvae_digest": None}
    for i, (name, split) in enumerate((("train", splits.train), ("test", splits.test))):
        x, y = as_tensors(split)  # (N, G, H, W)
        x = binarize(x, BINARIZE_SEED + i) if options.pixels == 2 else (x.float() / 255 if x.dtype == torch.uint8 else x)
        maps = codec.encode(x)  # (N, H, W*G), each pixel's channels side by side
        codes[name] = (maps[None] if name == "train" else maps, y.clone())
    scheme = (f"sampled once: each pixel 1 with probability its intensity, seeds {BINARIZE_SEED} (train) and "
              f"{BINARIZE_SEED + 1} (held-out)") if options.pixels == 2 else "uniform: floor(x * levels)"
    info = {"pixels": {"levels": options.pixels, "in_channels": G, "quantization": scheme}, "data": splits.spec}
    return CodeSource(codes, codec, info, Images())


def fit_prior(options: PriorFit) -> dict[str, Any]:
    """Fit a prior into ``options.out`` (one process, or one of torchrun's); returns the last epoch's metrics, with
    ``kept`` and ``best_epoch`` as logged."""
    options, _ = options.resolved()
    with fit_folder(options, "prior", metric="test_bits_per_code") as (run, dist, device):
        state = run.start(options.resume)
        if state is not None:
            check_options(run, state, options, FREE, legacy=LEGACY)
        torch.manual_seed(options.seed)
        task = PriorTask(options, dist, device)
        return fit_in_folder(task, options, run, dist, state, options.ema, config=dataclasses.asdict(task.model.config),
                             shifts=options.shifts, jitter=options.jitter, legacy=LEGACY, **task.resumed_source)
