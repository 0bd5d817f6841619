"""The output folder of a fit: one fit at a time, its best and its last epoch, metrics that match its checkpoints.

Files in ``OUT`` (NAME is ``vqvae`` or ``prior``):

* ``NAME.pt``: the best epoch so far by the held-out metric (lowest ``test_mse``, ``test_bits_per_code``), what
  ``fit_prior`` and ``generate`` read;
* ``NAME-last.pt``: the last epoch done with the whole training state (optimizer, schedule, random state, the
  metrics of every epoch, the best epoch), what ``--resume`` continues;
* ``metrics.jsonl``: one line per epoch done, each epoch once; ``kept``: whether the epoch became ``NAME.pt``,
  ``best_epoch``: the epoch ``NAME.pt`` holds after it;
* ``fit.lock``: while a fit runs, its pid and command line.

Every file is written atomically (:func:`vqvae_prior.checkpoint.atomic_write`). After each epoch the fit writes
``NAME-last.pt``, then ``NAME.pt`` if the epoch is the best so far, then ``metrics.jsonl`` from ``NAME-last.pt``'s
history. ``NAME-last.pt`` is the record: a kill between two writes leaves the later files behind it, and ``--resume``
brings them up to it (``NAME.pt`` from its weights when its best epoch is its last one, ``metrics.jsonl`` from its
history) before it goes on. So a resumed fit never repeats or mixes epochs, and it ends with the weights of an
uninterrupted fit.

One fit per folder: a fit holds an advisory lock (``flock``) on ``fit.lock`` for its lifetime, and writes its pid
there; a second fit into the same folder is refused at start, naming that process. The operating system releases
the lock when the process ends, however it ends: a lock file left by a killed fit is reported and taken over.

``--resume`` trains as the fit began: it refuses a different data set or any other training option (learning rate,
batch size, schedule, model, ...); only the options in :data:`FREE_ON_RESUME` may change (``--epochs`` only under a
constant learning rate, since a cosine schedule's length is the number of epochs), and each change is recorded in
the checkpoints' ``resumes`` list with the epoch it took effect after, so their ``args`` are always what ran.

Under torchrun (``pipelines/distributed.py``) the process of rank 0 owns the folder; the others open it with
``writer=False``: they check and read what rank 0 does (the same refusals, the checkpoint to resume) and keep the
same history, but take no lock and write nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from pipelines.cli import flag
from vqvae_prior.checkpoint import CheckpointError, atomic_save, atomic_write, load_checkpoint, save_checkpoint
from vqvae_prior.errors import UsageError, VQPriorError

if TYPE_CHECKING:
    from pipelines.training import MixedPrecision

try:
    import fcntl
except ImportError:  # Windows: the lock file is created exclusively instead, and one left by a killed fit stays
    fcntl = None  # type: ignore[assignment]

__all__ = ["FREE_ON_RESUME", "LOCK_NAME", "RunFolder", "RunFolderError", "check_image_path", "has_fit", "restore",
           "training_state"]

KINDS = ("vqvae", "prior")
LOCK_NAME = "fit.lock"
TRAINING_KEYS = ("optimizer", "lr_scheduler", "rng", "history", "scaler")  # only in NAME-last.pt
# options a resumed fit may change: they do not change what is computed (--epochs: under a constant schedule)
FREE_ON_RESUME = frozenset({"epochs", "patience", "device", "no_progress", "resume", "out", "compile"})


class RunFolderError(VQPriorError):
    """An output folder is in use by another fit, not writable, or does not hold what the call asks for."""


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
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------------------------------ lifetime

    def __enter__(self) -> RunFolder:
        if not self.writer:
            return self
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"--out {self.out}: cannot create the folder ({e.strerror})") from e
        self._lock()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is None:
            return
        if fcntl is not None:  # removed while still locked: a fit starting now locks the file at the path
            (self.out / LOCK_NAME).unlink(missing_ok=True)
        os.close(self._lock_fd)
        if fcntl is None:
            (self.out / LOCK_NAME).unlink(missing_ok=True)
        self._lock_fd = None

    def _lock(self) -> None:
        path = self.out / LOCK_NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o666)
            except FileExistsError:  # no fcntl: a lock file is a running fit, or one that was killed
                raise RunFolderError(f"{self.out} is in use by another fit ({path.read_text().strip()}); if that "
                                     f"process is no longer running, delete {path}") from None
            except OSError as e:
                raise RunFolderError(f"--out {self.out} is not writable: cannot create {path} ({e.strerror})") from e
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that is starting"
                os.close(fd)
                raise RunFolderError(f"{self.out} is in use by another fit: {holder} holds {path}; wait for it to "
                                     "end, or pass another --out") from None
            try:  # the holder may have removed the file just before releasing it: lock the file at the path
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        left = os.read(fd, 4096).decode(errors="replace").strip()
        if left:
            print(f"warning: {path} was left by a fit that is no longer running ({left}); taking it over",
                  file=sys.stderr)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()}, started {started}: {' '.join(sys.argv)}\n".encode())
        self._lock_fd = fd

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
            if self.writer and self.best["epoch"] == state["epoch"] and self._best_epoch_saved() != state["epoch"]:
                atomic_save({k: v for k, v in state.items() if k not in TRAINING_KEYS}, self.best_path)
        else:  # written before KIND-last.pt: KIND.pt held the last epoch, and metrics.jsonl may run ahead of it
            self.history = self._logged_history(state["epoch"])
            if not self.history or self.history[-1]["epoch"] != state["epoch"]:
                self.history.append(state["metrics"])
            self.best = {"epoch": state["epoch"], "metric": self.metric, "value": state["metrics"][self.metric]}
        self.write_metrics()
        return state

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

    def check_resumed_args(
        self, state: dict[str, Any], args: argparse.Namespace, free: frozenset[str] = FREE_ON_RESUME,
        legacy: dict[str, Any] | None = None,
    ) -> None:
        """Refuse a resumed fit whose training options differ from those recorded in ``state``, and record the
        changes of the options in ``free`` (see the module docstring). ``legacy``: the value of an option missing
        from a checkpoint written before it existed; other missing options count as unchanged."""
        recorded, legacy = state.get("args", {}), legacy or {}
        changed = {}
        for name, value in vars(args).items():
            before = recorded.get(name, legacy.get(name, value))
            if before != value:
                changed[name] = [before, value]
        free = free - {"epochs"} if args.lr_schedule != "constant" else free
        refused = {name: values for name, values in changed.items() if name not in free}
        if refused:
            was = ", ".join(f"{flag(name)} {before!r}" for name, (before, _) in refused.items())
            asks = ", ".join(f"{flag(name)} {value!r}" for name, (_, value) in refused.items())
            raise UsageError(
                f"--resume: {self.out} was fitted with {was}; this call asks for {asks}. A resumed fit trains as it "
                f"began (only {', '.join(flag(n) for n in sorted(free - {'resume', 'out'}))} may change"
                f"{'; --epochs not under --lr-schedule ' + args.lr_schedule if 'epochs' in refused else ''}): "
                "leave them out, or start a new fit in another --out"
            )
        if args.epochs < self.epochs_done:
            raise UsageError(f"--epochs {args.epochs}: the fit in {self.out} has done {self.epochs_done} epochs")
        noted = {name: values for name, values in changed.items() if name not in ("resume", "no_progress")}
        if noted:
            self.resumes.append({"epoch": self.epochs_done, "changed": noted})

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
        """Write the epoch just done: ``KIND-last.pt``, ``KIND.pt`` if it is the best so far, ``metrics.jsonl``.

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
        both = {**info, "epoch": metrics["epoch"], "metrics": record, "best": best, "resumes": self.resumes}
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

    def last_good(self) -> str:
        """Which checkpoints hold the last good state, for error messages."""
        if not self.history:
            return f"no checkpoint was written to {self.out}"
        return (f"{self.last_path} (epoch {self.epochs_done}) and {self.best_path} (epoch {self.best['epoch']}, the "
                "best) are left as they were")


def has_fit(out: str | Path, kind: str) -> bool:
    """Whether ``out`` holds a fit of ``kind`` that ``--resume`` can continue."""
    return any((Path(out) / name).is_file() for name in (f"{kind}-last.pt", f"{kind}.pt"))


def training_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_generator: torch.Generator,
    precision: MixedPrecision | None = None,
) -> dict[str, Any]:
    """What ``KIND-last.pt`` holds, beside the model and the history, to resume a fit exactly (with the fp16
    gradient scaler's state, when ``precision`` has one)."""
    rng = {"torch": torch.get_rng_state(), "loader": loader_generator.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    scaler = {"scaler": precision.state_dict()} if precision is not None else {}
    return {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(), "rng": rng, **scaler}


def restore(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader_generator: torch.Generator,
    legacy: dict[str, Any] | None = None,
    precision: MixedPrecision | None = None,
    **expected: Any,
) -> None:
    """Restore the training state of a checkpoint from :meth:`RunFolder.start`.

    ``expected`` entries (the model config, the data spec, ...) must equal the checkpoint's, else the fit is
    refused; ``legacy``: what a key missing from a checkpoint written before it existed stands for.
    """
    for key, value in expected.items():
        found = state.get(key, (legacy or {}).get(key))
        if found != value:
            raise UsageError(f"--resume: the fit was made with {key} {found!r}; this call gives {value!r}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["lr_scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    loader_generator.set_state(state["rng"]["loader"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if precision is not None:
        precision.load_state_dict(state.get("scaler", {}))


def check_image_path(path: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work, an image file name whose extension no image format has, a folder, or a folder
    that cannot be written; creates the folder. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; expected an image file name, e.g. {path / 'samples.png'}")
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        raise UsageError(f"{option} {path}: {path.suffix or 'no extension'} is not an image format this can "
                         "write; expected a file name ending in .png (or .jpg, ...)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{option} {path}: its folder is not writable ({e.strerror})") from e
    return path
