"""Intelligibility check of generated audio: does a classifier trained on real recordings recognize the class asked for?

    python -m pipelines.audio_check --vqvae runs/fsdd/vqvae.pt --prior runs/fsdd-prior/prior.pt \
        --out runs/fsdd-check.json

1. Trains a small CNN (:class:`SpectrogramClassifier`) on the real train split of the VQ-VAE's data set: the same
   spectrograms it was fitted on, rebuilt from the data spec in its checkpoint (``--data-root`` reads them from
   another folder). Seeded by ``--seed`` alone, so checks of different models on one data set share a classifier.
2. Classifies the real held-out clips three ways: their spectrograms as they are (``real``: the classifier's own
   accuracy); after a Griffin-Lim round trip, spectrogram -> ``invert`` -> ``spectrogram`` (``real_griffin_lim``:
   what the inversion alone costs); and after the VQ-VAE, spectrogram -> reconstruction -> ``invert`` ->
   ``spectrogram`` (``reconstructed_griffin_lim``: what the codes cost on top).
3. Calls :func:`pipelines.generate.generate` with every class repeated ``--repeat`` times (a class-conditional prior
   is required), re-analyses the waveforms with :func:`vqvae_prior.audio.spectrogram` and classifies them
   (``generated``), with the confusion matrix (rows: class asked for, columns: class recognized).
4. Checks that the prior does not merely replay its training data (``copying``): the distance from each generated
   code map to the nearest train code map (the fraction of positions whose codes differ, see
   :func:`pipelines.judge.nearest`),
   beside the same distance from each real held-out code map; and how many generated maps are exact copies.

Each accuracy is reported overall and per class. The JSON report goes to ``--out``. Seeded: the same arguments give
the same report on the same machine. FSDD with the defaults: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines import batching, cli, judge
from pipelines.generate import generate
from vqvae_prior.audio import SpectrogramConfig, invert, spectrogram
from vqvae_prior.checkpoint import load_checkpoint, load_vqvae


class SpectrogramClassifier(nn.Module):
    """A small CNN: normalized spectrograms (B, 1, T, F) -> class logits (B, num_classes); any F, T >= 16."""

    def __init__(self, num_classes: int, channels: int = 16) -> None:
        super().__init__()
        c = channels

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(
            nn.Conv2d(1, c, 5, stride=2, padding=2), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),  # F/4, T/4
            *block(c, 2 * c), nn.MaxPool2d(2),  # (B, 2c, F/8, T/8)
            *block(2 * c, 4 * c), nn.MaxPool2d(2),  # (B, 4c, F/16, T/16)
            *block(4 * c, 4 * c), nn.AdaptiveAvgPool2d((4, 4)),  # (B, 4c, 4, 4): coarse time-frequency layout
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * c * 16, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, num_classes)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqvae", required=True, help="checkpoint of an audio VQ-VAE (pipelines.fit_vqvae)")
    parser.add_argument("--prior", required=True, help="its class-conditional prior (pipelines.fit_prior)")
    parser.add_argument("--data-root", help="read the VQ-VAE's data set from this folder instead")
    parser.add_argument("--out", default="audio_check.json", help="JSON report")
    parser.add_argument("--repeat", type=int, default=50,
                        help="generated clips per class (50: a per-class accuracy within about +-7 points)")
    parser.add_argument("--temperature", type=float, default=1.0, help="of the prior")
    parser.add_argument("--epochs", type=int, default=12, help="classifier epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="classifier batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="classifier Adam learning rate")
    parser.add_argument("--channels", type=int, default=16, help="classifier width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    return parser


def train_classifier(
    x: Tensor, y: Tensor, num_classes: int, args: argparse.Namespace, device: torch.device
) -> tuple[SpectrogramClassifier, float]:
    """A :class:`SpectrogramClassifier` trained on spectrograms x (N, 1, T, F) and labels y (N,), and the seconds it
    took. Seeded by ``args.seed`` alone: the same classifier whichever VQ-VAE and prior are being checked."""
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = SpectrogramClassifier(num_classes, args.channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps_per_epoch)
    loader_generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        model.train()
        for xb, yb in batching.batches(x, y, args.batch_size, device, loader_generator):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model, time.perf_counter() - t0


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """Predicted classes (N,) of spectrograms x (N, 1, T, F)."""
    model.eval()
    return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(batch_size)])


def reanalyse(specs: np.ndarray, cfg: SpectrogramConfig) -> Tensor:
    """Spectrograms (N, T, F) in [0, 1] -> Griffin-Lim waveforms -> their spectrograms (N, 1, T, F)."""
    waves = np.stack([invert(s, cfg) for s in specs])  # (N, T_samples)
    return torch.from_numpy(spectrogram(waves, cfg)).unsqueeze(1)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the check; returns the report (also written to ``args.out``)."""
    device = cli.pick_device(args.device)
    vqvae, vq_ckpt = load_vqvae(args.vqvae, device)  # refuses an out-of-date audio checkpoint before any work
    vq_spec = vq_ckpt["data"]
    if vq_spec["modality"] != "audio":
        raise ValueError(f"{args.vqvae} was fitted on {vq_spec.get('name')!r}, not on audio (--dataset audio-folder)")
    if not load_checkpoint(args.prior, "prior")["config"]["num_classes"]:
        raise ValueError(f"{args.prior} is unconditional: fit it without --unconditional to ask for classes")
    if args.repeat < 1 or args.epochs < 1:
        raise ValueError(f"--repeat and --epochs must be >= 1, got {args.repeat} and {args.epochs}")
    cfg = SpectrogramConfig(**vq_spec["spectrogram"])
    splits = batching.load_splits(vq_spec, args.data_root)
    label_names = list(splits.label_names)
    x_train, y_train = batching.as_tensors(splits.train)  # (N, 1, T, F), (N,)
    x_test, y_test = batching.as_tensors(splits.test)

    # 1. the classifier, trained on real spectrograms only
    model, train_seconds = train_classifier(x_train, y_train, len(label_names), args, device)
    print(f"classifier: {sum(p.numel() for p in model.parameters()):,} parameters, {args.epochs} epochs on "
          f"{len(x_train)} real clips in {train_seconds:.0f} s")

    # 2. real held-out clips: as they are, after Griffin-Lim, after the VQ-VAE and Griffin-Lim
    with torch.no_grad():
        outputs = [vqvae(xb.to(device)) for xb in x_test.split(256)]
    recon = torch.cat([out.reconstruction.clamp(0, 1).cpu() for out in outputs])  # (N, 1, T, F)
    held_out_maps = torch.cat([out.indices.cpu() for out in outputs])  # (N, h, w), for step 4
    report_acc = {
        "real": judge.accuracy(predict(model, x_test, 256, device), y_test, label_names),
        "real_griffin_lim": judge.accuracy(predict(model, reanalyse(x_test[:, 0].numpy(), cfg), 256, device), y_test,
                                     label_names),
        "reconstructed_griffin_lim": judge.accuracy(predict(model, reanalyse(recon[:, 0].numpy(), cfg), 256, device),
                                              y_test, label_names),
    }

    # 3. generated clips of every class
    t0 = time.perf_counter()
    asked = torch.arange(len(label_names)).repeat_interleave(args.repeat)  # (n,)
    result = generate(args.vqvae, args.prior, len(asked), asked, args.temperature, args.seed, device)
    generated = torch.from_numpy(spectrogram(result.waveforms.numpy(), cfg)).unsqueeze(1)  # (n, 1, T, F)
    pred = predict(model, generated, 256, device)
    report_acc["generated"] = judge.accuracy(pred, asked, label_names)
    confusion = torch.zeros(len(label_names), len(label_names), dtype=torch.long)
    confusion.index_put_((asked, pred), torch.ones_like(pred), accumulate=True)  # (asked, recognized)
    generate_seconds = time.perf_counter() - t0

    # 4. copying: generated code maps beside the train and held-out ones
    train_maps = torch.cat([vqvae.encode(xb.to(device)).cpu() for xb in x_train.split(256)])  # (N, h, w)

    report = {
        "vqvae": str(args.vqvae),
        "prior": str(args.prior),
        "args": vars(args),
        "label_names": label_names,
        "classifier": {
            "parameters": sum(p.numel() for p in model.parameters()), "train_clips": len(x_train),
            "epochs": args.epochs, "train_seconds": train_seconds,
        },
        **report_acc,
        "generated_confusion": confusion.tolist(),
        "copying": judge.copying(result.codes, held_out_maps, train_maps),
        "generate_seconds": generate_seconds,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("real", "real_griffin_lim", "reconstructed_griffin_lim", "generated"):
        per_class = " ".join(f"{k}:{v:.2f}" for k, v in report[name]["per_class"].items())
        print(f"{name:>26}: accuracy {report[name]['accuracy']:.3f} (n={report[name]['n']})  {per_class}")
    c = report["copying"]
    print(f"nearest train code map, fraction of codes that differ: generated {c['generated_mean_distance']:.3f}, "
          f"real held-out {c['held_out_mean_distance']:.3f}; exact copies {c['generated_exact_copies']} of "
          f"{c['generated_n']}")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
