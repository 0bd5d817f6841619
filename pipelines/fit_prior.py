"""Fit a gated PixelCNN prior over the code maps of a fitted VQ-VAE, or over the pixels of images.

    python -m pipelines.fit_prior --vqvae runs/mnist/vqvae.pt --out runs/mnist-prior
    python -m pipelines.fit_prior --pixels 2 --dataset mnist --data-root ../shared/data/mnist --out runs/binary

Pixels (``--pixels LEVELS``, no VQ-VAE): each pixel of a gray image is a code with LEVELS values, as in the PixelCNN
papers (``vqvae_prior/pixels.py``: 2 levels are binarized MNIST, drawn once with a fixed seed; 256 an 8-bit
image). The held-out likelihood is then also reported as the papers report it: bits per dimension
(``test_bits_per_dim``) and, for 2 levels, nats per image (``test_nats_per_image``). ``--arch plain`` fits the
plain masked PixelCNN instead of the gated one, to compare them.

The data set is the one the VQ-VAE was fitted on (recorded in its checkpoint; ``--data-root`` reads it from another
folder). It is encoded once with the frozen VQ-VAE and the code maps are cached in the fit's folder, or in
``--cache-dir`` to share them between fits (``codes-<digest>.pt``; an unreadable one is rebuilt). ``--shifts S``
(S > 1) augments the small audio data sets: each training input is also encoded moved down by 1 .. S-1 rows, zero
rows in front (a spectrogram: delayed by that many frames, silence before it, its end cut), and every epoch draws
one of its S code maps; held-out figures use the inputs as they are.
``--jitter P`` (P > 0) does the same for images with small translations: each training image is also encoded moved
by every (dy, dx) with |dy|, |dx| <= P pixels (zeros fill the border it uncovers), (2P + 1)^2 code maps per image. The
prior is class-conditional when the data set has labels, unless ``--unconditional``.
Per epoch: train and held-out bits per code (``metrics.jsonl``), a grid of decoded samples (``samples.png``, one
row per class), ``prior.pt``, the epoch with the lowest held-out bits per code so far (what ``generate`` reads), and
``prior-last.pt``, the last epoch with the training state that ``--resume`` continues; both hold the config, K, the
label names and the digest of the VQ-VAE weights the prior was fitted on. ``--patience N`` stops the fit once the
held-out bits per code have not improved for N epochs. See ``pipelines/run_folder.py`` for what is guaranteed of the
output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

import data
from pipelines import batching, cli, figures, run_folder
from pipelines.distributed import Distributed, fit_folder
from pipelines.run_folder import RunFolder
from pipelines.training import FiniteLoss, MixedPrecision, adam, lr_schedule
from vqvae_prior.checkpoint import atomic_save, load_checkpoint, load_vqvae, require, weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.pixels import BINARIZE_SEED, PixelCodec, PixelConfig, binarize
from vqvae_prior.prior import AutoregressivePrior, PriorConfig
from vqvae_prior.registry import prior_architecture
from vqvae_prior.vqvae import VQVAE


def get_args_parser() -> argparse.ArgumentParser:
    defaults = PriorConfig(codebook_size=2)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", help="checkpoint written by pipelines.fit_vqvae: model its code maps")
    parser.add_argument("--pixels", type=int, metavar="LEVELS",
                        help="no VQ-VAE: model the pixels of --dataset, each a code with LEVELS values (2: binarized)")
    parser.add_argument("--dataset", choices=data.DATASETS, help="--pixels: the image data set")
    parser.add_argument("--data-root", help="the data set's folder (--vqvae: read its data set from there instead)")
    parser.add_argument("--out", default="runs/prior", help="output folder")
    parser.add_argument("--cache-dir", help="folder of the cached code maps, to share them between fits "
                                            "(default: --out)")
    cli.add_common_args(parser)
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), default="gated",
                        help="gated PixelCNN (vertical and horizontal stacks, no blind spot) or the plain masked "
                             "PixelCNN of the first paper (blind spot; reference sampler only)")
    parser.add_argument("--layers", type=int, default=defaults.num_layers,
                        help="layers, the first of mask type A (gated layers, or plain residual blocks after it)")
    parser.add_argument("--channels", type=int,
                        help="channels between layers (default: gated 64; plain 128, its masked convolutions 64)")
    parser.add_argument("--head-channels", type=int, default=defaults.head_channels)
    parser.add_argument("--dropout", type=float, help="in every gated layer, training only (default: by kind of data)")
    parser.add_argument("--label-dropout", type=float,
                        help="replace each training label by a null class at this rate, so the prior also learns "
                             "the unconditional model that classifier-free guidance (generate --guidance) needs "
                             "(default: 0.1, 0 with --unconditional)")
    parser.add_argument("--shifts", type=int,
                        help="train on each input moved down by 0 .. S-1 rows, one draw per epoch; 1: as it is "
                             "(default: by kind of data)")
    parser.add_argument("--jitter", type=int,
                        help="train on each image moved by up to P pixels in each direction, one of the (2P+1)^2 "
                             "translations drawn per epoch; 0: as it is (default: by kind of data)")
    parser.add_argument("--unconditional", action="store_true", help="ignore the class labels")
    parser.add_argument("--samples-per-class", type=int, default=8,
                        help="samples per class in samples.png, drawn after every epoch; 0: none (the plain "
                             "prior's reference sampler runs the network once per position: slow on large maps)")
    return parser


# --arch: the names in vqvae_prior.registry.PRIORS
ARCHITECTURES = {"gated": "gated_pixelcnn", "plain": "plain_pixelcnn"}

# options a resumed fit may change: they do not change what is computed
FREE_ON_RESUME = run_folder.FREE_ON_RESUME | {"vqvae", "cache_dir", "samples_per_class"}
# what a checkpoint written before --shifts, --jitter or --arch existed was fitted with
LEGACY = {"shifts": 1, "jitter": 0, "arch": "gated"}

# --epochs, --batch-size, --dropout and --shifts when not given, by the VQ-VAE's data. Audio data sets are small
# (FSDD: 2,250 train clips): smaller batches give more steps, and dropout and 8 shifts (one code row of the audio
# VQ-VAE) keep the prior from overfitting: FSDD without them overfits after 9 epochs (held-out 4.95 -> 5.78 bits
# per code at 22); with them it still improves at 60 (4.16). FSDD with the audio ones: 60 epochs in about 27
# minutes on 2 CPU cores (README).
DEFAULTS = {
    "image": {"epochs": 4, "batch_size": 128, "lr": 1e-3, "lr_schedule": "cosine", "dropout": 0.0, "shifts": 1,
              "jitter": 0},
    "audio": {"epochs": 60, "batch_size": 32, "lr": 1e-3, "lr_schedule": "constant", "dropout": 0.5, "shifts": 8,
              "jitter": 0},
}


@torch.no_grad()
def encode_splits(
    vqvae: VQVAE, cache_dir: Path, data_spec: dict[str, Any], data_root: str | None, device: torch.device,
    shifts: int = 1,
    jitter: int = 0,
) -> dict[str, Any]:
    """Code maps and labels of the train and held-out splits, cached in ``cache_dir`` (the fit's folder).

    ``train`` holds (S, N, h, w) code maps, one per offset of :func:`offsets` (the inputs as they are first),
    ``test`` (N, h, w) code maps of the inputs as they are. The cache key is the digest of the VQ-VAE weights, the
    data spec and the offsets, so a refitted VQ-VAE or other data never reuse stale codes; an unreadable cache is
    rebuilt, with a warning.
    """
    moves = offsets(shifts, jitter)
    spec = {**data_spec, **({"root": data_root} if data_root else {})}
    digest = weights_digest(vqvae.state_dict())
    # the key of a fit without jitter is as before --jitter existed, so its cached codes stay valid
    key_parts = [digest, spec, shifts] + ([jitter] if jitter else [])
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"codes-{key}.pt"
    if cache.is_file():
        try:
            codes = torch.load(cache, weights_only=True)
            if codes["vqvae_digest"] == digest and len(codes["train"][0]) == len(moves):
                return codes
            problem = "it holds the codes of other weights or offsets"
        except Exception as e:  # torch raises several types for a corrupt file; a foreign one lacks keys
            problem = f"{type(e).__name__}: {' '.join(str(e).split())}"
        print(f"warning: the code cache {cache} is unreadable ({problem}); rebuilding it", file=sys.stderr)
    splits = batching.load_splits(spec)
    codes: dict[str, Any] = {"vqvae_digest": digest, "label_names": list(splits.label_names)}

    def encode(x: Tensor, y: Tensor, dy: int, dx: int) -> Tensor:  # (N, h, w) int64 of the inputs moved by dy, dx
        return torch.cat([vqvae.encode(translate(xb, dy, dx)).cpu() for xb, _ in batching.batches(x, y, 512, device)])

    x, y = batching.as_tensors(splits.train)
    codes["train"] = (torch.stack([encode(x, y, dy, dx) for dy, dx in moves]), y.clone())  # (S, N, h, w), (N,)
    x, y = batching.as_tensors(splits.test)
    codes["test"] = (encode(x, y, 0, 0), y.clone())  # (N, h, w), (N,)
    atomic_save(codes, cache)
    return codes


def offsets(shifts: int = 1, jitter: int = 0) -> list[tuple[int, int]]:
    """The (dy, dx) pixel offsets at which each training input is encoded, (0, 0) first: (s, 0) for s < ``shifts``
    (delays of a spectrogram), or every (dy, dx) with |dy|, |dx| <= ``jitter`` (translations of an image)."""
    if shifts < 1:
        raise UsageError(f"--shifts must be >= 1, got {shifts}")
    if jitter < 0:
        raise UsageError(f"--jitter must be >= 0, got {jitter}")
    if shifts > 1 and jitter > 0:
        raise UsageError(f"--shifts {shifts} and --jitter {jitter}: pass one of them (shifts delay, jitter translates)")
    if jitter == 0:
        return [(s, 0) for s in range(shifts)]
    moves = [(dy, dx) for dy in range(-jitter, jitter + 1) for dx in range(-jitter, jitter + 1)]
    return sorted(moves, key=lambda m: m != (0, 0))  # stable: (0, 0) first, the rest in raster order


def translate(x: Tensor, dy: int, dx: int) -> Tensor:
    """x (B, C, H, W) moved down by dy and right by dx pixels (negative: up, left); zeros fill the uncovered border."""
    if dy == 0 and dx == 0:
        return x
    H, W = x.shape[2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))  # (B, C, H + |dy|, W + |dx|)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top : top + H, left : left + W]


def draw_shifts(codes: Tensor, generator: torch.Generator) -> Tensor:
    """One of the S code maps of each input, drawn uniformly: (S, N, h, w) -> (N, h, w)."""
    S, N = codes.shape[:2]
    if S == 1:  # draws nothing: a fit without shifts shuffles exactly as before they existed
        return codes[0]
    return codes[torch.randint(S, (N,), generator=generator), torch.arange(N)]


@torch.no_grad()
def evaluate(
    model: AutoregressivePrior, codes: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
    dist: Distributed = Distributed(),
) -> float:
    """Mean bits per code of the code maps (N, h, w); under torchrun each process evaluates its part of them and
    the sums are added over the processes."""
    model.eval()
    part = dist.split(len(codes))
    total = 0.0
    for xb, yb in batching.batches(codes[part], labels[part], batch_size, device):
        total += float(model.bits_per_code(xb, yb if model.config.num_classes else None)) * len(xb)
    total, n = dist.sum(total, len(codes[part]))
    return total / n


@torch.no_grad()
def save_samples(
    model: AutoregressivePrior, decoder: VQVAE | PixelCodec, shape: tuple[int, int], per_class: int, path: Path,
    seed: int, spectrograms: bool = False,
) -> None:
    """A grid of decoded samples: one row per class for a conditional prior, else 8 rows."""
    model.eval()
    n_classes = model.config.num_classes
    labels = torch.arange(n_classes).repeat_interleave(per_class) if n_classes else None
    n = len(labels) if labels is not None else 8 * per_class
    generator = torch.Generator(model.device).manual_seed(seed)
    codes = model.sample(n, shape, labels, generator=generator)  # (n, h, w)
    figures.save_grid(decoder.decode_indices(codes).clamp(0, 1), path, per_class, spectrograms)


def fit(out: str | Path, vqvae: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Fit a prior over the codes of the VQ-VAE checkpoint ``vqvae`` (or, with ``pixels=LEVELS`` and ``dataset=``,
    over pixels) into the folder ``out`` from Python: ``options`` are the command line's, named as in ``args``
    (``epochs=12``, ``layers=8``, ``resume=True``, ...), the rest at their defaults. Returns the last epoch's
    metrics, as :func:`main`."""
    return main(cli.namespace(get_args_parser(), out=str(out), vqvae=None if vqvae is None else str(vqvae),
                              **options))


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the prior; returns the last epoch's metrics (with ``kept`` and ``best_epoch``, as logged)."""
    modality, codebook_size = check_source(args)
    cli.fill_defaults(args, DEFAULTS, modality)
    if args.channels is None:  # the architecture's own default
        args.channels = prior_architecture(ARCHITECTURES[args.arch]).config(codebook_size=2).channels
    cli.check_common_args(args)
    cli.at_least(args, 1, "layers", "channels", "head_channels")
    cli.at_least(args, 0, "samples_per_class")
    if args.unconditional and args.label_dropout:
        raise UsageError("--label-dropout trains the unconditional model beside the class-conditional one: "
                         "it does not go with --unconditional")
    if args.label_dropout is None:
        args.label_dropout = 0.0 if args.unconditional else 0.1
    offsets(args.shifts, args.jitter)
    if args.pixels is not None and (args.shifts > 1 or args.jitter > 0):
        raise UsageError("--shifts and --jitter augment the encodings of a VQ-VAE; with --pixels the likelihood "
                         "is of the images as they are: leave them out")
    model_config(args, codebook_size, num_classes=0)
    # one process, or one of torchrun's (pipelines/distributed.py)
    with fit_folder(args, "prior", metric="test_bits_per_code") as (run, dist, device):
        return fit_in(args, run, dist, device)


def check_source(args: argparse.Namespace) -> tuple[str, int]:
    """The kind of data ("image" or "audio") and the K of the code maps to model: a VQ-VAE's (``--vqvae``) or
    pixels' (``--pixels``); refuses, before any work, options that name neither or both."""
    if (args.vqvae is None) == (args.pixels is None):
        raise UsageError("pass --vqvae CHECKPOINT (model the code maps of a VQ-VAE) or --pixels LEVELS with "
                         "--dataset (model the pixels of images), one of them")
    if args.vqvae is not None:
        if args.dataset is not None:
            raise UsageError(f"--dataset goes with --pixels; the VQ-VAE {args.vqvae} was fitted on the data set its "
                             "checkpoint names (--data-root reads it from another folder)")
        vq_ckpt = load_checkpoint(args.vqvae, "vqvae")
        require(vq_ckpt, args.vqvae, "data")
        return vq_ckpt["data"]["modality"], vq_ckpt["config"]["codebook_size"]
    if args.dataset is None:
        raise UsageError("--pixels needs --dataset, an image data set (e.g. --dataset mnist --data-root "
                         "../shared/data/mnist)")
    if data.modality_of(args.dataset) != "image":
        raise UsageError(f"--pixels models images; --dataset {args.dataset} is {data.modality_of(args.dataset)}")
    if not 2 <= args.pixels <= 256:
        raise UsageError(f"--pixels must be a number of levels in 2 .. 256, got {args.pixels}")
    return "image", args.pixels


def model_config(args: argparse.Namespace, codebook_size: int, num_classes: int, image_channels: int = 1) -> Any:
    """The config of the prior that ``--arch`` names, built from the options (a clear error for a bad value)."""
    config_class = prior_architecture(ARCHITECTURES[args.arch]).config
    return cli.build_config(
        config_class,
        **({"image_channels": image_channels} if image_channels > 1 else {}),
        codebook_size=codebook_size,
        num_classes=0 if args.unconditional else num_classes,
        channels=args.channels,
        num_layers=args.layers,
        head_channels=args.head_channels,
        dropout=args.dropout,
        label_dropout=args.label_dropout,
    )


@dataclasses.dataclass
class CodeSource:
    """The code maps a prior is fitted on and what decodes them.

    Attributes:
        codes: ``train``: ((S, N, h, w) code maps, (N,) labels), ``test``: ((N, h, w), (N,)), ``label_names``.
        decoder: ``decode_indices(codes) -> images``: the VQ-VAE, or a :class:`PixelCodec`.
        info: what the prior's checkpoints record of the source (``vqvae`` and ``vqvae_digest``, or ``pixels``
            and ``data``); a resumed fit must find the same.
        spectrograms: the decoded images are spectrograms (an audio VQ-VAE).
    """

    codes: dict[str, Any]
    decoder: VQVAE | PixelCodec
    info: dict[str, Any]
    spectrograms: bool = False

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


def vqvae_source(args: argparse.Namespace, cache_dir: Path, device: torch.device) -> CodeSource:
    """The code maps of the VQ-VAE ``--vqvae`` on its data set (encoded once, cached)."""
    vqvae, vq_ckpt = load_vqvae(args.vqvae, device)
    codes = encode_splits(vqvae, cache_dir, vq_ckpt["data"], args.data_root, device, args.shifts, args.jitter)
    info = {"vqvae": str(args.vqvae), "vqvae_digest": codes["vqvae_digest"]}
    return CodeSource(codes, vqvae, info, spectrograms=vq_ckpt["data"]["modality"] == "audio")


def pixel_source(args: argparse.Namespace) -> CodeSource:
    """The pixels of ``--dataset`` as code maps of ``--pixels`` levels (2: binarized, see vqvae_prior/pixels.py)."""
    splits = data.load_dataset(args.dataset, args.data_root)
    G = splits.sample_shape[0]
    if G > 1 and args.arch != "gated":
        raise UsageError(f"--pixels: {args.dataset} has {G}-channel images, which only --arch gated models (with "
                         "channel masks); the plain PixelCNN here takes one value per position")
    codec = PixelCodec(PixelConfig(args.pixels, G))
    codes: dict[str, Any] = {"label_names": list(splits.label_names), "vqvae_digest": None}
    for i, (name, split) in enumerate((("train", splits.train), ("test", splits.test))):
        x, y = batching.as_tensors(split)  # (N, G, H, W)
        x = binarize(x, BINARIZE_SEED + i) if args.pixels == 2 else (x.float() / 255 if x.dtype == torch.uint8 else x)
        maps = codec.encode(x)  # (N, H, W*G), each pixel's channels side by side
        codes[name] = (maps[None] if name == "train" else maps, y.clone())
    scheme = (f"sampled once: each pixel 1 with probability its intensity, seeds {BINARIZE_SEED} (train) and "
              f"{BINARIZE_SEED + 1} (held-out)") if args.pixels == 2 else "uniform: floor(x * levels)"
    info = {"pixels": {"levels": args.pixels, "in_channels": G, "quantization": scheme}, "data": splits.spec}
    return CodeSource(codes, codec, info)


def fit_in(args: argparse.Namespace, run: RunFolder, dist: Distributed, device: torch.device) -> dict[str, Any]:
    """The fit, in an output folder this process owns (``dist``: one of the processes of a data-parallel fit)."""
    state = run.start(args.resume)
    if state is not None:
        run.check_resumed_args(state, args, FREE_ON_RESUME, legacy=LEGACY)
    torch.manual_seed(args.seed)
    cache_dir = Path(args.cache_dir) if args.cache_dir is not None else run.out
    if args.vqvae is not None:  # rank 0 encodes and writes the code cache, then the others read it
        if not dist.is_main:
            dist.barrier()
        source = vqvae_source(args, cache_dir, device)
        if dist.is_main:
            dist.barrier()
    else:
        source = pixel_source(args)
    train_codes, train_labels = source.codes["train"]  # (S, N, h, w), (N,)
    test_codes, test_labels = source.codes["test"]  # (N, h, w), (N,)
    shape = tuple(test_codes.shape[1:])
    config = model_config(args, source.decoder.config.codebook_size, len(source.codes["label_names"]),
                          source.decoder.config.in_channels if args.pixels is not None else 1)
    model = prior_architecture(ARCHITECTURES[args.arch]).model(config).to(device)
    optimizer = adam(model, args.lr)
    loader_generator = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(train_labels) / args.batch_size)
    scheduler = lr_schedule(optimizer, args.lr_schedule, args.epochs * steps_per_epoch)
    resumed_source = {"vqvae_digest": source.info["vqvae_digest"]} if args.vqvae is not None else source.info
    precision = MixedPrecision(args.precision, device)
    if state is not None:
        run_folder.restore(
            state, model, optimizer, scheduler, loader_generator,
            config=dataclasses.asdict(config), shifts=args.shifts, jitter=args.jitter, legacy=LEGACY,
            precision=precision, **resumed_source,
        )
    if args.compile:
        model.compile()  # in place: the state dict and the checkpoints are the plain module's
    nll = dist.wrap(model, "nll")  # model.nll, through DDP under torchrun
    dist.log(f"prior ({args.arch}): {sum(p.numel() for p in model.parameters()):,} parameters, code maps {shape}, "
             f"K={config.codebook_size}, {config.num_classes or 'no'} classes, {len(train_labels)} train "
             f"({len(train_codes)} encodings each) / {len(test_codes)} held-out, device {device}"
             + (f", {dist.world_size} processes" if dist.world_size > 1 else ""))
    info = {"codebook_size": config.codebook_size, "label_names": source.codes["label_names"],
            "code_shape": list(shape), **source.info, "shifts": args.shifts, "jitter": args.jitter,
            "args": dict(vars(args))}

    for epoch in range(run.epochs_done, args.epochs):
        if run.patience_spent(args.patience):
            break
        model.train()
        t0 = time.perf_counter()
        epoch_codes = draw_shifts(train_codes, loader_generator)  # (N, h, w)
        steps = batching.batches(epoch_codes, train_labels, args.batch_size, device, loader_generator, dist.shard)
        bar = tqdm(steps, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress or not dist.is_main)
        finite = FiniteLoss(epoch + 1, steps_per_epoch, device, run.last_good)
        train_bits, trained = torch.zeros((), device=device), 0
        for step, (xb, yb) in enumerate(bar, 1):
            with precision.autocast():
                loss = nll(xb, yb if config.num_classes else None)  # nats per code
            precision.step(loss, optimizer)
            scheduler.step()
            train_bits += loss.detach() * len(xb) / math.log(2)
            trained += len(xb)
            finite.update(loss, step)
            if not bar.disable and bar.n % 20 == 0:  # reading a loss value waits for the device
                bar.set_postfix({k: f"{v:.3f}" for k, v in source.progress(float(loss)).items()})
        train_bits, trained = dist.sum(train_bits, trained)  # over the processes
        metrics = {
            "epoch": epoch + 1,
            "train_seconds": time.perf_counter() - t0,
            "train_bits_per_code": train_bits / trained,
            "test_bits_per_code": evaluate(model, test_codes, test_labels, args.batch_size, device, dist),
        }
        metrics.update(source.likelihoods(metrics["test_bits_per_code"]))
        finite.check_epoch(model, "test_bits_per_code", metrics["test_bits_per_code"])
        dist.check_same(model.state_dict())  # the same model in every process
        if args.samples_per_class > 0 and dist.is_main:
            save_samples(model, source.decoder, shape, args.samples_per_class, run.out / "samples.png", args.seed,
                         source.spectrograms)
        training = run_folder.training_state(optimizer, scheduler, loader_generator, precision)
        metrics = run.save_epoch(model, metrics, info, training)
        dist.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return run.history[-1]


if __name__ == "__main__":
    cli.run(main, get_args_parser())
