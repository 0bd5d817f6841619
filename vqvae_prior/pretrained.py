"""Pretrained models shipped in the package: a VQ-VAE and a prior under one name, checked against a manifest.

    from vqvae_prior import VQPriorPipeline, pretrained

    pretrained.available()                          # {"NAME": "one-line summary", ...}
    pipe = VQPriorPipeline.from_pretrained("NAME")  # both checkpoints verified, then loaded (weights only)

The models live in one folder, the package's ``vqvae_prior/pretrained/`` (shipped by ``pip install`` as package
data), unless a ``root`` argument or the environment variable ``VQVAE_PRIOR_PRETRAINED`` names another::

    manifest.json     {"format": "vqvae_prior-pretrained", "version": 1,
                       "models": {NAME: {"summary": "...",
                                         "files": {"vqvae": {"file": "NAME-vqvae.pt", "sha256": "...", "bytes": N},
                                                   "prior": {...}, "card": {"file": "NAME.md", ...}}}}}
    NAME-vqvae.pt     written by pipelines.fit_vqvae
    NAME-prior.pt     written by pipelines.fit_prior over that VQ-VAE's codes
    NAME.md           the model card: how the two were fitted, on what data, and how well they do

:func:`paths` checks each file's size and SHA-256 against the manifest before anything reads it: a changed or
damaged file is refused in one line naming it and both digests. The checkpoints themselves are then read as every
checkpoint is (``vqvae_prior.checkpoint``: ``torch.load(weights_only=True)``, models rebuilt from their configs).
``pipelines.package_model`` adds a model (:func:`add`), at most :data:`MAX_BYTES` in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqvae_prior.errors import CheckpointError, UsageError
from vqvae_prior.files import atomic_write

__all__ = [
    "ENV", "LIST", "MAX_BYTES", "PretrainedPaths", "add", "available", "check_name", "folder", "paths", "read_manifest", "sha256",
]

ENV = "VQVAE_PRIOR_PRETRAINED"  # the environment variable naming another folder of pretrained models
FORMAT, VERSION = "vqvae_prior-pretrained", 1
MANIFEST = "manifest.json"
MAX_BYTES = 30_000_000  # every file of the folder together: the package stays a reasonable download
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # a name is part of file names: lower case, digits, - and _
ROLES = ("vqvae", "prior", "card")
LIST = "list"  # no model's name: ``generate --pretrained list`` lists them


@dataclass(frozen=True)
class PretrainedPaths:
    """The verified files of one pretrained model."""

    vqvae: Path
    prior: Path
    card: Path


def folder(root: str | Path | None = None) -> Path:
    """The folder of pretrained models: ``root``, else ``$VQVAE_PRIOR_PRETRAINED``, else the package's own."""
    if root is None:
        root = os.environ.get(ENV) or Path(__file__).resolve().parent / "pretrained"
    return Path(root)


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: str | Path | None = None) -> dict[str, Any]:
    """The manifest of the folder (an empty one where the folder has none); one that is not this format's is
    refused naming the file."""
    path = folder(root) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "version": VERSION, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} cannot be read as a manifest of pretrained models ({e})") from e
    manifest = manifest if isinstance(manifest, dict) else {}
    models = manifest.get("models")
    if manifest.get("format") != FORMAT or not isinstance(models, dict) or not all(
        isinstance(entry, dict) for entry in models.values()
    ):
        raise CheckpointError(f"{path} is not a manifest of pretrained models (expected format {FORMAT!r}, models "
                              "by name)")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(f"{path} has manifest version {manifest.get('version')!r}; this code reads up to "
                              f"{VERSION} (update vqvae_prior)")
    return manifest


def available(root: str | Path | None = None) -> dict[str, str]:
    """The names of the pretrained models, sorted, each with its one-line summary."""
    return {name: entry.get("summary", "") for name, entry in sorted(read_manifest(root)["models"].items())}


def paths(name: str, root: str | Path | None = None) -> PretrainedPaths:
    """The files of the pretrained model ``name``, each checked against the manifest (size, then SHA-256); an
    unknown name is refused naming the known ones, a changed file naming it and both digests."""
    where = folder(root)
    models = read_manifest(root)["models"]
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise UsageError(f"no pretrained model is named {name!r}; those in {where} are: {known}")
    files = models[name].get("files", {})
    found = {}
    for role in ROLES:
        entry = files.get(role)
        if not isinstance(entry, dict) or not {"file", "sha256", "bytes"} <= entry.keys():
            raise CheckpointError(f"{where / MANIFEST}: the entry of {name!r} lacks its {role} file's name, size or "
                                  "sha256")
        path = where / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}, the {role} file of the pretrained model {name!r}, is missing")
        size = path.stat().st_size
        actual = sha256(path) if size == entry["bytes"] else f"(not read: {size} bytes, not {entry['bytes']})"
        if actual != entry["sha256"]:
            raise CheckpointError(f"{path} has been changed or damaged: sha256 expected {entry['sha256']}, actual "
                                  f"{actual}; reinstall it (or package the model again)")
        found[role] = path
    return PretrainedPaths(**found)


def check_name(name: str) -> str:
    """``name`` when it can name a pretrained model (and its files); else a :class:`UsageError`."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name == LIST:
        raise UsageError(f"name {name!r}: expected 1 to 40 lower-case letters, digits, - or _ (it names files), "
                         f"starting with a letter or digit, other than {LIST!r}")
    return name


def add(name: str, vqvae: str | Path, prior: str | Path, card: str, summary: str,
        root: str | Path | None = None) -> PretrainedPaths:
    """Copy two checkpoints into the folder as the pretrained model ``name`` (replacing one of that name), write
    its card, and record the three files' sizes and SHA-256 in the manifest, which is rewritten atomically last:
    until then the manifest names the files as they were. Refused before anything is written when the folder
    would hold more than :data:`MAX_BYTES`."""
    check_name(name)
    where = folder(root)
    manifest = read_manifest(root)
    card_bytes = card.encode()
    sources = {"vqvae": Path(vqvae), "prior": Path(prior)}
    others = sum(entry["bytes"] for other, model in manifest["models"].items() if other != name
                 for entry in model.get("files", {}).values())  # fmt: skip
    total = others + sum(p.stat().st_size for p in sources.values()) + len(card_bytes)
    if total > MAX_BYTES:
        raise UsageError(f"the pretrained models in {where} would take {total:,} bytes with {name!r}; the package "
                         f"holds at most {MAX_BYTES:,} of them (a smaller model, or fewer models)")
    targets = {"vqvae": where / f"{name}-vqvae.pt", "prior": where / f"{name}-prior.pt", "card": where / f"{name}.md"}
    for role, source in sources.items():
        with open(source, "rb") as src:
            atomic_write(targets[role], lambda f: shutil.copyfileobj(src, f))
    atomic_write(targets["card"], lambda f: f.write(card_bytes))
    files = {role: {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}
             for role, path in targets.items()}  # fmt: skip
    manifest["models"][name] = {"summary": " ".join(summary.split()), "files": files}
    manifest["models"] = dict(sorted(manifest["models"].items()))
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(where / MANIFEST, lambda f: f.write(text.encode()))
    return PretrainedPaths(**targets)
