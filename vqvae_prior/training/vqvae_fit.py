"""Fitting a VQ-VAE to a data set of images or spectrograms: its options, its task for the fit loop, and the fit.

    from vqvae_prior.training import VQVAEFit, fit_vqvae

    fit_vqvae(VQVAEFit(out="runs/mnist", dataset="mnist", data_root="../shared/data/mnist", epochs=4))

Per epoch, on the held-out split: reconstruction MSE and PSNR, commitment loss, perplexity and codes used (and the
same code statistics over the training epoch); one line per epoch in ``OUT/metrics.jsonl``. The code statistics
``test_perplexity``, ``test_codes_used``, ``train_perplexity``, ``train_codes_used`` are the finest level's; a
two-level VQ-VAE (``levels=2``, :class:`vqvae_prior.vqvae2.VQVAE2`) adds its top level's as ``test_top_perplexity``,
``test_top_codes_used``, ``train_top_perplexity``, ``train_top_codes_used``. For recordings also the
log-spectral distance in dB between held-out clips and the Griffin-Lim waveforms of their reconstructed spectrograms
(``test_lsd_db``), beside the same distance for the original spectrograms (``ceiling_lsd_db``, what Griffin-Lim
alone costs, computed once per run); both on a fixed subset of ``lsd_clips`` clips spread evenly over the held-out
split, as Griffin-Lim is slow. Writes ``OUT/reconstructions.png`` (held-out originals above their reconstructions),
``OUT/vqvae.pt``, the epoch with the lowest held-out MSE so far (what a prior's fit reads), and
``OUT/vqvae-last.pt``, the last epoch with the training state that ``resume`` continues
(:mod:`vqvae_prior.training.run_folder`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

import data
from vqvae_prior.audio import Spectrograms
from vqvae_prior.checkpoint import weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation.lsd import HeldOutLSD
from vqvae_prior.quantizer import CodeUsage
from vqvae_prior.registry import AutoencoderArchitecture, autoencoder_architecture
from vqvae_prior.training.batching import as_tensors, batches
from vqvae_prior.training.distributed import Distributed, fit_folder
from vqvae_prior.training.loop import fit_in_folder
from vqvae_prior.training.options import FitOptions, at_least, build_config, flag, option, positive, with_defaults
from vqvae_prior.training.resume import check_options
from vqvae_prior.vqvae import VQVAE, VQVAEConfig
from vqvae_prior.vqvae2 import VQVAE2

__all__ = ["VQVAEFit", "VQVAETask", "fit_vqvae"]

_DEFAULT = VQVAEConfig()
# the options that are data-set options, and their names as data.load_dataset's keywords
DATASET_OPTIONS = {"image_size": "image_size", "channels_in": "channels", "representation": "representation",
                   "sample_rate": "sample_rate", "n_fft": "n_fft", "hop_length": "hop_length", "n_mels": "n_mels",
                   "n_frames": "n_frames", "label_pattern": "label_pattern"}
# the registered VQ-VAE (vqvae_prior.registry.AUTOENCODERS) of each number of code levels
ARCH_OF_LEVELS = {1: "vqvae", 2: "vqvae2"}
# the metrics' names of each level's code statistics, top first: the finest level's plain, the top's "top_"
LEVEL_NAMES = {1: ("",), 2: ("top_", "")}
FLOAT32_MAX = torch.finfo(torch.float32).max
# what a checkpoint written before --levels and --residual-blocks existed was fitted with
LEGACY = {"levels": 1, "residual_blocks": 2}


@dataclass(frozen=True)
class VQVAEFit(FitOptions):
    """The options of a VQ-VAE fit; those left None take the defaults of the data's modality."""

    dataset: str = option("mnist-sample", "the data set (data/__init__.py)", choices=data.DATASETS)
    data_root: str | None = option(None, "folder (or file) of the data set")
    image_size: tuple[int, ...] | None = option(None, "image-folder: resize to H [W]", nargs="+")
    channels_in: int | None = option(None, "images: grayscale (1; of RGB by the ITU-R 601 luma weights) or RGB (3; "
                                     "gray repeated); default: as stored (image-folder: as its first image)",
                                     choices=(1, 3))
    representation: str | None = option(None, "audio-folder: log-mel or log-magnitude STFT (default: mel)",
                                        choices=("stft", "mel"))
    sample_rate: int | None = option(None, "audio-folder: resample every clip to this rate (default: 8000)")
    n_fft: int | None = option(None, "audio-folder: FFT size; stft images have n_fft // 2 + 1 rows (default: 254)")
    hop_length: int | None = option(None, "audio-folder: samples between frames (default: 64)")
    n_mels: int | None = option(None, "audio-folder: mel bands, the rows of mel images")
    n_frames: int | None = option(None, "audio-folder: frames per clip (default: the 95th percentile of train "
                                  "lengths)")
    label_pattern: str | None = option(None, "audio-folder: regex with a named group 'label' (default: FSDD file "
                                       "names)")
    lsd_clips: int = option(64, "recordings: held-out clips for the log-spectral distance; 0: all")
    lsd_every: int = option(5, "recordings: the log-spectral distance every N epochs and after the last")
    out: str = option("runs/vqvae", "output folder")
    codebook_size: int | None = option(None, "K, the codes of the codebook")
    code_dim: int = option(_DEFAULT.code_dim, "D, the dimension of a code")
    channels: int | None = option(None, "hidden channels")
    residual_channels: int | None = option(None, "channels inside the residual blocks")
    residual_blocks: int = option(_DEFAULT.num_residual_blocks, "residual blocks in each encoder and decoder")
    downsample: int | None = option(None, "a power of 2: pixels per code along each axis (of the finest level)")
    levels: int | None = option(None, "code levels: 1 (VQ-VAE) or 2 (VQ-VAE-2: a top map at twice the downsampling)",
                                choices=(1, 2))
    quantizer: str = option("ema", "codebook learned by EMA or by its loss", choices=("ema", "loss"))
    beta: float = option(_DEFAULT.beta, "commitment loss weight")

    def resolved(self) -> VQVAEFit:
        """The options with the modality's defaults filled in, checked before any work."""
        defaults = data.modality_of(self.dataset).vqvae_defaults
        options = with_defaults(self, defaults, self.levels if self.levels is not None else defaults["levels"])
        options.check()
        return options

    def check(self) -> None:
        super().check()
        at_least(self, 2, "codebook_size")  # a prior over the codes needs two or more
        at_least(self, 0, "lsd_clips")
        at_least(self, 0, "residual_blocks")
        at_least(self, 1, "lsd_every")
        positive(self, "beta", zero=True)
        if self.beta > FLOAT32_MAX:  # inf in the loss, at the first step
            raise UsageError(f"--beta {self.beta:g} is beyond float32, whose largest number is {FLOAT32_MAX:.3g}")
        self.dataset_options()
        self.model_config(in_channels=self.channels_in or 1)

    def dataset_options(self) -> dict[str, Any]:
        """The data-set options given, as ``data.load_dataset`` keywords; those the data set does not take are
        refused."""
        given = {name: getattr(self, name) for name in DATASET_OPTIONS if getattr(self, name) is not None}
        takes = data.loader_options(self.dataset)
        wrong = [name for name in given if DATASET_OPTIONS[name] not in takes]
        if wrong:
            raise UsageError(f"{', '.join(map(flag, wrong))} does not apply to --dataset {self.dataset}")
        if self.image_size is not None and (len(self.image_size) > 2 or min(self.image_size) < 1):
            raise UsageError(f"--image-size takes S (S x S) or H W, each >= 1; got {' '.join(map(str, self.image_size))}")
        options = {DATASET_OPTIONS[name]: value for name, value in given.items()}
        if self.image_size is not None:
            options["image_size"] = tuple(self.image_size) if len(self.image_size) == 2 else self.image_size[0]
        return options

    def model_config(self, in_channels: int) -> VQVAEConfig:
        """The config of the VQ-VAE of ``levels`` levels (its class in ``vqvae_prior.registry.AUTOENCODERS``)."""
        return build_config(self.architecture().config, in_channels=in_channels, channels=self.channels,
                            residual_channels=self.residual_channels, num_residual_blocks=self.residual_blocks,
                            downsample=self.downsample, code_dim=self.code_dim, codebook_size=self.codebook_size,
                            ema=self.quantizer == "ema", beta=self.beta)

    def architecture(self) -> AutoencoderArchitecture:
        """The registered VQ-VAE of ``levels`` levels: its model class and config class."""
        return autoencoder_architecture(ARCH_OF_LEVELS[self.levels])


class VQVAETask:
    """A VQ-VAE and its data set, for :func:`vqvae_prior.training.loop.train`."""

    train_method = "forward"

    def __init__(self, options: VQVAEFit, dist: Distributed, device: torch.device) -> None:
        self.options, self.device = options, device
        self.splits = data.load_dataset(options.dataset, options.data_root, **options.dataset_options())
        self.model = options.architecture().model(options.model_config(self.splits.sample_shape[0])).to(device)
        try:
            self.model.code_shape(self.splits.sample_shape)
        except ValueError as e:
            raise UsageError(f"--dataset {options.dataset} (items {self.splits.sample_shape}) does not fit --levels "
                             f"{options.levels} --downsample {options.downsample}: {e}") from e
        self.x_train, self.y_train = as_tensors(self.splits.train)
        self.x_test, self.y_test = as_tensors(self.splits.test)
        self.modality = self.splits.modality
        self.lsd = None  # recordings: the Griffin-Lim log-spectral distance on a fixed subset of held-out clips
        if isinstance(self.modality, Spectrograms) and dist.is_main:
            self.lsd = HeldOutLSD(self.splits, self.x_test, options.lsd_clips, options.lsd_every, options.epochs,
                                  options.batch_size, device)
        self.steps_per_epoch = math.ceil(len(self.x_train) / options.batch_size)
        self.info = {"data": self.splits.spec, "label_names": list(self.splits.label_names),
                     "sample_shape": list(self.splits.sample_shape), "args": dataclasses.asdict(options),
                     "data_digest": weights_digest([self.x_train, self.y_train, self.x_test, self.y_test])}
        dist.log(f"VQ-VAE: {sum(p.numel() for p in self.model.parameters()):,} parameters, data "
                 f"{self.splits.sample_shape}, {len(self.x_train)} train / {len(self.x_test)} held-out, device {device}"
                 + (f", {dist.world_size} processes" if dist.world_size > 1 else ""))

    def batches(self, generator: torch.Generator, dist: Distributed):
        self.usage = LevelUsage(self.model)  # the training epoch's codes
        return batches(self.x_train, self.y_train, self.options.batch_size, self.device, generator, dist.shard)

    def loss(self, forward, batch) -> torch.Tensor:
        self.out = forward(batch[0])
        self.usage.update(self.out.level_indices)
        return self.out.loss

    def progress(self, loss: torch.Tensor) -> dict[str, str]:
        return {"mse": f"{float(self.out.reconstruction_loss):.4f}", "ppl": f"{float(self.out.perplexity):.0f}"}

    def epoch_metrics(self, epoch: int, dist: Distributed) -> dict[str, Any]:
        return {
            **self.usage.metrics("train", dist, self.device),
            **evaluate(self.model, self.x_test, self.y_test, self.options.batch_size, self.device, dist),
            **(self.lsd.metrics(self.model, epoch) if self.lsd else {}),
            "codebook_size": self.model.config.codebook_size,
        }

    def pictures(self, out: Path) -> None:
        save_reconstructions(self.model, self.x_test, out / "reconstructions.png", self.device, self.modality)


class LevelUsage:
    """The code usage of each level of a VQ-VAE over many batches (:class:`vqvae_prior.quantizer.CodeUsage`)."""

    def __init__(self, model: VQVAE | VQVAE2) -> None:
        self.levels = [CodeUsage(model.config.codebook_size) for _ in range(model.levels)]  # top first

    def update(self, level_indices: tuple[torch.Tensor, ...]) -> None:
        """Add the code maps of one batch, top first (``VQVAEOutput.level_indices``)."""
        for usage, indices in zip(self.levels, level_indices, strict=True):
            usage.update(indices)

    def metrics(self, split: str, dist: Distributed, device: torch.device) -> dict[str, Any]:
        """``{split}_perplexity`` and ``{split}_codes_used`` of the finest level, then ``{split}_top_...`` of the top
        one when there are two; the counts summed over the processes first."""
        metrics = {}
        for usage, name in reversed(list(zip(self.levels, LEVEL_NAMES[len(self.levels)]))):
            usage.counts = dist.sum_(usage.counts.to(device))
            metrics |= {f"{split}_{name}perplexity": usage.perplexity, f"{split}_{name}codes_used": usage.codes_used}
        return metrics


@torch.no_grad()
def evaluate(
    model: VQVAE | VQVAE2, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
    dist: Distributed = Distributed(),
) -> dict:
    """Held-out reconstruction MSE (on [0, 1]), PSNR of that MSE, commitment loss (of every level), perplexity and
    codes used (of each level: module docstring); under torchrun each process evaluates its part of the split and the
    sums are added over the processes."""
    model.eval()
    usage = LevelUsage(model)
    part = dist.split(len(x))
    sq_err, commitment, n = 0.0, 0.0, 0
    for xb, _ in batches(x[part], y[part], batch_size, device):
        out = model(xb)
        sq_err += float(((out.reconstruction.clamp(0, 1) - xb) ** 2).mean()) * len(xb)
        commitment += float(out.commitment_loss) * len(xb)
        usage.update(out.level_indices)
        n += len(xb)
    sq_err, commitment, n = dist.sum(sq_err, commitment, n)
    mse = sq_err / n
    return {
        "test_mse": mse,
        "test_psnr": 10 * math.log10(1 / mse),
        "test_commitment": commitment / n,
        **usage.metrics("test", dist, device),
    }


@torch.no_grad()
def save_reconstructions(model: VQVAE | VQVAE2, x: torch.Tensor, path: Path, device: torch.device, modality: Any,
                         n: int = 32) -> None:
    """Held-out originals (top rows) above their reconstructions (bottom rows), drawn by the data's modality."""
    nrow = min(8, len(x))
    xb = x[: min(n, len(x)) // nrow * nrow]  # whole rows: a small held-out split has fewer than n
    xb = (xb.float() / 255 if xb.dtype == torch.uint8 else xb).to(device)  # (n, C, H, W)
    recon = model(xb).reconstruction.clamp(0, 1)
    grid = rearrange([xb, recon], "two (r c) ch h w -> (r two c) ch h w", c=nrow)
    modality.save_grid(grid, path, nrow)


def fit_vqvae(options: VQVAEFit) -> dict[str, Any]:
    """Fit a VQ-VAE into ``options.out`` (one process, or one of torchrun's); returns the last epoch's metrics, with
    ``kept`` and ``best_epoch`` as logged."""
    options = options.resolved()
    with fit_folder(options, "vqvae", metric="test_mse") as (run, dist, device):
        state = run.start(options.resume)
        if state is not None:
            check_options(run, state, options, legacy=LEGACY)
        torch.manual_seed(options.seed)
        task = VQVAETask(options, dist, device)
        if state is not None and state.get("data_digest", task.info["data_digest"]) != task.info["data_digest"]:
            raise UsageError(f"--resume: the data set {options.data_root or options.dataset} changed since the fit in "
                             f"{run.out} began (the digest of its items was {state['data_digest']}, is "
                             f"{task.info['data_digest']}): a resumed fit trains on the data it began with; restore "
                             "the data, or start a new fit in another --out")
        return fit_in_folder(task, options, run, dist, state, config=dataclasses.asdict(task.model.config),
                             data=task.splits.spec)
