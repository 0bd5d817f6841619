"""Files written atomically: a reader sees the old content or the new, never a part of it.

A file is written to a temporary file in the same folder and renamed over the target; a temporary left by a writer
that was killed is removed at the next write of the same target. Checkpoints, metrics, reports, code caches and
pictures are all written this way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from vqvae_prior.errors import OutputError, UsageError, VQPriorError

__all__ = ["atomic_save", "atomic_write", "content_digest", "signals_held", "stale_temporaries", "writable_folder"]


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to a temporary file beside ``path``, then rename it over ``path``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` with ``write(file)`` into a temporary file beside it, then rename that over ``path``: readers
    see the old content or the new, never a part of it.

    The temporary, ``.NAME.PID.RANDOM.tmp``, names the writing process; the temporaries of the same target whose
    process is gone (killed mid-write) are removed first. The file gets the permissions of any new file (0666 less
    the umask). A write that fails (a full disk) leaves ``path`` as it was and raises :class:`OutputError`. Ctrl-C,
    SIGTERM and SIGHUP received during the write take effect once ``path`` is written (:func:`signals_held`).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in stale_temporaries(path):
            stale.unlink(missing_ok=True)
        with signals_held():
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, VQPriorError):  # a full disk, a folder made read-only, ...
            raise OutputError(f"cannot write {path} ({e.strerror or e}); it is as it was before") from e
        raise


# the signals that interrupt a command (pipelines.cli makes SIGTERM and SIGHUP end it as Ctrl-C does)
HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP received in the ``with`` block are held and raised again, in order, once it
    ends: their handlers (a ``KeyboardInterrupt``) run after the block's work, not in the middle of it (a half
    written checkpoint, and ``torch.save``'s own error in place of the interrupt). Outside the main thread, where
    handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before = {signum: signal.signal(signum, lambda signum, frame: held.append(signum)) for signum in HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        for signum in held:
            signal.raise_signal(signum)


def stale_temporaries(path: str | Path) -> list[Path]:
    """The temporaries that :func:`atomic_write` left beside ``path`` in processes that are no longer running, and
    those of the earlier naming (``.NAME.XXXXXXXX.tmp``, which named no process)."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.[0-9a-f]{{16}}|[a-z0-9_]{{8}})\.tmp")
    if not path.parent.is_dir():
        return []
    found = (pattern.fullmatch(p.name) for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))
    return [path.with_name(m[0]) for m in found if m and not (m[1] and _running(int(m[1])))]


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists; True where that cannot be known (not POSIX), so nothing live is removed."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def writable_folder(folder: str | Path, option: str) -> Path:
    """``folder``, made when missing, once a file has been created and removed in it: a folder that cannot be made
    or written is refused before any work with a :class:`UsageError` naming ``option`` (as ``--cache-dir``)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{os.getpid()}.{secrets.token_hex(4)}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{option} {folder}: the folder cannot be made or written ({e.strerror})") from e
    return folder


def content_digest(path: str | Path | None) -> str | None:
    """A short SHA-256 of what is at ``path`` as the file system lists it: each file's path (relative to ``path``),
    size and modification time, for a file or every file below a folder (links to files followed, links to folders
    not). It changes when a file is added, removed, replaced or rewritten, without reading the files: cheap enough
    to key a cache on a data set's content rather than its path. None for None or a path that does not exist."""
    if path is None or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    top = Path(path)
    if top.is_dir():
        files = sorted(Path(dirpath, name) for dirpath, _, names in os.walk(top) for name in names)
    else:
        files = [top]
    for file in files:
        try:
            stat = file.stat()
        except OSError:  # a broken link, or a file removed while listing
            continue
        name = file.relative_to(top) if file != top else file.name
        h.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
