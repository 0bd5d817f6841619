r"""Package a fitted VQ-VAE and prior as a pretrained model of the package, with a model card.

    python -m pipelines.package_model --name mnist --vqvae runs/mnist/vqvae.pt --prior runs/mnist-prior/prior.pt \
        --check runs/mnist-check.json

Loads both checkpoints as :meth:`vqvae_prior.VQPriorPipeline.from_checkpoints` does (the prior must have been
fitted on exactly these VQ-VAE weights), then copies them into the folder of pretrained models (``--root``; by
default the package's ``vqvae_prior/pretrained/``, or ``$VQVAE_PRIOR_PRETRAINED``) as ``NAME-vqvae.pt`` and
``NAME-prior.pt``, writes the model card ``NAME.md`` and records the three files' sizes and SHA-256 in
``manifest.json`` (:mod:`vqvae_prior.pretrained`). The folder holds at most 30 MB of models in all.

The card says only what the files record: the data set's spec and the digest of the items the VQ-VAE was fitted
on, each model's architecture, config, size, the fit's options (as the command that runs it again) and the git
commit of the code that wrote it (where the fit ran from a git checkout), the
held-out metrics of the epoch kept, and the figures of each ``--check`` report (``pipelines.image_check``,
``pipelines.audio_check``) of these two checkpoints. Then ``python -m pipelines.generate --pretrained NAME`` and
``VQPriorPipeline.from_pretrained("NAME")`` load it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipelines import cli
from vqvae_prior import pretrained
from vqvae_prior.checkpoint import load_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.files import writable_folder
from vqvae_prior.pipeline import VQPriorPipeline

NOT_OPTIONS = ("resume", "no_progress")  # recorded options that say how a fit ran, not what it made


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--name", required=True, help="the model's name: lower-case letters, digits, - and _")
    parser.add_argument("--vqvae", required=True, help="checkpoint written by pipelines.fit_vqvae")
    parser.add_argument("--prior", required=True, help="checkpoint written by pipelines.fit_prior over its codes")
    parser.add_argument("--check", nargs="+", default=[], metavar="REPORT",
                        help="reports of pipelines.image_check or pipelines.audio_check on these two checkpoints")
    parser.add_argument("--root", help=f"the folder of pretrained models (default: ${pretrained.ENV}, else the "
                                       "package's)")
    return parser


def read_report(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A check report of exactly ``--vqvae`` and ``--prior`` (as paths from here), else a one-line refusal."""
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"--check {path}: not a JSON report ({e})") from e
    if not isinstance(report, dict) or not {"vqvae", "prior", "args", "copying"} <= report.keys():
        raise UsageError(f"--check {path}: not a report of pipelines.image_check or pipelines.audio_check")
    for role in ("vqvae", "prior"):
        if Path(report[role]).resolve() != Path(getattr(args, role)).resolve():
            raise UsageError(f"--check {path} reports on the {role} {report[role]}, not --{role} "
                             f"{getattr(args, role)} (paths are compared from this folder)")
    return report


def command_line(module: str, options: dict[str, Any]) -> str:
    """The command that runs ``module`` with recorded ``options`` (None and False left out)."""
    words = [f"python -m pipelines.{module}"]
    for name, value in options.items():
        if value is None or value is False or name in NOT_OPTIONS:
            continue
        words.append(cli.flag(name))
        if value is not True:
            words.extend(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return " ".join(words)


def figures(metrics: dict[str, Any]) -> str:
    """The held-out figures an epoch logged, as ``name value`` pairs."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                     if k.startswith("test_"))


def code_version(source: dict[str, Any] | None) -> str:
    """The code a checkpoint says wrote it."""
    if not source:
        return "not recorded in the checkpoint"
    return f"git commit {source['commit']}" + (" with uncommitted changes" if source["modified"] else "")


def model_section(title: str, module: str, ckpt: dict[str, Any], path: Path) -> list[str]:
    """The card's lines on one checkpoint."""
    parameters = sum(t.numel() for t in ckpt["model"].values())
    return [
        f"## {title}", "",
        f"- architecture: `{ckpt['arch']}`, {parameters:,} parameters; config `{json.dumps(ckpt['config'])}`",
        f"- kept: epoch {ckpt.get('epoch')} ({ckpt.get('best', {}).get('metric')} the lowest); held-out "
        f"{figures(ckpt.get('metrics', {}))}",
        f"- fitted by: `{command_line(module, ckpt.get('args', {}))}`",
        f"- code: {code_version(ckpt.get('source'))}",
        f"- packaged from: `{path}`", "",
    ]


def check_section(path: Path, report: dict[str, Any]) -> list[str]:
    """The card's lines on one check report: its command and its figures."""
    module = "audio_check" if "families" in report else "image_check"
    lines = [f"## Check: {path.name}", "", f"- run by: `{command_line(module, report['args'])}`", ""]
    if module == "audio_check":  # each set's lowest mean over the judge families
        lines += ["| set | recognized (the lowest family mean) | std | by family |", "| --- | --- | --- | --- |"]
        for name, r in report["recognized"].items():
            by_family = ", ".join(f"{k} {v:.3f}" for k, v in r["by_family"].items())
            lines.append(f"| {name} | {r['accuracy']:.3f} ({r['family']} judges) | {r['std']:.3f} | {by_family} |")
    else:
        lines += ["| set | recognized | score | Frechet / real floor |", "| --- | --- | --- | --- |"]
        for name in ("real", "reconstructed", "generated"):
            r = report[name]
            ratio = f"{r['frechet']['ratio']:.2f} (m={r['frechet']['m']})" if "frechet" in r else ""
            accuracy = f"{r['accuracy']:.3f}" if "accuracy" in r else ""
            lines.append(f"| {name} (n={r['n']}) | {accuracy} | {r['inception_score']:.2f} | {ratio} |")
    c = report["copying"]
    lines += ["", f"- copying: {c['generated_exact_copies']} exact copies of train code maps among "
                  f"{c['generated_n']}; mean distance to the nearest {c['generated_mean_distance']:.3f} (held-out "
                  f"{c['held_out_mean_distance']:.3f})", ""]
    return lines


def summary(vq: dict[str, Any], prior: dict[str, Any]) -> str:
    """One line on the pair, from the checkpoints."""
    data = vq["data"]
    config = prior["config"].get("top", prior["config"])  # a two-level prior's levels share their classes
    classes = len(prior["label_names"]) if config.get("num_classes") else 0
    return (f"{data.get('modality')} model of {data.get('name')}: {vq['arch']} (K={vq['config']['codebook_size']}, "
            f"codes {'x'.join(map(str, prior['code_shape']))}) and {prior['arch']} prior"
            f"{f' over {classes} classes' if classes else ''}; held-out {figures(vq.get('metrics', {}))}; "
            f"{figures(prior.get('metrics', {}))}")


def card(name: str, args: argparse.Namespace, vq: dict[str, Any], prior: dict[str, Any],
         reports: dict[Path, dict[str, Any]], digests: dict[str, tuple[str, int]]) -> str:
    """The model card, in Markdown, of what the checkpoints and reports record."""
    data = vq["data"]
    lines = [
        f"# {name}", "", summary(vq, prior), "",
        "    from vqvae_prior import VQPriorPipeline", f'    pipe = VQPriorPipeline.from_pretrained("{name}")', "",
        "## Files", "", "| file | bytes | sha256 |", "| --- | --- | --- |",
        *(f"| {name}-{role}.pt | {size:,} | {digest} |" for role, (digest, size) in digests.items()), "",
        "## Data", "",
        f"- data set: `{json.dumps(data)}`; items {tuple(vq.get('sample_shape', ()))}, classes {vq['label_names']}",
        f"- digest of the items the VQ-VAE was fitted on (train and held-out): {vq.get('data_digest', 'not recorded')}",
        f"- the prior was fitted on the codes of VQ-VAE weights {prior['vqvae_digest']} (these)", "",
        *model_section("VQ-VAE", "fit_vqvae", vq, Path(args.vqvae)),
        *model_section("Prior", "fit_prior", prior, Path(args.prior)),
    ]
    for path, report in reports.items():
        lines += check_section(path, report)
    return "\n".join(lines).rstrip() + "\n"


def main(args: argparse.Namespace) -> pretrained.PretrainedPaths:
    try:
        pretrained.check_name(args.name)
    except UsageError as e:
        raise UsageError(f"--{e}") from None
    cli.check_inputs(args, "vqvae", "prior", files=True)
    for path in args.check:
        if not Path(path).is_file():
            raise UsageError(f"--check {path}: no such file")
    writable_folder(pretrained.folder(args.root), "--root")
    reports = {Path(path): read_report(Path(path), args) for path in args.check}
    VQPriorPipeline.from_checkpoints(args.vqvae, args.prior, "cpu")  # refuses a pair that does not belong together
    vq, prior = load_checkpoint(args.vqvae, "vqvae"), load_checkpoint(args.prior, "prior")
    digests = {role: (pretrained.sha256(p), Path(p).stat().st_size) for role, p in (("vqvae", args.vqvae),
                                                                                     ("prior", args.prior))}
    text = card(args.name, args, vq, prior, reports, digests)
    found = pretrained.add(args.name, args.vqvae, args.prior, text, summary(vq, prior), args.root)
    print(f"packaged {args.name} in {found.card.parent}: {found.vqvae.name}, {found.prior.name}, {found.card.name}")
    return found


console = cli.command(main, get_args_parser)  # the console command (pyproject.toml's [project.scripts])


if __name__ == "__main__":
    console()
