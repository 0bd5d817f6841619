"""One fit per output folder: an advisory lock on ``OUT/fit.lock`` for the fit's lifetime.

The fit holds ``flock`` on ``fit.lock`` and writes its pid and command line there; a second fit into the same folder
is refused at start, naming that process. The operating system releases the lock when the process ends, however it
ends: a lock file left by a killed fit is reported and taken over. Where ``fcntl`` is missing (Windows) the file is
created exclusively instead, and one left by a killed fit stays until it is deleted.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

from vqvae_prior.errors import VQPriorError

try:
    import fcntl
except ImportError:  # Windows: the lock file is created exclusively instead, and one left by a killed fit stays
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "FitLock", "RunFolderError"]

LOCK_NAME = "fit.lock"


class RunFolderError(VQPriorError):
    """An output folder is in use by another fit, not writable, or does not hold what the call asks for."""


class FitLock:
    """The lock on ``out/fit.lock``, held for the lifetime of a ``with`` block; creates ``out`` when missing."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self._lock_fd: int | None = None

    def __enter__(self) -> FitLock:
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
