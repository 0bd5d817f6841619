"""Fit a VQ-VAE to a data set of images or spectrograms.

    python -m pipelines.fit_vqvae --dataset mnist --data-root ../shared/data/mnist --out runs/mnist
    python -m pipelines.fit_vqvae --dataset audio-folder --data-root ../shared/data/fsdd/recordings --out runs/fsdd

Per epoch, on the held-out split: reconstruction MSE and PSNR, commitment loss, perplexity and codes used (and the
same code statistics over the training epoch); one line per epoch in ``OUT/metrics.jsonl``. For audio also the
log-spectral distance in dB between held-out clips and the Griffin-Lim waveforms of their reconstructed spectrograms
(``test_lsd_db``), beside the same distance for the original spectrograms (``ceiling_lsd_db``, what Griffin-Lim
alone costs, computed once per run); both on a fixed subset of ``--lsd-clips`` clips (``lsd_clips``) spread evenly
over the held-out split, as Griffin-Lim is slow (``vqvae_prior.evaluation.lsd``). Writes ``OUT/reconstructions.png``
(held-out originals above their reconstructions), ``OUT/vqvae.pt``, the epoch with the lowest held-out MSE so far
(what ``fit_prior`` reads), and ``OUT/vqvae-last.pt``, the last epoch with the training state that ``--resume``
continues; ``--patience N`` stops the fit once the held-out MSE has not improved for N epochs. A non-finite loss
stops the fit with an error, its checkpoints untouched. See ``pipelines/run_folder.py`` for what is guaranteed of
the output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from tqdm import tqdm

import data
from pipelines import batching, cli, figures, run_folder
from pipelines.distributed import Distributed, fit_folder
from pipelines.run_folder import RunFolder
from pipelines.training import FiniteLoss, MixedPrecision, adam, lr_schedule
from vqvae_prior.evaluation.lsd import HeldOutLSD
from vqvae_prior.quantizer import CodeUsage
from vqvae_prior.vqvae import VQVAE, VQVAEConfig


def get_args_parser() -> argparse.ArgumentParser:
    defaults = VQVAEConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-sample", choices=data.DATASETS)
    parser.add_argument("--data-root", help="folder (or file) of the data set; see data/__init__.py")
    parser.add_argument("--image-size", type=int, nargs="+", help="resize an image folder to H [W]")
    parser.add_argument("--channels-in", type=int, choices=(1, 3), help="image-folder: force grayscale or RGB")
    cli.add_audio_args(parser)
    parser.add_argument("--lsd-clips", type=int, default=64, help="audio: held-out clips for the LSD; 0: all")
    parser.add_argument("--lsd-every", type=int, default=5, help="audio: LSD every N epochs and after the last")
    parser.add_argument("--out", default="runs/vqvae", help="output folder")
    cli.add_common_args(parser)
    parser.add_argument("--codebook-size", type=int, help="K (default: by kind of data)")
    parser.add_argument("--code-dim", type=int, default=defaults.code_dim, help="D")
    parser.add_argument("--channels", type=int, help="hidden channels (default: by kind of data)")
    parser.add_argument("--residual-channels", type=int, help="(default: by kind of data)")
    parser.add_argument("--downsample", type=int, help="a power of 2 (default: by kind of data)")
    parser.add_argument("--quantizer", choices=("ema", "loss"), default="ema", help="codebook learned by EMA or loss")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="commitment loss weight")
    return parser


# The options below when not given, by kind of data. Audio data sets are small (FSDD: 2,250 train clips), so
# smaller batches give more steps. Audio is downsampled by 8 (FSDD: 80 x 64 spectrograms -> 10 x 8 codes): a quarter
# of the codes of downsample 4 makes the prior's task easier, and its samples far more intelligible (README); FSDD
# with these: 24 epochs in about 6 minutes on 2 CPU cores. Images: chosen for MNIST's 60,000 digits within 20
# minutes on 2 CPU cores (README, results). Within a fixed time more updates beat a wider network: 64 hidden
# channels (about 70 s an epoch at batch 128 against 190 s for 128 channels) reach after 3 epochs what 128 reach
# after about 1.3. With 64 channels and K = 512, held-out PSNR after about 160 s of training: batch 128 and learning
# rate 1e-3: 24.8 dB; batch 128, 3e-3: 25.9; batch 32, 1e-3: 26.1; batch 64, 2e-3: 26.0. K = 512 codes: 27.01 dB
# after 4 epochs against 26.53 for 256.
DEFAULTS = {
    "image": {"epochs": 13, "batch_size": 64, "downsample": 4, "lr": 2e-3, "lr_schedule": "cosine",
              "channels": 64, "residual_channels": 32, "codebook_size": 512},
    "audio": {"epochs": 24, "batch_size": 32, "downsample": 8, "lr": 1e-3, "lr_schedule": "constant",
              "channels": 128, "residual_channels": 64, "codebook_size": 256},
}


@torch.no_grad()
def evaluate(
    model: VQVAE, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
    dist: Distributed = Distributed(),
) -> dict:
    """Held-out reconstruction MSE (on [0, 1]), PSNR of that MSE, commitment loss, perplexity and codes used; under
    torchrun each process evaluates its part of the split and the sums are added over the processes."""
    model.eval()
    usage = CodeUsage(model.config.codebook_size)
    part = dist.split(len(x))
    sq_err, commitment, n = 0.0, 0.0, 0
    for xb, _ in batching.batches(x[part], y[part], batch_size, device):
        out = model(xb)
        sq_err += float(((out.reconstruction.clamp(0, 1) - xb) ** 2).mean()) * len(xb)
        commitment += float(out.commitment_loss) * len(xb)
        usage.update(out.indices)
        n += len(xb)
    sq_err, commitment, n = dist.sum(sq_err, commitment, n)
    usage.counts = dist.sum_(usage.counts.to(device))
    mse = sq_err / n
    return {
        "test_mse": mse,
        "test_psnr": 10 * math.log10(1 / mse),
        "test_commitment": commitment / n,
        "test_perplexity": usage.perplexity,
        "test_codes_used": usage.codes_used,
    }


@torch.no_grad()
def save_reconstructions(
    model: VQVAE, x: torch.Tensor, path: Path, device: torch.device, spectrograms: bool, n: int = 32
) -> None:
    """Held-out originals (top rows) above their reconstructions (bottom rows)."""
    nrow = min(8, len(x))
    xb = x[: min(n, len(x)) // nrow * nrow]  # whole rows: a small held-out split has fewer than n
    xb = (xb.float() / 255 if xb.dtype == torch.uint8 else xb).to(device)  # (n, C, H, W)
    recon = model(xb).reconstruction.clamp(0, 1)
    grid = rearrange([xb, recon], "two (r c) ch h w -> (r two c) ch h w", c=nrow)
    figures.save_grid(grid, path, nrow, spectrograms)


def fit(out: str | Path, **options: Any) -> dict[str, Any]:
    """Fit a VQ-VAE into the folder ``out`` from Python: ``options`` are the command line's, named as in ``args``
    (``dataset="mnist"``, ``data_root=...``, ``epochs=4``, ``resume=True``, ...), the rest at their defaults.
    Returns the last epoch's metrics, as :func:`main`."""
    return main(cli.namespace(get_args_parser(), out=str(out), **options))


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the VQ-VAE; returns the last epoch's metrics (with ``kept`` and ``best_epoch``, as logged)."""
    cli.fill_defaults(args, DEFAULTS, data.modality_of(args.dataset))
    check_args(args)
    # one process, or one of torchrun's (pipelines/distributed.py)
    with fit_folder(args, "vqvae", metric="test_mse") as (run, dist, device):
        return fit_in(args, run, dist, device)


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, options that cannot make a VQ-VAE for a prior."""
    cli.check_common_args(args)
    cli.at_least(args, 2, "codebook_size")  # a prior over the codes needs two or more
    cli.positive(args, "beta", zero=True)
    cli.dataset_options(args)
    model_config(args, in_channels=args.channels_in or 1)


def model_config(args: argparse.Namespace, in_channels: int) -> VQVAEConfig:
    return cli.build_config(
        VQVAEConfig,
        in_channels=in_channels,
        channels=args.channels,
        residual_channels=args.residual_channels,
        downsample=args.downsample,
        code_dim=args.code_dim,
        codebook_size=args.codebook_size,
        ema=args.quantizer == "ema",
        beta=args.beta,
    )


def fit_in(args: argparse.Namespace, run: RunFolder, dist: Distributed, device: torch.device) -> dict[str, Any]:
    """The fit, in an output folder this process owns (``dist``: one of the processes of a data-parallel fit)."""
    state = run.start(args.resume)
    if state is not None:
        run.check_resumed_args(state, args)
    torch.manual_seed(args.seed)
    splits = data.load_dataset(args.dataset, args.data_root, **cli.dataset_options(args))
    x_train, y_train = batching.as_tensors(splits.train)
    x_test, y_test = batching.as_tensors(splits.test)
    lsd = None  # audio: the Griffin-Lim log-spectral distance on a fixed subset of held-out clips
    if splits.modality == "audio" and dist.is_main:
        lsd = HeldOutLSD(splits, x_test, args.lsd_clips, args.lsd_every, args.epochs, args.batch_size, device)
    config = model_config(args, in_channels=splits.sample_shape[0])
    model = VQVAE(config).to(device)
    optimizer = adam(model, args.lr)
    loader_generator = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    scheduler = lr_schedule(optimizer, args.lr_schedule, args.epochs * steps_per_epoch)
    precision = MixedPrecision(args.precision, device)
    if state is not None:
        run_folder.restore(state, model, optimizer, scheduler, loader_generator, precision=precision,
                           config=dataclasses.asdict(config), data=splits.spec)
    if args.compile:
        model.compile()  # in place: the state dict and the checkpoints are the plain module's
    forward = dist.wrap(model)  # model.forward, through DDP under torchrun
    dist.log(f"VQ-VAE: {sum(p.numel() for p in model.parameters()):,} parameters, data {splits.sample_shape}, "
             f"{len(x_train)} train / {len(x_test)} held-out, device {device}"
             + (f", {dist.world_size} processes" if dist.world_size > 1 else ""))
    info = {"data": splits.spec, "label_names": list(splits.label_names), "sample_shape": list(splits.sample_shape),
            "args": dict(vars(args))}

    for epoch in range(run.epochs_done, args.epochs):
        if run.patience_spent(args.patience):
            break
        model.train()
        usage = CodeUsage(config.codebook_size)
        t0 = time.perf_counter()
        steps = batching.batches(x_train, y_train, args.batch_size, device, loader_generator, dist.shard)
        bar = tqdm(steps, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress or not dist.is_main)
        finite = FiniteLoss(epoch + 1, steps_per_epoch, device, run.last_good)
        for step, (xb, _) in enumerate(bar, 1):
            with precision.autocast():
                out_b = forward(xb)
            precision.step(out_b.loss, optimizer)
            scheduler.step()
            usage.update(out_b.indices)
            finite.update(out_b.loss, step)
            if not bar.disable and bar.n % 20 == 0:  # reading a loss value waits for the device
                bar.set_postfix(mse=f"{float(out_b.reconstruction_loss):.4f}", ppl=f"{float(out_b.perplexity):.0f}")
        usage.counts = dist.sum_(usage.counts.to(device))
        metrics = {
            "epoch": epoch + 1,
            "train_seconds": time.perf_counter() - t0,
            "train_perplexity": usage.perplexity,
            "train_codes_used": usage.codes_used,
            **evaluate(model, x_test, y_test, args.batch_size, device, dist),
            **(lsd.metrics(model, epoch + 1) if lsd else {}),
            "codebook_size": config.codebook_size,
        }
        finite.check_epoch(model, "test_mse", metrics["test_mse"])
        dist.check_same(model.state_dict())  # the quantizer's state too: the same model in every process
        if dist.is_main:
            save_reconstructions(model, x_test, run.out / "reconstructions.png", device, splits.modality == "audio")
        training = run_folder.training_state(optimizer, scheduler, loader_generator, precision)
        metrics = run.save_epoch(model, metrics, info, training)
        dist.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return run.history[-1]


if __name__ == "__main__":
    cli.run(main, get_args_parser())
