"""The output folder of a fit: one fit at a time, its best and its last epoch, metrics that match its checkpoints.

Files in ``OUT`` (NAME is ``vqvae`` or ``prior``):

* ``NAME.pt``: the best epoch so far by the held-out metric (lowest ``test_mse``, ``test_bits_per_code``), what
  ``fit_prior`` and ``generate`` read;
* ``NAME-last.pt``: the last epoch done with the whole training state (optimizer, schedule, random state, the
  metrics of every epoch, the best epoch), what ``--resume`` continues;
* ``metrics.jsonl``: one line per epoch done, each epoch once; ``kept``: whether the epoch became ``NAME.pt``,
  ``best_epoch``: the epoch ``NAME.pt`` holds after it;
* ``fit.lock``: while a fit runs, its pid and command line.

Every file is written atomically (:func:`vqvae_prior.files.atomic_write`). After each epoch the fit writes
``NAME-last.pt``, then ``NAME.pt`` if the epoch is the best so far, then ``metrics.jsonl`` from ``NAME-last.pt``'s
history. ``NAME-last.pt`` is the record: a kill between two writes leaves the later files behind it, and ``--resume``
brings them up to it (``NAME.pt`` from its weights when its best epoch is its last one, ``metrics.jsonl`` from its
history) before it goes on. So a resumed fit never repeats or mixes epochs, and it ends with the weights of an
uninterrupted fit.

Both checkpoints also record the code that wrote them, ``source``: the git commit of the checkout the package runs
from and whether its tracked files differ from it (:func:`source_version`; None in an installed package), so that
a model card can say which code made a model.

One fit per folder: a fit holds the folder's lock (:mod:`vqvae_prior.training.lock`) for its lifetime. What a
resumed fit may change, and how its state is put back: :mod:`vqvae_prior.training.resume`.

Under torchrun (:mod:`vqvae_prior.training.distributed`) the process of rank 0 owns the folder; the others open it with
``writer=False``: they check and read what rank 0 does (the same refusals, the checkpoint to resume) and keep the
same history, but take no lock and write nothing.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from vqvae_prior.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vqvae_prior.errors import Interrupted
from vqvae_prior.files import atomic_save, atomic_write, signals_held
from vqvae_prior.training.lock import FitLock, RunFolderError

__all__ = ["RunFolder", "RunFolderError", "has_fit"]

KINDS = ("vqvae", "prior")
TRAINING_KEYS = ("optimizer", "lr_scheduler", "rng", "history", "scaler")  # only in NAME-last.pt


class RunFolder:
    """``OUT`` of one fit, owned for the lifetime of a ``with`` block (see the module docstring).

    Args:
        out: the folder; created when missing.
        kind: "vqvae" or "prior": the checkpoints are ``OUT/KIND.pt`` and ``OUT/KIND-last.pt``.
        metric: the held-out metric (lower is better) that picks the best epoch.
        writer: False in the processes of a data-parallel fit other than rank 0: they read the folder, never write.
    """

    def __init__(self, out: str | Path, kind: str, metric: str, writer: bool = True) -> None:
        self.out, self.kind, self.metric, self.writer = Path(out), kind, metric, writer
        self.best_path = self.out / f"{kind}.pt"
        self.last_path = self.out / f"{kind}-last.pt"
        self.metrics_path = self.out / "metrics.jsonl"
        self.epochs_done = 0
        self.history: list[dict[str, Any]] = []  # the metrics of every epoch done
        self.best: dict[str, Any] | None = None  # {"epoch", "metric", "value"} of the epoch in KIND.pt
        self.resumes: list[dict[str, Any]] = []  # options changed by --resume: {"epoch", "changed": {name: [old, new]}}
        self._lock: FitLock | None = None
        self.source = source_version() if writer else None

    # ------------------------------------------------------------------------------------------ lifetime

    def __enter__(self) -> RunFolder:
        if self.writer:
            self._lock = FitLock(self.out).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    # ------------------------------------------------------------------------------------------ start

    def start(self, resume: bool) -> dict[str, Any] | None:
        """Check the folder against ``--resume``; returns the checkpoint to resume from, None for a new fit.

        A new fit refuses a folder that holds a fit, and removes a ``metrics.jsonl`` left without one. A resumed
        fit first brings ``KIND.pt`` and ``metrics.jsonl`` up to ``KIND-last.pt``. A checkpoint written before
        ``KIND-last.pt`` existed, a ``KIND.pt`` with training state, resumes too.
        """
        if not resume:
            for path in (self.best_path, self.last_path):
                if path.exists():
                    raise RunFolderError(f"{path} already exists: pass --resume to continue that fit, or another "
                                         "--out folder")
            for other in set(KINDS) - {self.kind}:
                for path in (self.out / f"{other}.pt", self.out / f"{other}-last.pt"):
                    if path.exists():
                        raise RunFolderError(f"{self.out} holds a {other} fit ({path.name}): give this {self.kind} "
                                             "fit its own --out, as their metrics.jsonl would mix")
            if self.metrics_path.exists() and self.writer:
                print(f"removing {self.metrics_path}: it was left by a fit that wrote no checkpoint", file=sys.stderr)
                self.metrics_path.unlink()
            return None
        source = self.last_path if self.last_path.is_file() else self.best_path
        if not source.is_file():
            raise RunFolderError(f"--resume: there is no fit to resume in {self.out} (no {self.last_path.name} or "
                                 f"{self.best_path.name})")
        state = load_checkpoint(source, self.kind)
        if "optimizer" not in state:
            raise RunFolderError(f"--resume: {source} holds no training state to continue from")
        self.epochs_done = state["epoch"]
        if source == self.last_path:
            self.history, self.best = list(state["history"]), state["best"]
            self.resumes = list(state.get("resumes", []))
            if self.best["epoch"] != state["epoch"]:
                self._check_best_saved(state)
            elif self.writer and self._best_epoch_saved() != state["epoch"]:
                atomic_save({k: v for k, v in state.items() if k not in TRAINING_KEYS}, self.best_path)
        else:  # written before KIND-last.pt: KIND.pt held the last epoch, and metrics.jsonl may run ahead of it
            self.history = self._logged_history(state["epoch"])
            if not self.history or self.history[-1]["epoch"] != state["epoch"]:
                self.history.append(state["metrics"])
            self.best = {"epoch": state["epoch"], "metric": self.metric, "value": state["metrics"][self.metric]}
        self.write_metrics()
        return state

    def _check_best_saved(self, state: dict[str, Any]) -> None:
        """Before resuming a fit whose best epoch is not its last: ``KIND.pt`` must hold that epoch, as it cannot be
        rebuilt from ``KIND-last.pt``. A corrupt or other one is refused; a missing one (deleted to go on) is
        rebuilt from the last epoch, which becomes the best so far, with a warning."""
        best = self.best["epoch"]
        if self.best_path.exists():
            try:
                saved = load_checkpoint(self.best_path, self.kind)["epoch"]
                problem = None if saved == best else f"holds epoch {saved}"
            except CheckpointError as e:
                problem = f"cannot be read ({e})"
            if problem is not None:
                raise RunFolderError(f"--resume: {self.best_path} {problem}, but {self.last_path.name} records epoch "
                                     f"{best} as the best, which only {self.best_path.name} held: restore it, or "
                                     f"delete it to go on with epoch {state['epoch']} as the best so far")
            return
        print(f"warning: {self.best_path} is missing, the best epoch ({best}) with it; going on with epoch "
              f"{state['epoch']} as the best so far", file=sys.stderr)
        self.best = {"epoch": state["epoch"], "metric": self.metric, "value": state["metrics"][self.metric]}
        if self.writer:
            atomic_save({k: v for k, v in state.items() if k not in TRAINING_KEYS} | {"best": self.best},
                        self.best_path)

    def _best_epoch_saved(self) -> int | None:
        try:
            return load_checkpoint(self.best_path, self.kind)["epoch"]
        except CheckpointError:
            return None

    def _logged_history(self, epochs: int) -> list[dict[str, Any]]:
        """The last line logged for each of the first ``epochs`` epochs in metrics.jsonl."""
        by_epoch: dict[int, dict[str, Any]] = {}
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.is_file() else []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epochs:
                by_epoch[record["epoch"]] = record
        return [by_epoch[e] for e in sorted(by_epoch)]

    # ------------------------------------------------------------------------------------------ per epoch

    def patience_spent(self, patience: int | None) -> bool:
        """Whether the held-out metric has not improved for ``patience`` epochs (None: never); says so if it has."""
        spent = bool(patience) and self.best is not None and self.epochs_done - self.best["epoch"] >= patience
        if spent and self.writer:
            print(f"stopped after epoch {self.epochs_done}: the held-out {self.metric} has not improved for "
                  f"{patience} epochs; {self.best_path} holds epoch {self.best['epoch']}")
        return spent

    def save_epoch(
        self, model: torch.nn.Module, metrics: dict[str, Any], info: dict[str, Any], training: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the epoch just done: ``KIND-last.pt``, ``KIND.pt`` if it is the best so far, ``metrics.jsonl``; a
        Ctrl-C, SIGTERM or SIGHUP received meanwhile takes effect once all three are written.

        Args:
            model: the model after the epoch.
            metrics: its metrics, with ``epoch`` and the held-out metric.
            info: what both checkpoints hold beside the model (data spec, label names, args, ...).
            training: what ``KIND-last.pt`` holds to resume (:func:`training_state`).

        Returns:
            the metrics with ``kept`` and ``best_epoch``: the line written to metrics.jsonl.
        """
        value = metrics[self.metric]
        kept = self.best is None or value < self.best["value"]
        best = {"epoch": metrics["epoch"], "metric": self.metric, "value": value} if kept else self.best
        record = {**metrics, "kept": kept, "best_epoch": best["epoch"]}
        history = [*self.history, record]
        both = {**info, "epoch": metrics["epoch"], "metrics": record, "best": best, "resumes": self.resumes,
                "source": self.source}
        with signals_held():  # an interrupt takes effect once the epoch's files are all written
            if self.writer:
                save_checkpoint(self.last_path, self.kind, model, **both, **training, history=history)
                if kept:
                    save_checkpoint(self.best_path, self.kind, model, **both)
            self.history, self.best, self.epochs_done = history, best, metrics["epoch"]
            self.write_metrics()
        return record

    def write_metrics(self) -> None:
        if not self.writer:
            return
        text = "".join(json.dumps(record) + "\n" for record in self.history)
        atomic_write(self.metrics_path, lambda f: f.write(text.encode()))

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A ``with`` block whose ``KeyboardInterrupt`` (Ctrl-C; SIGTERM and SIGHUP under ``pipelines.cli.run``)
        becomes :class:`Interrupted`, saying which epochs the checkpoints hold and how to go on."""
        try:
            yield
        except Interrupted:
            raise
        except KeyboardInterrupt:
            if not self.history:
                raise Interrupted(f"interrupted in epoch 1, before any checkpoint: nothing was written to "
                                  f"{self.out}") from None
            raise Interrupted(f"interrupted after epoch {self.epochs_done}: {self.last_good()}; --resume continues "
                              "the fit") from None

    def last_good(self) -> str:
        """Which checkpoints hold the last good state, for error messages."""
        if not self.history:
            return f"no checkpoint was written to {self.out}"
        return (f"{self.last_path} (epoch {self.epochs_done}) and {self.best_path} (epoch {self.best['epoch']}, the "
                "best) are left as they were")


def has_fit(out: str | Path, kind: str) -> bool:
    """Whether ``out`` holds a fit of ``kind`` that ``--resume`` can continue."""
    return any((Path(out) / name).is_file() for name in (f"{kind}-last.pt", f"{kind}.pt"))


def source_version() -> dict[str, Any] | None:
    """``{"commit": SHA, "modified": bool}``: the git commit of the checkout this package runs from, and whether
    its tracked files differ from it; None where the package is not a git checkout's (installed) or git is absent."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / ".git").exists():
        return None
    try:
        def git(*words: str) -> str:
            return subprocess.run(["git", "-C", str(root), *words], capture_output=True, text=True, timeout=20,
                                  check=True).stdout.strip()

        return {"commit": git("rev-parse", "HEAD"), "modified": bool(git("status", "--porcelain",
                                                                        "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None
