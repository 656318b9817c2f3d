"""One daemon per ledger: an exclusive ``flock`` on ``<ledger>.lock`` holding the owner's pid.

flock locks belong to the open file, so the kernel drops them when the process dies, however
it dies: a stale pid left in the file never blocks the next start.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from dropzone.ledger.model import LedgerError, LedgerLocked

if TYPE_CHECKING:
    from pathlib import Path


def lock_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + ".lock")


class FileLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, ledger_path: Path) -> FileLock:
        """Take the lock without waiting; :class:`LedgerLocked` names the holder if taken."""
        path = lock_path(ledger_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(f"cannot open the ledger's lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LedgerLocked(
                f"another dropzone (pid {holder}) is using {ledger_path};"
                " stop it or use another ledger.path"
            ) from exc
        except OSError as exc:
            os.close(fd)
            raise LedgerError(f"cannot lock {path}: {exc}") from exc
        lock = cls(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as exc:
            lock.release()
            raise LedgerError(f"cannot write the pid into {path}: {exc}") from exc
        return lock

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
