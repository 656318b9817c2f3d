"""One daemon per ledger file: an exclusive ``flock`` on the ledger file itself, and one on
``<ledger>.lock`` holding the owner's pid.

The lock on the ledger file is the one that counts: it belongs to the file, not to a spelling
of its path, so a second daemon reaching the same file through a symbolic link, a hard link or
a bind mount is refused too. (flock locks are apart from the POSIX record locks SQLite takes
on the same file; neither disturbs the other.) ``<ledger>.lock`` tells whoever is refused which
pid holds the ledger, and refuses a daemon of an older dropzone that locks only that file.

flock locks belong to the open file, so the kernel drops them when the process dies, however
it dies: a stale pid left in the file never blocks the next start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone.ledger.model import LedgerLocked, LedgerUnusable

if TYPE_CHECKING:
    from collections.abc import Callable

    # Who holds a lock, given a descriptor of the locked file; None when it cannot be told.
    _Holder = Callable[[int], str | None]

_PROC_LOCKS = Path("/proc/locks")


def lock_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + ".lock")


class FileLock:
    def __init__(self, pid_fd: int, ledger_fd: int) -> None:
        self._fds: list[int] = [ledger_fd, pid_fd]

    @classmethod
    def acquire(cls, ledger_path: Path) -> FileLock:
        """Take the lock without waiting; :class:`LedgerLocked` names the holder if taken.

        Creates the ledger file (empty) if it is not there: the lock is taken on the file.
        """
        path = lock_path(ledger_path)
        pid_fd = _locked(path, ledger_path, _pid_in)
        try:
            ledger_fd = _locked(ledger_path, ledger_path, _holder_by_proc_locks)
        except BaseException:
            os.close(pid_fd)
            raise
        lock = cls(pid_fd, ledger_fd)
        try:
            os.ftruncate(pid_fd, 0)
            os.write(pid_fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as exc:
            lock.release()
            raise LedgerUnusable(f"cannot write the pid into {path}: {exc}") from exc
        return lock

    def identity(self) -> tuple[int, int]:
        """The locked ledger file's (device, inode): what its path should still lead to."""
        found = os.fstat(self._fds[0])
        return found.st_dev, found.st_ino

    def release(self) -> None:
        # The ledger file's descriptor is closed after SQLite's connection (SqliteLedger.close
        # closes that first): closing a descriptor of a file drops the process's POSIX locks
        # on it, SQLite's included.
        while self._fds:
            os.close(self._fds.pop())


def _locked(path: Path, ledger_path: Path, holder: _Holder) -> int:
    """``path`` opened (created if missing) and flocked; LedgerLocked naming the holder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        what = "lock file" if path != ledger_path else "file"
        raise LedgerUnusable(f"cannot open the ledger's {what} {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        pid = holder(fd) or "unknown"
        os.close(fd)
        raise LedgerLocked(
            f"another dropzone (pid {pid}) is using {ledger_path};"
            " stop it or use another ledger.path"
        ) from exc
    except OSError as exc:
        os.close(fd)
        raise LedgerUnusable(f"cannot lock {path}: {exc}") from exc
    return fd


def _pid_in(fd: int) -> str | None:
    return os.read(fd, 32).decode("ascii", "replace").strip() or None


def _holder_by_proc_locks(fd: int) -> str | None:
    """The pid holding a flock on ``fd``'s file, from the kernel's table (Linux), if shown."""
    found = os.fstat(fd)
    inode = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    try:
        table = _PROC_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in table.splitlines():
        # A line reads: id, FLOCK, ADVISORY, WRITE, the pid, major:minor:inode, the range.
        fields = line.split()
        if fields[1:2] == ["FLOCK"] and fields[5:6] == [inode]:
            return fields[4]
    return None
