"""Fit a gated PixelCNN prior over the code maps of a fitted VQ-VAE.

    python -m pipelines.fit_prior --vqvae runs/mnist/vqvae.pt --out runs/mnist-prior

The data set is the one the VQ-VAE was fitted on (recorded in its checkpoint; ``--data-root`` reads it from another
folder). It is encoded once with the frozen VQ-VAE and the code maps are cached beside the VQ-VAE checkpoint
(``codes-<digest>.pt``). ``--shifts S`` (S > 1) augments the small audio data sets: each training input is also
encoded moved down by 1 .. S-1 rows, zero rows in front (a spectrogram: delayed by that many frames, silence before
it, its end cut), and every epoch draws one of its S code maps; held-out figures use the inputs as they are.
``--jitter P`` (P > 0) does the same for images with small translations: each training image is also encoded moved
by every (dy, dx) with |dy|, |dx| <= P pixels (zeros fill the border it uncovers), (2P + 1)^2 code maps per image. The
prior is class-conditional when the data set has labels, unless ``--unconditional``.
Per epoch: train and held-out bits per code (``metrics.jsonl``), a grid of decoded samples (``samples.png``, one
row per class), and ``prior.pt`` written atomically with its config, K, the label names and the digest of the
VQ-VAE weights it was fitted on. ``--resume`` continues an interrupted fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from pipelines import common
from vqvae_prior.checkpoint import atomic_save, load_vqvae, save_checkpoint, weights_digest
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.vqvae import VQVAE


def get_args_parser() -> argparse.ArgumentParser:
    defaults = PriorConfig(codebook_size=2)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, help="checkpoint written by pipelines.fit_vqvae")
    parser.add_argument("--data-root", help="read the VQ-VAE's data set from this folder instead")
    parser.add_argument("--out", default="runs/prior", help="output folder")
    common.add_common_args(parser)
    parser.add_argument("--layers", type=int, default=defaults.num_layers, help="gated layers, the first of type A")
    parser.add_argument("--channels", type=int, default=defaults.channels)
    parser.add_argument("--head-channels", type=int, default=defaults.head_channels)
    parser.add_argument("--dropout", type=float, help="in every gated layer, training only (default: by kind of data)")
    parser.add_argument("--shifts", type=int,
                        help="train on each input moved down by 0 .. S-1 rows, one draw per epoch; 1: as it is "
                             "(default: by kind of data)")
    parser.add_argument("--jitter", type=int,
                        help="train on each image moved by up to P pixels in each direction, one of the (2P+1)^2 "
                             "translations drawn per epoch; 0: as it is (default: by kind of data)")
    parser.add_argument("--unconditional", action="store_true", help="ignore the class labels")
    parser.add_argument("--samples-per-class", type=int, default=8, help="samples per class in samples.png")
    parser.set_defaults(lr=1e-3)
    return parser


# --epochs, --batch-size, --dropout and --shifts when not given, by the VQ-VAE's data. Audio data sets are small
# (FSDD: 2,250 train clips): smaller batches give more steps, and dropout and 8 shifts (one code row of the audio
# VQ-VAE) keep the prior from overfitting: FSDD without them overfits after 9 epochs (held-out 4.95 -> 5.78 bits
# per code at 22); with them it still improves at 60 (4.16). FSDD with the audio ones: 60 epochs in about 27
# minutes on 2 CPU cores (README).
DEFAULTS = {
    "image": {"epochs": 4, "batch_size": 128, "dropout": 0.0, "shifts": 1, "jitter": 0},
    "audio": {"epochs": 60, "batch_size": 32, "dropout": 0.5, "shifts": 8, "jitter": 0},
}


@torch.no_grad()
def encode_splits(
    vqvae: VQVAE, vqvae_path: Path, data_spec: dict[str, Any], data_root: str | None, device: torch.device,
    shifts: int = 1,
    jitter: int = 0,
) -> dict[str, Any]:
    """Code maps and labels of the train and held-out splits, cached beside the VQ-VAE checkpoint.

    ``train`` holds (S, N, h, w) code maps, one per offset of :func:`offsets` (the inputs as they are first),
    ``test`` (N, h, w) code maps of the inputs as they are. The cache key is the digest of the VQ-VAE weights, the
    data spec and the offsets, so a refitted VQ-VAE or other data never reuse stale codes.
    """
    moves = offsets(shifts, jitter)
    spec = {**data_spec, **({"root": data_root} if data_root else {})}
    digest = weights_digest(vqvae.state_dict())
    # the key of a fit without jitter is as before --jitter existed, so its cached codes stay valid
    key_parts = [digest, spec, shifts] + ([jitter] if jitter else [])
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = vqvae_path.parent / f"codes-{key}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    splits = common.load_splits(spec)
    codes: dict[str, Any] = {"vqvae_digest": digest, "label_names": list(splits.label_names)}

    def encode(x: Tensor, y: Tensor, dy: int, dx: int) -> Tensor:  # (N, h, w) int64 of the inputs moved by dy, dx
        return torch.cat([vqvae.encode(translate(xb, dy, dx)).cpu() for xb, _ in common.batches(x, y, 512, device)])

    x, y = common.as_tensors(splits.train)
    codes["train"] = (torch.stack([encode(x, y, dy, dx) for dy, dx in moves]), y.clone())  # (S, N, h, w), (N,)
    x, y = common.as_tensors(splits.test)
    codes["test"] = (encode(x, y, 0, 0), y.clone())  # (N, h, w), (N,)
    atomic_save(codes, cache)
    return codes


def offsets(shifts: int = 1, jitter: int = 0) -> list[tuple[int, int]]:
    """The (dy, dx) pixel offsets at which each training input is encoded, (0, 0) first: (s, 0) for s < ``shifts``
    (delays of a spectrogram), or every (dy, dx) with |dy|, |dx| <= ``jitter`` (translations of an image)."""
    if shifts < 1:
        raise ValueError(f"--shifts must be >= 1, got {shifts}")
    if jitter < 0:
        raise ValueError(f"--jitter must be >= 0, got {jitter}")
    if shifts > 1 and jitter > 0:
        raise ValueError(f"--shifts {shifts} and --jitter {jitter}: pass one of them (shifts delay, jitter translates)")
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
def evaluate(model: GatedPixelCNN, codes: torch.Tensor, labels: torch.Tensor, batch_size: int, device) -> float:
    """Mean bits per code of the code maps (N, h, w)."""
    model.eval()
    total = 0.0
    for xb, yb in common.batches(codes, labels, batch_size, device):
        total += float(model.bits_per_code(xb, yb if model.config.num_classes else None)) * len(xb)
    return total / len(codes)


@torch.no_grad()
def save_samples(
    model: GatedPixelCNN, vqvae: VQVAE, shape: tuple[int, int], per_class: int, path: Path, seed: int,
    spectrograms: bool = False,
) -> None:
    """A grid of decoded samples: one row per class for a conditional prior, else 8 rows."""
    model.eval()
    n_classes = model.config.num_classes
    labels = torch.arange(n_classes).repeat_interleave(per_class) if n_classes else None
    n = len(labels) if labels is not None else 8 * per_class
    generator = torch.Generator(model.device).manual_seed(seed)
    codes = model.sample(n, shape, labels, generator=generator)  # (n, h, w)
    common.save_grid(vqvae.decode_indices(codes).clamp(0, 1), path, per_class, spectrograms)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the prior; returns the last epoch's metrics."""
    device = common.pick_device(args.device)
    out = Path(args.out)
    ckpt_path = out / "prior.pt"
    common.check_resume(out, ckpt_path, args.resume)
    torch.manual_seed(args.seed)
    vqvae_path = Path(args.vqvae)
    vqvae, vq_ckpt = load_vqvae(vqvae_path, device)
    audio = "spectrogram" in vq_ckpt["data"]
    common.fill_defaults(args, DEFAULTS, "audio" if audio else "image")
    codes = encode_splits(vqvae, vqvae_path, vq_ckpt["data"], args.data_root, device, args.shifts, args.jitter)
    train_codes, train_labels = codes["train"]  # (S, N, h, w), (N,)
    test_codes, test_labels = codes["test"]  # (N, h, w), (N,)
    shape = tuple(test_codes.shape[1:])
    config = PriorConfig(
        codebook_size=vqvae.config.codebook_size,
        num_classes=0 if args.unconditional else len(codes["label_names"]),
        channels=args.channels,
        num_layers=args.layers,
        head_channels=args.head_channels,
        dropout=args.dropout,
    )
    model = GatedPixelCNN(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader_generator = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(train_labels) / args.batch_size)
    scheduler = common.lr_schedule(optimizer, args.lr_schedule, args.epochs * steps_per_epoch)
    start_epoch = 0
    if args.resume:
        start_epoch = common.resume(
            ckpt_path, "prior", model, optimizer, scheduler, loader_generator,
            config=dataclasses.asdict(config), vqvae_digest=codes["vqvae_digest"], shifts=args.shifts,
            jitter=args.jitter, legacy={"shifts": 1, "jitter": 0},  # fitted before --shifts / --jitter existed
        )
    print(f"prior: {sum(p.numel() for p in model.parameters()):,} parameters, code maps {shape}, "
          f"K={config.codebook_size}, {config.num_classes or 'no'} classes, {len(train_labels)} train "
          f"({len(train_codes)} encodings each) / {len(test_codes)} held-out, device {device}")

    metrics: dict[str, Any] = {}
    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0 = time.perf_counter()
        epoch_codes = draw_shifts(train_codes, loader_generator)  # (N, h, w)
        steps = common.batches(epoch_codes, train_labels, args.batch_size, device, loader_generator)
        bar = tqdm(steps, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", disable=args.no_progress)
        train_bits = torch.zeros((), device=device)
        for xb, yb in bar:
            loss = model.nll(xb, yb if config.num_classes else None)  # nats per code
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            train_bits += loss.detach() * len(xb) / math.log(2)
            if not args.no_progress and bar.n % 20 == 0:  # reading a loss value waits for the device
                bar.set_postfix(bits_per_code=f"{float(loss) / math.log(2):.3f}")
        metrics = {
            "epoch": epoch + 1,
            "train_seconds": time.perf_counter() - t0,
            "train_bits_per_code": float(train_bits) / len(train_labels),
            "test_bits_per_code": evaluate(model, test_codes, test_labels, args.batch_size, device),
        }
        common.append_jsonl(out / "metrics.jsonl", metrics)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
        save_samples(model, vqvae, shape, args.samples_per_class, out / "samples.png", args.seed, audio)
        save_checkpoint(
            ckpt_path, "prior", model,
            codebook_size=config.codebook_size, label_names=codes["label_names"], code_shape=list(shape),
            vqvae=str(vqvae_path), vqvae_digest=codes["vqvae_digest"], shifts=args.shifts,
            jitter=args.jitter, metrics=metrics, **common.training_state(optimizer, scheduler, loader_generator, epoch + 1, args),
        )
    return metrics


if __name__ == "__main__":
    main(get_args_parser().parse_args())
