"""The command line that ``image_check`` and ``audio_check`` share: their options, the checks of those made before
any work, and the checkpoints they judge loaded as one pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines import cli
from vqvae_prior.checkpoint import load_checkpoint, weights_digest
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation.classifier import CACHE_DIR, ClassifierConfig
from vqvae_prior.files import writable_folder
from vqvae_prior.modality import Modality
from vqvae_prior.pipeline import VQPriorPipeline, guided
from vqvae_prior.registry import modality_of_spec

__all__ = ["add_check_args", "cache_dir", "check_shared_args", "digests", "load_pipeline"]


def add_check_args(
    parser: argparse.ArgumentParser, judged: type[Modality], epochs: int | None, batch_size: int, epochs_help: str
) -> argparse._ArgumentGroup:
    """The options that ``image_check`` and ``audio_check`` share; returns the classifier's group for more.
    ``judged``: the modality whose samples the check judges."""
    kind = judged.name
    parser.add_argument("--vqvae", required=True, help=f"checkpoint of a VQ-VAE of {judged.noun}s (pipelines.fit_vqvae)")
    parser.add_argument("--prior", required=True, help="its prior (pipelines.fit_prior)")
    parser.add_argument("--data-root", help="read the VQ-VAE's data set from this folder instead")
    parser.add_argument("--out", default=f"{kind}_check.json", help="JSON report (image_check: and the PNG of the "
                        "worst samples beside it)")
    cli.add_sampling(parser, "of the prior", "classifier-free guidance weight of the samples (> 0 needs a prior "
                     "fitted with --label-dropout)")
    parser.add_argument("--seed", type=int, default=0, help="of the samples and of the real halves")
    cli.add_device(parser)
    group = parser.add_argument_group("classifier")
    group.add_argument("--classifier-epochs", type=int, default=epochs, help=epochs_help)
    group.add_argument("--classifier-channels", type=int, default=ClassifierConfig.channels, help="width")
    group.add_argument("--classifier-batch-size", type=int, default=batch_size, help="its training batch")
    group.add_argument("--classifier-seed", type=int, default=0, help="of its initialization and training")
    group.add_argument("--cache-dir", default=str(CACHE_DIR), help="trained classifiers; 'none': no cache")
    return group


def check_shared_args(args: argparse.Namespace) -> Path:
    """Refuse, before any work, a shared option out of range (:func:`add_check_args`), checkpoints or a data root
    that do not exist, and a ``--cache-dir`` or ``--out`` that cannot be written (``--out`` a folder, or in a folder
    that cannot be made or written); returns ``--out`` as a path."""
    cli.sampling_settings(args)
    cli.at_least(args, 1, "classifier_epochs", "classifier_channels", "classifier_batch_size")
    cli.pick_device(args.device)
    cli.check_inputs(args, "vqvae", "prior", files=True)
    cli.check_inputs(args, "data_root")
    if cache_dir(args) is not None:
        writable_folder(args.cache_dir, "--cache-dir")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; expected the report's file name, e.g. {out / 'check.json'}")
    writable_folder(out.parent, f"--out {out}: its folder")
    return out


def cache_dir(args: argparse.Namespace) -> str | None:
    """The folder of ``--cache-dir``; None for 'none' (no cache)."""
    return None if args.cache_dir == "none" else args.cache_dir


def load_pipeline(args: argparse.Namespace, judged: type[Modality]) -> VQPriorPipeline:
    """``--vqvae`` and ``--prior`` as a checked :class:`vqvae_prior.VQPriorPipeline` on ``--device``; a VQ-VAE of
    another modality than ``judged`` is refused, naming the checks."""
    spec = load_checkpoint(args.vqvae, "vqvae").get("data", {})  # the modality first: the likelier mistake
    modality = modality_of_spec(spec)
    if not isinstance(modality, judged):
        raise UsageError(f"--vqvae {args.vqvae} was fitted on {modality.noun}s ({spec.get('name')!r}), not on "
                         f"{judged.noun}s; pipelines.image_check judges images, pipelines.audio_check recordings")
    pipe = VQPriorPipeline.from_checkpoints(args.vqvae, args.prior, cli.pick_device(args.device))
    args.temperature = pipe.temperature_or_default(args.temperature, "--temperature")  # as the report records it
    args.guidance = pipe.per_level(args.guidance, "--guidance")
    if guided(args.guidance) and pipe.prior.null_label is None:
        raise UsageError(f"--guidance {args.guidance}: {args.prior} was fitted without --label-dropout, so it has no "
                         "unconditional model to guide by; leave out --guidance")
    return pipe


def digests(pipe: VQPriorPipeline) -> dict[str, str]:
    """Digests of the weights judged, in a check's report: ``pipelines.check_summary`` pools reports of the same."""
    return {"vqvae": weights_digest(pipe.vqvae.state_dict()), "prior": weights_digest(pipe.prior.state_dict())}
