"""The embedded ledger store: one SQLite file in WAL mode, shared by the daemon's threads.

One connection behind a ``threading.Lock`` serves every thread: SQLite admits one writer at a
time anyway, and one connection keeps transactions and error handling simple. Writes are
``BEGIN IMMEDIATE ... COMMIT`` (the write lock is taken up front, so a transaction never fails
halfway to upgrade from reading to writing); with ``synchronous = FULL`` a commit is on disk
when the call returns. A write that need not be (``durable=False``: an attempt's outcome)
commits under ``NORMAL``, and reaches the disk with the next FULL commit, which syncs the
write-ahead log and so every commit before it. Other processes (``dropzone status``) read
through WAL meanwhile.

What a ledger does is :class:`~dropzone.ledger.store.LedgerStore`'s; this module supplies its
primitives (transactions that run the portable statements) and what only a file can say:
how it opens, locks and migrates, and whether its path still leads to the open file.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from dropzone.ledger.lockfile import FileLock
from dropzone.ledger.model import LedgerFailed, LedgerMissing, LedgerUnusable
from dropzone.ledger.schema import SCHEMA_VERSION, migrate, user_version
from dropzone.ledger.store import LedgerStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from dropzone.ledger.primitives import Row, Tx

_BUSY_TIMEOUT_S = 10.0
# Below this much free space, an SQLite failure is most likely the full disk, which SQLite may
# report as a mere "disk I/O error" (growing the WAL index, for one).
_LOW_SPACE_BYTES = 1024**2


class _Tx:
    """The store's :class:`~dropzone.ledger.primitives.Tx` over its one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(statement, values).fetchall()
        return rows

    def tuples(self, statement: str, values: Sequence[object] = ()) -> list[Any]:
        cursor = self._conn.cursor()
        cursor.row_factory = None
        return cursor.execute(statement, values).fetchall()

    def run(self, statement: str, values: Sequence[object] = ()) -> int:
        return self._conn.execute(statement, values).rowcount

    def run_many(self, statement: str, values: Iterable[Sequence[object]]) -> int:
        return self._conn.executemany(statement, values).rowcount


# --- opening --------------------------------------------------------------------------------


def _connect(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    if readonly:
        query = "mode=ro&immutable=1" if immutable else "mode=ro"
        target, uri = f"{path.resolve().as_uri()}?{query}", True
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        target, uri = str(path), False
    conn = sqlite3.connect(
        target,
        uri=uri,
        timeout=_BUSY_TIMEOUT_S,
        isolation_level=None,  # autocommit; transactions are explicit
        check_same_thread=False,  # shared by threads behind SqliteLedger's lock
    )
    conn.row_factory = sqlite3.Row
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    # (The busy timeout is set by sqlite3.connect's `timeout`.)
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        version = user_version(conn)
        if version == 0 and not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            # Made by a daemon starting for the first time and not yet filled (it fills it
            # in one transaction): there is no ledger yet, as when there is no file.
            raise LedgerMissing(f"no ledger in {path} yet: its first daemon is making it")
        if version != SCHEMA_VERSION:
            raise LedgerUnusable(
                f"ledger {path} has schema version {version}, this dropzone uses"
                f" {SCHEMA_VERSION}: open it read-write once (dropzone run) to migrate it"
            )
        return
    # WAL lets `dropzone status` read while the daemon writes; FULL syncs the log at each
    # commit, so a recorded claim or outcome survives a crash or a power cut.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn, path)


def _with_space(exc: BaseException, path: Path) -> str:
    """The error, and the free space when the filesystem holding ``path`` is (nearly) full."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return str(exc)
    if free >= _LOW_SPACE_BYTES:
        return str(exc)
    return f"{exc} (no space left on the filesystem holding it: {free} bytes free)"


def _open_connection(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        return _opened(path, readonly=readonly)
    except LedgerUnusable as exc:
        if not readonly or isinstance(exc, LedgerMissing):
            raise
        if _log_holds_commits(path):
            if os.access(path.parent, os.W_OK):
                raise
            raise LedgerUnusable(
                f"{exc}; its write-ahead log ({path.name}-wal) holds commits, which SQLite"
                f" reads only where it may write beside the ledger: read it where"
                f" {path.parent} is writable (as the daemon's user)"
            ) from exc
    # SQLite reads a file in WAL mode through a shared-memory file beside it, which it cannot
    # make where nothing may be written (a read-only folder or mount). With no log holding
    # commits, the file alone is the whole ledger: read it as immutable, without that file.
    return _opened(path, readonly=True, immutable=True)


def _log_holds_commits(path: Path) -> bool:
    try:
        return path.with_name(path.name + "-wal").stat().st_size > 0
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _opened(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    try:
        conn = _connect(path, readonly=readonly, immutable=immutable)
    except (sqlite3.Error, OSError) as exc:
        raise LedgerUnusable(f"cannot open ledger {path}: {_with_space(exc, path)}") from exc
    try:
        _prepare(conn, path, readonly=readonly)
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerUnusable(f"cannot open ledger {path}: {_with_space(exc, path)}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _identities(path: Path, file_lock: FileLock | None) -> list[tuple[Path, tuple[int, int]]]:
    """The (device, inode) of the ledger's file and of its write-ahead log, just opened.

    The lock's descriptor says for sure which file is open; without a lock, the path looked
    up now does. The log keeps its file while a connection is open (a checkpoint truncates
    it, never removes it).
    """
    found: list[tuple[Path, tuple[int, int]]] = []
    for each in (path, path.with_name(path.name + "-wal")):
        if each == path and file_lock is not None:
            found.append((each, file_lock.identity()))
            continue
        with suppress(OSError):
            stat = each.stat()
            found.append((each, (stat.st_dev, stat.st_ino)))
    return found


def probe_ledger(path: Path) -> str:
    """Open an existing ledger for writing, begin a write transaction and roll it back.

    What ``dropzone check`` reports: proof that the daemon could write, with nothing changed
    (no migration, no lock taken). LedgerUnusable says what stands in the way.
    """
    if not path.is_file():
        raise LedgerUnusable(f"{path} is not a file: fix [ledger] path")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise LedgerUnusable(f"cannot open {path} for writing: {exc}") from exc
    try:
        version = user_version(conn)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0] if version else 0
    except sqlite3.Error as exc:
        raise LedgerUnusable(f"cannot write {path}: {_with_space(exc, path)}") from exc
    finally:
        conn.close()
    if version > SCHEMA_VERSION:
        raise LedgerUnusable(
            f"{path} has schema version {version}, newer than this dropzone's {SCHEMA_VERSION}"
        )
    migrated = "" if version == SCHEMA_VERSION else f"; schema {version} migrates on the next run"
    return f"opens for writing ({entries} entries{migrated})"


class SqliteLedger(LedgerStore):
    """The embedded ledger (implements :class:`~dropzone.ledger.protocol.Ledger`).

    Open it with :meth:`open`; safe to share between threads.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, file_lock: FileLock | None) -> None:
        self._conn = conn
        self._file_lock = file_lock
        self._lock = threading.Lock()
        self._durable = True  # the connection's synchronous setting: FULL (from _prepare)
        self._unsynced = False  # a commit made under NORMAL that no FULL commit synced yet
        self.path = path
        self._identities = _identities(path, file_lock)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, lock: bool = True, readonly: bool = False
    ) -> Self:
        """Open the ledger at ``path``, creating and migrating it if needed.

        ``readonly`` opens the file read-only and without the lock, so ``dropzone status``
        and ``check`` work while a daemon runs. ``lock=False`` skips the lock (tests that race
        several connections on purpose).
        """
        ledger_path = Path(path)
        file_lock = FileLock.acquire(ledger_path) if lock and not readonly else None
        try:
            conn = _open_connection(ledger_path, readonly=readonly)
        except BaseException:
            if file_lock is not None:
                file_lock.release()
            raise
        opened = cls(conn, ledger_path, file_lock)
        if file_lock is not None:
            opened._forget_nodes()
        return opened

    def _forget_nodes(self) -> None:
        """The lock proves that no other process has the file open: every node it names is
        gone, so its attempts are reconciled now, with no lease to wait for."""
        try:
            with self.write() as tx:
                tx.run("DELETE FROM roles")
                tx.run("DELETE FROM nodes")
        except BaseException:
            self.close()
            raise

    # The database's clock (for leases): seconds since the epoch, to the millisecond.
    db_now = "((julianday('now') - 2440587.5) * 86400.0)"

    def next_token(self, tx: Tx) -> int:
        return int(tx.rows("UPDATE claim_tokens SET last = last + 1 RETURNING last")[0]["last"])

    def after_copy(self, tx: Tx, highest_id: int) -> None:
        del highest_id  # SQLite keeps the ids it is given, and its sequence follows them
        tx.run(
            "UPDATE claim_tokens SET last = max(last,"
            " coalesce((SELECT max(claim_token) FROM entries), 0))"
        )

    def displaced(self) -> str | None:
        """What became of the ledger's file or its write-ahead log if its path no longer leads
        to the file open here (removed, or replaced by another file); None while it does.

        Whatever is written to a file no longer at its path is lost to the next start. A path
        that cannot be looked at now (a permission changed, say) is not taken for gone.
        """
        for path, identity in self._identities:
            try:
                found = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return f"{path} was removed while the ledger was open"
            except OSError:
                continue
            if (found.st_dev, found.st_ino) != identity:
                return f"{path} was replaced while the ledger was open"
        return None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._file_lock is not None:
                self._file_lock.release()

    @property
    def where(self) -> str:
        return str(self.path)

    def highest_id(self, tx: Tx) -> int:
        # AUTOINCREMENT remembers the highest id ever given, a forgotten entry's too.
        rows = tx.rows(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0),"
            " coalesce((SELECT max(id) FROM entries), 0)) AS highest"
        )
        return int(rows[0]["highest"])

    # --- the store's primitives ---------------------------------------------------------

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[_Tx]:
        with self._lock:
            conn = self._conn
            try:
                self._sync(durable=durable)
                changes = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                yield _Tx(conn)
                conn.execute("COMMIT")
                # A commit that changed no row writes no frame, and a FULL one then syncs
                # nothing: what an earlier NORMAL commit left unsynced stays so.
                if conn.total_changes != changes:
                    self._unsynced = not durable
            except sqlite3.Error as exc:
                self._rollback()
                raise LedgerFailed(f"ledger {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def unsynced(self) -> bool:
        return self._unsynced

    def _sync(self, *, durable: bool) -> None:
        """FULL syncs the log at the commit; NORMAL leaves the commit in the log unsynced
        (safe from a crash of this process, not from a power cut) until the next FULL commit
        syncs the log, and every frame before it, or a checkpoint does."""
        if durable != self._durable:
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            # The connection may be broken (disk gone): the original error is the one to see.
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    @contextmanager
    def read(self) -> Iterator[_Tx]:
        with self._lock:
            try:
                yield _Tx(self._conn)
            except sqlite3.Error as exc:
                raise LedgerFailed(f"ledger {self.path}: {exc}") from exc
