"""The embedded ledger: one SQLite file in WAL mode, shared by the daemon's threads.

One connection behind a ``threading.Lock`` serves every thread: SQLite admits one writer at a
time anyway, and one connection keeps transactions and error handling simple. Writes are
``BEGIN IMMEDIATE ... COMMIT`` (the write lock is taken up front, so a transaction never fails
halfway to upgrade from reading to writing); with ``synchronous = FULL`` a commit is on disk
when the call returns. Other processes (``dropzone status``) read through WAL meanwhile.

Every state-guarded write is ``UPDATE ... WHERE id = ? AND state IN (?, ?, ?) RETURNING *``
with the sources of a :class:`~dropzone.ledger.model.Move`; when no row matches, the entry is
looked up to say why (gone, or in a state the change does not start from).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Self

from dropzone.ledger import model
from dropzone.ledger.diff import Known, Listed, Page, diff_page
from dropzone.ledger.lockfile import FileLock
from dropzone.ledger.model import (
    Entry,
    EntryNotFound,
    InvalidTransition,
    LedgerError,
    LedgerFailed,
    LedgerUnusable,
    Move,
    OnChange,
    RequestCounts,
    ScopeStatus,
    State,
    from_optional_text,
    from_text,
    to_text,
)
from dropzone.ledger.schema import SCHEMA_VERSION, migrate, user_version

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence
    from datetime import datetime
    from types import TracebackType

_BUSY_TIMEOUT_S = 10.0
# Below this much free space, an SQLite failure is most likely the full disk, which SQLite may
# report as a mere "disk I/O error" (growing the WAL index, for one).
_LOW_SPACE_BYTES = 1024**2
# Rows per read when streaming: the connection's lock is released between chunks.
_CHUNK = 500

# --- SQL ------------------------------------------------------------------------------------
# Static statements only: values always travel as parameters.

_KNOWN = {
    # (after is None, through is None) -> the page's range read. Four statements rather than
    # `? IS NULL OR key > ?`, which would keep SQLite from using the index for the range.
    (True, True): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ?",
    (False, True): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key > ?",
    (True, False): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key <= ?",
    (False, False): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key > ? AND key <= ?",
}
_MARK_GONE = "UPDATE entries SET gone_since = ? WHERE id = ? AND gone_since IS NULL"
_MARK_BACK = "UPDATE entries SET gone_since = NULL WHERE id = ?"
_INSERT = (
    "INSERT INTO entries"
    " (watch, bucket, key, etag, size, state, error, first_seen_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (watch, bucket, key, etag) DO NOTHING RETURNING id"
)
_SELECT_IDENTITY = "SELECT * FROM entries WHERE watch = ? AND bucket = ? AND key = ? AND etag = ?"

# UPDATE ... FROM rather than `WHERE id IN (...)`: with IN, SQLite checks the outer state
# condition by walking the state index (every pending entry) instead of looking the chosen ids
# up. The state is checked again on the row being changed, as a conditional write should.
_CLAIM_DUE = (
    "UPDATE entries SET state = ?, attempts = attempts + 1, next_attempt_at = NULL,"
    " claimed_at = ?, updated_at = ?"
    " FROM (SELECT id FROM entries WHERE state = ?"
    "  AND (next_attempt_at IS NULL OR next_attempt_at <= ?) AND (? IS NULL OR watch = ?)"
    "  ORDER BY first_seen_at, id LIMIT ?) AS due"
    " WHERE entries.id = due.id AND entries.state = ?"
    " RETURNING *"
)
_CLAIM_ONE = (
    "UPDATE entries SET state = ?, attempts = attempts + 1, next_attempt_at = NULL,"
    " claimed_at = ?, updated_at = ?"
    " WHERE id = ? AND state = ? RETURNING *"
)
_SET_JOB = (
    "UPDATE entries SET state = ?, job_id = ?, output_dir = ?, input_tag = COALESCE(?, input_tag),"
    " error = NULL, next_attempt_at = NULL, updated_at = ?"
    " WHERE id = ? AND state IN (?, ?, ?) RETURNING *"
)
_SET_DUPLICATE = (
    "UPDATE entries SET state = ?, job_id = ?, output_dir = ?, input_tag = COALESCE(?, input_tag),"
    " awaits_job = ?, error = NULL, next_attempt_at = NULL, updated_at = ?"
    " WHERE id = ? AND state IN (?, ?, ?) RETURNING *"
)
# An entry let go of a job that was never its own (the one the guard named), back as it was
# before its first claim.
_NO_JOB = (
    "job_id = NULL, phase = NULL, output_dir = NULL, requests_total = NULL,"
    " requests_completed = NULL, requests_failed = NULL, awaits_job = 0"
)
# S608 is noqa'd where _NO_JOB is joined in: it is this module's constant, not input.
_SET_AWAITED = (
    f"UPDATE entries SET state = ?, {_NO_JOB}, error = ?, next_attempt_at = NULL,"  # noqa: S608
    " updated_at = ? WHERE id = ? AND state IN (?, ?, ?) AND awaits_job = 1 AND job_id = ?"
    " RETURNING *"
)
_SET_END = (
    "UPDATE entries SET state = ?, error = ?, next_attempt_at = NULL, updated_at = ?"
    " WHERE id = ? AND state IN (?, ?, ?) RETURNING *"
)
_SET_REQUEUE = (
    "UPDATE entries SET state = ?, next_attempt_at = ?, error = COALESCE(?, error),"
    " updated_at = ?"
    " WHERE id = ? AND state IN (?, ?, ?) RETURNING *"
)
_SET_RETRY = (
    "UPDATE entries SET state = ?, next_attempt_at = ?, error = ?,"
    " transient_failures = transient_failures + ?, updated_at = ?"
    " WHERE id = ? AND state IN (?, ?, ?) RETURNING *"
)
_SET_DEFERRED = (
    "UPDATE entries SET next_attempt_at = ?, error = ?, updated_at = ?,"
    " transient_failures = transient_failures + ? WHERE id = ? AND state = ? RETURNING *"
)
_SET_SENDING = (
    "UPDATE entries SET claimed_at = ?, updated_at = ? WHERE id = ? AND state = ? RETURNING *"
)
_SET_VERSION = (
    "UPDATE entries SET etag = ?, size = ?, updated_at = ? WHERE id = ? AND state = ? RETURNING *"
)
_SET_PHASE = (
    "UPDATE entries SET phase = ?, requests_total = COALESCE(?, requests_total),"
    " requests_completed = COALESCE(?, requests_completed),"
    " requests_failed = COALESCE(?, requests_failed), updated_at = ?"
    " WHERE id = ? AND job_id IS NOT NULL RETURNING *"
)

_IN_STATE_FIRST = (
    "SELECT * FROM entries WHERE state = ? AND (? IS NULL OR watch = ?)"
    " ORDER BY first_seen_at, id LIMIT ?"
)
_IN_STATE_NEXT = (
    "SELECT * FROM entries WHERE state = ? AND (? IS NULL OR watch = ?)"
    " AND (first_seen_at, id) > (?, ?) ORDER BY first_seen_at, id LIMIT ?"
)
_ENTRIES_FIRST = (
    "SELECT * FROM entries WHERE (? IS NULL OR state = ?) AND (? IS NULL OR watch = ?)"
    " ORDER BY watch, bucket, key, etag LIMIT ?"
)
_ENTRIES_NEXT = (
    "SELECT * FROM entries WHERE (? IS NULL OR state = ?) AND (? IS NULL OR watch = ?)"
    " AND (watch, bucket, key, etag) > (?, ?, ?, ?) ORDER BY watch, bucket, key, etag LIMIT ?"
)
# Both repeat the tracking index's WHERE word for word, so that SQLite uses that index.
_TRACKING = (
    "SELECT * FROM entries WHERE job_id IS NOT NULL"
    " AND (phase IS NULL OR phase NOT IN ('Completed', 'Terminated', 'Failed'))"
    " AND (? IS NULL OR (updated_at, id) > (?, ?))"
    " ORDER BY updated_at, id LIMIT ?"
)
_ACTIVE_JOBS = (
    "SELECT count(*) FROM entries WHERE job_id IS NOT NULL"
    " AND (phase IS NULL OR phase NOT IN ('Completed', 'Terminated', 'Failed'))"
    " AND watch = ?"
    # Terminating has let go of its capacity; a phase this version does not know holds it.
    " AND (phase != 'Terminating' OR (state = ? AND phase IS NULL))"
)
# NULLs sort first: a pending entry due now answers with the (past) time it became pending.
_UPCOMING = (
    "SELECT * FROM entries WHERE (state = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?))"
    " OR state = ? ORDER BY first_seen_at, id LIMIT ?"
)
_NEXT_DUE = (
    "SELECT next_attempt_at, updated_at FROM entries WHERE state = ?"
    " ORDER BY next_attempt_at LIMIT 1"
)

_BACKFILL = (
    "UPDATE entries SET state = ?, next_attempt_at = NULL, updated_at = ?"
    " WHERE state = ? AND (? IS NULL OR watch = ?)"
)
# A retried duplicate drops the job it named: that job was never the entry's own.
_RETRY_ALL = (
    "UPDATE entries SET state = ?, attempts = 0, transient_failures = 0, error = NULL,"  # noqa: S608
    f" next_attempt_at = NULL, {_NO_JOB}, updated_at = ? WHERE state IN (?, ?, ?)"
)
_RETRY_KEY = f"{_RETRY_ALL} AND key = ?"
# Never an entry in submitting: its Create call may be in flight in a running daemon, and the
# key would then count as new and be submitted a second time.
_FORGET = "DELETE FROM entries WHERE key = ? AND (? IS NULL OR watch = ?) AND state != ?"
# An entry whose Create call's outcome is unknown is kept whatever its age: it still has to be
# reconciled, and forgetting it could let the same input run twice.
_PRUNE = "DELETE FROM entries WHERE gone_since IS NOT NULL AND gone_since < ? AND state != ?"


def _entry(row: sqlite3.Row) -> Entry:
    total = row["requests_total"]
    counts = (
        None
        if total is None
        else RequestCounts(total, row["requests_completed"] or 0, row["requests_failed"] or 0)
    )
    return Entry(
        id=row["id"],
        watch=row["watch"],
        bucket=row["bucket"],
        key=row["key"],
        etag=row["etag"],
        size=row["size"],
        state=State(row["state"]),
        attempts=row["attempts"],
        transient_failures=row["transient_failures"],
        next_attempt_at=from_optional_text(row["next_attempt_at"]),
        error=row["error"],
        job_id=row["job_id"],
        phase=row["phase"],
        output_dir=row["output_dir"],
        input_tag=row["input_tag"],
        request_counts=counts,
        first_seen_at=from_text(row["first_seen_at"]),
        updated_at=from_text(row["updated_at"]),
        claimed_at=from_optional_text(row["claimed_at"]),
        gone_since=from_optional_text(row["gone_since"]),
        awaits_job=bool(row["awaits_job"]),
    )


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
    except LedgerError as exc:
        if not readonly:
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


class SqliteLedger:
    """The embedded ledger (implements :class:`~dropzone.ledger.protocol.Ledger`).

    Open it with :meth:`open`; safe to share between threads.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, file_lock: FileLock | None) -> None:
        self._conn = conn
        self._file_lock = file_lock
        self._lock = threading.Lock()
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
        return cls(conn, ledger_path, file_lock)

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise LedgerFailed(f"ledger {self.path}: {exc}") from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            # The connection may be broken (disk gone): the original error is the one to see.
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise LedgerFailed(f"ledger {self.path}: {exc}") from exc

    def _move(self, entry_id: int, move: Move, sql: str, values: Sequence[object]) -> Entry:
        """Run a state-guarded ``sql``: ``values``, then the id and the move's sources."""
        with self._write() as conn:
            rows = conn.execute(sql, (*values, entry_id, *move.slots())).fetchall()
            if not rows:
                _refuse(conn, entry_id, move.target)
        return _entry(rows[0])

    def _guarded(self, sql: str, values: Sequence[object], entry_id: int, state: State) -> Entry:
        """Run ``sql`` that changes an entry only while it is in ``state``."""
        with self._write() as conn:
            rows = conn.execute(sql, (*values, entry_id, state)).fetchall()
            if not rows:
                _refuse(conn, entry_id, state)
        return _entry(rows[0])

    # --- scope --------------------------------------------------------------------------

    def begin_watch(self, watch: str, bucket: str, prefix: str, now: datetime) -> ScopeStatus:
        """Record the watch's scope. A changed bucket or prefix starts a new baseline: the
        watch's entries are marked gone (pruned later, unless the new listing finds them)."""
        stamp = to_text(now)
        with self._write() as conn:
            row = conn.execute(
                "SELECT bucket, prefix FROM watches WHERE name = ?", (watch,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO watches (name, bucket, prefix, baseline_done, scope_since)"
                    " VALUES (?, ?, ?, 0, ?)",
                    (watch, bucket, prefix, stamp),
                )
                return ScopeStatus.FIRST_START
            if (row["bucket"], row["prefix"]) == (bucket, prefix):
                return ScopeStatus.UNCHANGED
            conn.execute(
                "UPDATE watches SET bucket = ?, prefix = ?, baseline_done = 0, scope_since = ?"
                " WHERE name = ?",
                (bucket, prefix, stamp, watch),
            )
            conn.execute(
                "UPDATE entries SET gone_since = ? WHERE watch = ? AND gone_since IS NULL",
                (stamp, watch),
            )
            return ScopeStatus.CHANGED

    def baseline_done(self, watch: str) -> bool:
        """Whether the watch's first full listing (of its current scope) completed."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT baseline_done FROM watches WHERE name = ?", (watch,)
            ).fetchone()
        return bool(row and row["baseline_done"])

    def mark_baseline_done(self, watch: str) -> None:
        with self._write() as conn:
            cursor = conn.execute("UPDATE watches SET baseline_done = 1 WHERE name = ?", (watch,))
            if cursor.rowcount == 0:
                raise LedgerFailed(f"ledger {self.path}: watch {watch!r} was never begun")

    # --- what sources saw ---------------------------------------------------------------

    def record_page(
        self,
        watch: str,
        bucket: str,
        page: Page,
        *,
        new_state: State,
        on_change: OnChange,
        now: datetime,
    ) -> list[Entry]:
        """Merge one listing page into the ledger; returns the entries it recorded, by key.

        New keys go in as ``new_state`` (PENDING, or BASELINE during a first listing). New
        versions of known keys go in as PENDING with ``on_change="resubmit"``, and as BASELINE
        with ``on_change="ignore"`` (noted in ``error``) or during a first listing. An
        unchanged page costs one indexed range read and no write.
        """
        if new_state not in {State.PENDING, State.BASELINE}:
            raise ValueError(f"new objects start as pending or baseline, not {new_state}")
        ignored = new_state is State.BASELINE or on_change == "ignore"
        version_state = State.BASELINE if ignored else State.PENDING
        version_note = "on_change=ignore" if on_change == "ignore" else None
        stamp = to_text(now)
        with self._write() as conn:
            diff = diff_page(page.listed, _known(conn, watch, bucket, page))
            if not diff:
                return []
            conn.executemany(_MARK_GONE, [(stamp, entry_id) for entry_id in diff.gone])
            conn.executemany(_MARK_BACK, [(entry_id,) for entry_id in diff.back])
            new = [(item, new_state, None) for item in diff.new]
            versions = [(item, version_state, version_note) for item in diff.new_versions]
            created = _insert(conn, (watch, bucket), [*new, *versions], now)
        return sorted(created, key=lambda entry: entry.key)

    def add_object(
        self, watch: str, bucket: str, key: str, etag: str, size: int, state: State, now: datetime
    ) -> tuple[Entry, bool]:
        """Record one version unless known; returns its entry and whether it was created."""
        if state not in model.START_STATES:
            raise ValueError(f"an entry starts as baseline, waiting or pending, not {state}")
        with self._write() as conn:
            created = _insert(conn, (watch, bucket), [(Listed(key, etag, size), state, None)], now)
            if created:
                return created[0], True
            row = conn.execute(_SELECT_IDENTITY, (watch, bucket, key, etag)).fetchone()
        return _entry(row), False

    def add_objects(
        self,
        watch: str,
        bucket: str,
        found: Sequence[tuple[Listed, State, str | None]],
        now: datetime,
    ) -> list[Entry]:
        """Record many versions in one transaction, each unless known; returns those created.

        A version found unusable as it was detected (a file that cannot be read, an upload the
        store refuses) starts ``rejected`` with its reason: visible, and never claimed."""
        for _, state, _ in found:
            if state not in model.START_STATES and state is not State.REJECTED:
                raise ValueError(f"an entry starts as baseline, waiting or pending, not {state}")
        if not found:
            return []
        with self._write() as conn:
            return _insert(conn, (watch, bucket), found, now)

    def update_waiting(self, entry_id: int, etag: str, size: int, now: datetime) -> Entry:
        """A local file still settling changed: its waiting entry takes the new version.

        A :class:`LedgerFailed` if that version already has an entry of its own.
        """
        return self._guarded(_SET_VERSION, (etag, size, to_text(now)), entry_id, State.WAITING)

    def promote_waiting(self, entry_id: int, now: datetime) -> Entry:
        """A waiting entry is ready: pending, due now."""
        values = (model.PROMOTE.target, None, None, to_text(now))
        return self._move(entry_id, model.PROMOTE, _SET_REQUEUE, values)

    # --- claims -------------------------------------------------------------------------

    def claim_due(self, limit: int, now: datetime, watch: str | None = None) -> list[Entry]:
        """Move up to ``limit`` due pending entries to submitting, oldest first.

        One conditional UPDATE: however many threads or processes claim at once, each entry
        is claimed by exactly one of them. The attempt count goes up by one.
        """
        stamp = to_text(now)
        pending = State.PENDING
        values = (model.CLAIM.target, stamp, stamp, pending, stamp, watch, watch, limit, pending)
        with self._write() as conn:
            rows = conn.execute(_CLAIM_DUE, values).fetchall()
        return sorted(map(_entry, rows), key=lambda entry: (entry.first_seen_at, entry.id))

    def claim_one(self, entry_id: int, now: datetime) -> Entry | None:
        """Claim this entry now, due or not; None if it is not pending (or not there)."""
        stamp = to_text(now)
        values = (model.CLAIM.target, stamp, stamp, entry_id, State.PENDING)
        with self._write() as conn:
            rows = conn.execute(_CLAIM_ONE, values).fetchall()
        return _entry(rows[0]) if rows else None

    # --- outcomes -----------------------------------------------------------------------

    def record_submitted(
        self,
        entry_id: int,
        job_id: str,
        output_dir: str | None,
        now: datetime,
        *,
        input_tag: str | None = None,
    ) -> Entry:
        values = (State.SUBMITTED, job_id, output_dir, input_tag, to_text(now))
        return self._move(entry_id, model.SUBMITTED, _SET_JOB, values)

    def record_duplicate(
        self,
        entry_id: int,
        existing_job_id: str,
        output_dir: str | None,
        now: datetime,
        *,
        input_tag: str | None = None,
        awaits_job: bool = False,
    ) -> Entry:
        """``awaits_job``: the entry is another version than the input of the job the guard
        named, and goes back to pending once that job ends (:meth:`end_wait`)."""
        stamp = to_text(now)
        values = (State.DUPLICATE, existing_job_id, output_dir, input_tag, int(awaits_job), stamp)
        return self._move(entry_id, model.DUPLICATE, _SET_DUPLICATE, values)

    def end_wait(self, entry_id: int, job_id: str, phase: str, now: datetime) -> Entry | None:
        """A duplicate awaiting ``job_id``, which ended in ``phase``: back to pending, due now.

        One conditional write, so it happens once however often the job is seen ended; None
        when the entry no longer awaits that job (retried, forgotten, or released already).
        """
        note = f"job {job_id} of another version ended {phase}; this version is submitted now"
        move = model.AWAITED
        values = (move.target, note, to_text(now), entry_id, *move.slots(), job_id)
        with self._write() as conn:
            rows = conn.execute(_SET_AWAITED, values).fetchall()
        return _entry(rows[0]) if rows else None

    def record_rejected(self, entry_id: int, reason: str, now: datetime) -> Entry:
        values = (State.REJECTED, reason, to_text(now))
        return self._move(entry_id, model.REJECTED, _SET_END, values)

    def record_invalid(self, entry_id: int, reason: str, now: datetime) -> Entry:
        values = (State.INVALID, reason, to_text(now))
        return self._move(entry_id, model.INVALID, _SET_END, values)

    def schedule_retry(
        self,
        entry_id: int,
        next_attempt_at: datetime,
        reason: str,
        now: datetime,
        *,
        transient: bool,
    ) -> Entry:
        """Back to pending, due at ``next_attempt_at``; the attempt count is kept.

        ``transient``: the attempt failed transiently, and counts as one more transient
        failure; a throttled or unauthorised attempt does not.
        """
        values = (State.PENDING, to_text(next_attempt_at), reason, int(transient), to_text(now))
        return self._move(entry_id, model.REQUEUE, _SET_RETRY, values)

    def release(self, entry_id: int, now: datetime) -> Entry:
        """Back to pending, due now: no call was made, or reconciliation found no job."""
        values = (State.PENDING, None, None, to_text(now))
        return self._move(entry_id, model.REQUEUE, _SET_REQUEUE, values)

    def mark_sending(self, entry_id: int, now: datetime) -> Entry:
        """A submitting entry's Create is about to be sent: ``claimed_at`` dates the attempt."""
        stamp = to_text(now)
        return self._guarded(_SET_SENDING, (stamp, stamp), entry_id, State.SUBMITTING)

    def defer_reconcile(
        self,
        entry_id: int,
        next_attempt_at: datetime,
        reason: str,
        now: datetime,
        *,
        transient: bool = False,
    ) -> Entry:
        """Keep a submitting entry whose outcome is still unknown; look again at the time.

        ``claimed_at`` is kept: it still dates the attempt that is being reconciled.
        ``transient``: the look failed (Ark did not answer), one more transient failure.
        """
        values = (to_text(next_attempt_at), reason, to_text(now), int(transient))
        return self._guarded(_SET_DEFERRED, values, entry_id, State.SUBMITTING)

    def record_phase(
        self, entry_id: int, phase: str, request_counts: RequestCounts | None, now: datetime
    ) -> Entry:
        """The job's latest phase, and its request counts when the answer had them."""
        counts = (
            (None, None, None)
            if request_counts is None
            else (request_counts.total, request_counts.completed, request_counts.failed)
        )
        values = (phase, *counts, to_text(now), entry_id)
        with self._write() as conn:
            rows = conn.execute(_SET_PHASE, values).fetchall()
            if not rows:
                if conn.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone():
                    raise LedgerFailed(f"entry {entry_id} has no job whose phase could change")
                raise EntryNotFound(entry_id)
        return _entry(rows[0])

    # --- queries ------------------------------------------------------------------------

    def get(self, entry_id: int) -> Entry:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise EntryNotFound(entry_id)
        return _entry(row)

    def find(self, watch: str, bucket: str, key: str) -> list[Entry]:
        """Every version of the object that the ledger knows, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM entries WHERE watch = ? AND bucket = ? AND key = ?"
                " ORDER BY first_seen_at, id",
                (watch, bucket, key),
            ).fetchall()
        return [_entry(row) for row in rows]

    def in_state(self, state: State, watch: str | None = None) -> Iterator[Entry]:
        """Entries in ``state``, oldest first, streamed in chunks."""
        rows = self._fetch(_IN_STATE_FIRST, (state, watch, watch, _CHUNK))
        while rows:
            yield from map(_entry, rows)
            last = rows[-1]
            after = (last["first_seen_at"], last["id"])
            rows = self._fetch(_IN_STATE_NEXT, (state, watch, watch, *after, _CHUNK))

    def entries(self, state: State | None = None, watch: str | None = None) -> Iterator[Entry]:
        """Entries (of one state, one watch, or all) by watch, bucket, key, streamed."""
        filters = (state, state, watch, watch)
        rows = self._fetch(_ENTRIES_FIRST, (*filters, _CHUNK))
        while rows:
            yield from map(_entry, rows)
            last = rows[-1]
            after = (last["watch"], last["bucket"], last["key"], last["etag"])
            rows = self._fetch(_ENTRIES_NEXT, (*filters, *after, _CHUNK))

    def _fetch(self, sql: str, values: Sequence[object]) -> list[sqlite3.Row]:
        # Whole chunks under the lock, nothing held between them: a slow reader of a long
        # stream neither blocks the workers nor keeps a read transaction open.
        with self._read() as conn:
            return conn.execute(sql, values).fetchall()

    def tracking(self, limit: int, after: Entry | None = None) -> list[Entry]:
        """Entries whose job may still change phase, least recently updated first; with
        ``after`` (the last of a previous batch), those that come after it in that order."""
        stamp = None if after is None else to_text(after.updated_at)
        values = (stamp, stamp, None if after is None else after.id, limit)
        return [_entry(row) for row in self._fetch(_TRACKING, values)]

    def counts(self, watch: str | None = None) -> dict[State, int]:
        """How many entries are in each state; every state is present, zeros included."""
        rows = self._fetch(
            "SELECT state, count(*) FROM entries WHERE (? IS NULL OR watch = ?) GROUP BY state",
            (watch, watch),
        )
        found = {State(row[0]): int(row[1]) for row in rows}
        return {state: found.get(state, 0) for state in State}

    def oldest_unsubmitted(self, watch: str) -> datetime | None:
        """When the oldest entry still waiting, pending or submitting was first seen."""
        rows = self._fetch(
            "SELECT min(first_seen_at) FROM entries WHERE watch = ? AND state IN (?, ?, ?)",
            (watch, *model.UNSUBMITTED),
        )
        return from_optional_text(rows[0][0])

    def upcoming(self, limit: int, now: datetime) -> list[Entry]:
        """What the workers are submitting or about to: entries in ``submitting`` and pending
        ones due at ``now``, oldest first (the order claims take)."""
        values = (State.PENDING, to_text(now), State.SUBMITTING, limit)
        return list(map(_entry, self._fetch(_UPCOMING, values)))

    def next_due_at(self) -> datetime | None:
        """When the next pending entry is due (a past time if one is due already)."""
        rows = self._fetch(_NEXT_DUE, (State.PENDING,))
        if not rows:
            return None
        return from_text(rows[0]["next_attempt_at"] or rows[0]["updated_at"])

    def active_jobs(self, watch: str) -> int:
        """The watch's jobs holding capacity: Queued/Initializing/Running, a phase this
        version does not know, or just created."""
        return int(self._fetch(_ACTIVE_JOBS, (watch, State.SUBMITTED))[0][0])

    # --- commands -----------------------------------------------------------------------

    def backfill(self, watch: str | None, now: datetime) -> int:
        """Baseline entries (of one watch, or all) -> pending; returns how many moved."""
        values = (model.BACKFILL.target, to_text(now), State.BASELINE, watch, watch)
        with self._write() as conn:
            return conn.execute(_BACKFILL, values).rowcount

    def retry(self, states: Collection[State], keys: Collection[str] | None, now: datetime) -> int:
        """Entries in ``states`` (of ``keys`` only, if given) -> pending, with ``attempts``
        and ``transient_failures`` back to 0.

        :class:`InvalidTransition` before anything changes if one of the states cannot go
        back to pending (a submitted entry has its job).
        """
        move = Move(frozenset(states), State.PENDING)
        values = (move.target, to_text(now), *move.slots())
        with self._write() as conn:
            if keys is None:
                return conn.execute(_RETRY_ALL, values).rowcount
            return conn.executemany(_RETRY_KEY, [(*values, key) for key in keys]).rowcount

    def forget(self, watch: str | None, keys: Collection[str]) -> int:
        """Delete every version of ``keys`` (in one watch, or all): they will count as new.

        Entries in ``submitting`` are kept: their outcome is not known yet.
        """
        with self._write() as conn:
            values = [(key, watch, watch, State.SUBMITTING) for key in keys]
            return conn.executemany(_FORGET, values).rowcount

    def prune(self, older_than: datetime) -> int:
        """Delete entries gone from their listing since before ``older_than``.

        Entries still present are never pruned (they would be submitted again), nor entries
        in ``submitting`` (their Create call still has to be reconciled).
        """
        with self._write() as conn:
            return conn.execute(_PRUNE, (to_text(older_than), State.SUBMITTING)).rowcount


def _refuse(conn: sqlite3.Connection, entry_id: int, target: State) -> None:
    """Say why a guarded write matched no row: the entry is gone, or in the wrong state."""
    row = conn.execute("SELECT state FROM entries WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        raise EntryNotFound(entry_id)
    raise InvalidTransition(State(row["state"]), target, entry_id)


def _known(conn: sqlite3.Connection, watch: str, bucket: str, page: Page) -> list[Known]:
    cursor = conn.cursor()
    # Plain tuples, handed to the diff as they come: this is the poll's hot path.
    cursor.row_factory = None
    bounds = tuple(bound for bound in (page.after, page.through) if bound is not None)
    sql = _KNOWN[page.after is None, page.through is None]
    rows: list[Known] = cursor.execute(sql, (watch, bucket, *bounds)).fetchall()
    return rows


def _insert(
    conn: sqlite3.Connection,
    scope: tuple[str, str],
    items: Sequence[tuple[Listed, State, str | None]],
    now: datetime,
) -> list[Entry]:
    """Insert the versions not yet known; returns the entries created.

    The entries are built from what was inserted rather than read back: a first listing
    inserts every object of the bucket, and parsing each row again would double its cost.
    """
    watch, bucket = scope
    stamp = to_text(now)
    moment = from_text(stamp)  # the stored precision, as a read would return it
    created: list[Entry] = []
    for item, state, note in items:
        values = (watch, bucket, item.key, item.etag, item.size, state, note, stamp, stamp)
        for (entry_id,) in conn.execute(_INSERT, values).fetchall():
            created.append(_new_entry(entry_id, scope, item, state, note, moment))
    return created


def _new_entry(
    entry_id: int,
    scope: tuple[str, str],
    item: Listed,
    state: State,
    note: str | None,
    moment: datetime,
) -> Entry:
    return Entry(
        id=entry_id,
        watch=scope[0],
        bucket=scope[1],
        key=item.key,
        etag=item.etag,
        size=item.size,
        state=state,
        attempts=0,
        transient_failures=0,
        next_attempt_at=None,
        error=note,
        job_id=None,
        phase=None,
        output_dir=None,
        input_tag=None,
        request_counts=None,
        first_seen_at=moment,
        updated_at=moment,
        claimed_at=None,
        gone_since=None,
        awaits_job=False,
    )
