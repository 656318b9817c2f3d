"""The SQLite store's own promises: its file, its lock, durability and migrations.

What every store does is the contract suite's (tests/ledger_contract/); this file holds
what only a store that is one file on disk can promise.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from dropzone.ledger import (
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    LedgerLocked,
    LedgerMissing,
    SqliteLedger,
    State,
    schema,
)
from dropzone.ledger import model as ledger_model
from tests.harness import load_scale
from tests.ledger_contract.helpers import T0, B, W, add, at, page, record

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


@pytest.fixture
def ledger(path: Path) -> Iterator[SqliteLedger]:
    opened = SqliteLedger.open(path)
    yield opened
    opened.close()


def test_an_unchanged_poll_writes_nothing(ledger: SqliteLedger) -> None:
    """An unchanged listing costs one indexed range read and no write at all."""
    pages = [page(["in/a", "in/b"], None, "in/b"), page(["in/c"], "in/b")]
    for each in pages:
        record(ledger, each)
    changes_before = ledger._conn.total_changes
    assert [record(ledger, each, now=at(5)) for each in pages] == [[], []]
    assert ledger._conn.total_changes == changes_before


def test_a_claim_that_finds_nothing_commits_nothing(ledger: SqliteLedger, path: Path) -> None:
    """An idle worker claims about once a second: a claim with nothing due and no job made
    to record writes nothing (it committed a new token, a synced write of the disk, each
    time), and the next claim's token still rises."""
    first = add(ledger, "in/a.jsonl")
    [claimed] = ledger.claim_due(1, at(1))
    watcher = sqlite3.connect(path)
    try:
        # data_version changes when another connection commits to the database.
        version = watcher.execute("PRAGMA data_version").fetchone()[0]
        for second in range(2, 6):
            assert ledger.claim_due(8, at(second)) == []
            assert ledger.settle_and_claim((), 8, at(second), watch=W, cap=5).entries == []
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
        add(ledger, "in/b.jsonl")
        [later] = ledger.claim_due(8, at(7))
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != version
    finally:
        watcher.close()
    assert claimed.id == first.id
    assert claimed.claim_token is not None
    assert later.claim_token is not None
    assert later.claim_token > claimed.claim_token


def test_an_outcome_stays_to_be_synced_across_a_durable_commit_that_changed_nothing(
    ledger: SqliteLedger,
) -> None:
    """A FULL commit that changed no row writes no frame and syncs nothing (a role already
    held, asked for again before every poll): the next empty claim still commits, to sync
    the outcome written under NORMAL before it."""
    entry = add(ledger, "in/a.jsonl")
    assert ledger.hold_role("poll", "node-a", at(0))
    [claimed] = ledger.claim_due(1, at(1))
    fence = claimed.claim_token
    ledger.schedule_retry(entry.id, at(60), "429", at(2), transient=False, fence=fence)
    assert ledger.hold_role("poll", "node-a", at(2))  # held already: a durable commit, no row
    ran: list[str] = []
    ledger._conn.set_trace_callback(ran.append)
    try:
        assert ledger.claim_due(1, at(3)) == []
        assert ledger.claim_due(1, at(4)) == []
    finally:
        ledger._conn.set_trace_callback(None)
    ends = [s for s in ran if s in {"COMMIT", "ROLLBACK"}]
    assert ends == ["COMMIT", "ROLLBACK"]


def test_sqlite_ledger_implements_the_protocol(ledger: SqliteLedger) -> None:
    """SqliteLedger is a Ledger (checked by mypy here; the daemon only knows the protocol)."""
    as_protocol: Ledger = ledger
    assert as_protocol.counts()[State.PENDING] == 0


_HOLD = """
import sys
from datetime import UTC, datetime
from dropzone.ledger import SqliteLedger, State
ledger = SqliteLedger.open(sys.argv[1])
ledger.add_object("chat", "bucket", "k", "e", 1, State.PENDING, datetime(2024, 1, 1, tzinfo=UTC))
print("ready", flush=True)
sys.stdin.read()
"""


_KILLED_AFTER_COMMIT = """
import os, signal, sys
from datetime import UTC, datetime
from dropzone.ledger import SqliteLedger, State
ledger = SqliteLedger.open(sys.argv[1])
now = datetime(2024, 1, 1, tzinfo=UTC)
done, _ = ledger.add_object("chat", "bucket", "done", "e", 1, State.PENDING, now)
done = ledger.claim_due(1, now)[0]
entry, _ = ledger.add_object("chat", "bucket", "k", "e", 1, State.PENDING, now)
# An outcome commits without a sync of its own; the claim after it syncs both.
ledger.record_submitted(done.id, "bi-1", "out/", now, fence=done.claim_token)
ledger.claim_due(1, now)
print(entry.id, done.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@contextlib.contextmanager
def _held_elsewhere(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the ledger open (as a daemon does) until the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            yield holder
        finally:
            holder.stdin.close()
            holder.wait(timeout=10 * load_scale())


def test_second_process_is_refused_while_readers_still_work(path: Path) -> None:
    """Another process holding the ledger: opening it again fails with a message naming the
    file and the holder's pid; a read-only opener works meanwhile; after it exits, it opens."""
    with _held_elsewhere(path) as holder:
        with pytest.raises(LedgerLocked) as caught:
            SqliteLedger.open(path)
        message = str(caught.value)
        assert f"another dropzone (pid {holder.pid}) is using {path}" in message
        assert "use another ledger.path" in message
        with SqliteLedger.open(path, readonly=True) as reader:
            assert [e.key for e in reader.entries()] == ["k"]
            with pytest.raises(LedgerError, match="readonly"):
                reader.backfill(None, T0)
    with SqliteLedger.open(path) as reopened:
        assert reopened.counts()[State.PENDING] == 1


@pytest.mark.parametrize("link", ["symlink", "hard link", "symlinked folder"])
def test_the_same_file_by_another_path_is_refused(tmp_path: Path, path: Path, link: str) -> None:
    """One daemon per ledger file, however it is reached: another process holding it, the
    same file opened by a symbolic link, a hard link or a linked folder is refused, naming
    the holder's pid; the first spelling opens again once the holder is gone."""
    with SqliteLedger.open(path):
        pass
    other = tmp_path / "elsewhere" / "ledger.sqlite3"
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(path)
    elif link == "hard link":
        other.hardlink_to(path)
    else:
        other.parent.rmdir()
        other.parent.symlink_to(path.parent)
    with _held_elsewhere(path) as holder:
        with pytest.raises(LedgerLocked) as caught:
            SqliteLedger.open(other)
        assert f"another dropzone (pid {holder.pid}) is using {other}" in str(caught.value)
    with SqliteLedger.open(other) as reopened:
        assert reopened.counts()[State.PENDING] == 1


@pytest.mark.parametrize("how", ["removed", "replaced", "log removed", "log replaced"])
def test_a_ledger_file_removed_or_replaced_is_told(path: Path, how: str) -> None:
    """The ledger's file, or its write-ahead log, removed or replaced by another file while
    open: ``displaced`` names the file and what became of it (None while all is in place)."""
    with SqliteLedger.open(path) as ledger:
        add(ledger, "k")
        assert ledger.displaced() is None
        target = path if how in {"removed", "replaced"} else path.with_name(path.name + "-wal")
        if how.endswith("removed"):
            target.unlink()
        else:
            copy = target.with_name("copy")
            shutil.copyfile(target, copy)
            copy.replace(target)
        verb = how.rsplit(maxsplit=1)[-1]
        assert ledger.displaced() == f"{target} was {verb} while the ledger was open"


def test_commit_survives_sigkill(path: Path) -> None:
    """A process killed right after a claim returns: the claim and the outcome before it are
    there on reopen, and the kernel has released the dead process's lock."""
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMMIT, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    claimed_id, done_id = map(int, child.stdout.split())
    with SqliteLedger.open(path) as reopened:
        entry = reopened.get(claimed_id)
        assert (entry.state, entry.attempts) == (State.SUBMITTING, 1)
        done = reopened.get(done_id)
        assert (done.state, done.job_id) == (State.SUBMITTED, "bi-1")


def test_a_claim_is_synced_at_its_commit_and_an_outcome_rides_on_the_next(
    ledger: SqliteLedger,
) -> None:
    """The claim must be on disk before its Create goes out (synchronous = FULL at its
    commit); the outcome of an attempt need not (NORMAL: a power cut that took it leaves the
    entry in submitting, reconciled by its tag), and the next FULL commit syncs the log with
    it. SQLite's own trace of the statements the connection ran says which was which."""
    first, second = add(ledger, "in/a"), add(ledger, "in/b")
    ran: list[str] = []
    ledger._conn.set_trace_callback(ran.append)
    try:
        claimed = ledger.claim_due(1, at(1))[0]
        ledger.record_submitted(claimed.id, "bi-1", "out/", at(2), fence=claimed.claim_token)
        again = ledger.claim_due(1, at(3))[0]
        ledger.schedule_retry(
            again.id, at(60), "429", at(4), transient=False, fence=again.claim_token
        )
        ledger.claim_due(1, at(5))  # nothing due: committed all the same, to sync the retry
        ledger.claim_due(1, at(6))  # nothing due, nothing to sync: rolled back
    finally:
        ledger._conn.set_trace_callback(None)
    assert {claimed.id, again.id} == {first.id, second.id}
    levels = [s for s in ran if s.startswith(("PRAGMA synchronous", "COMMIT", "ROLLBACK"))]
    assert levels == [
        "COMMIT",  # the first claim, under FULL as opened
        "PRAGMA synchronous = NORMAL",
        "COMMIT",  # its outcome
        "PRAGMA synchronous = FULL",
        "COMMIT",  # the next claim
        "PRAGMA synchronous = NORMAL",
        "COMMIT",  # a retry scheduled
        "PRAGMA synchronous = FULL",
        "COMMIT",  # a claim that found nothing, the retry synced with it
        "ROLLBACK",  # a claim that found nothing, nothing left to sync
    ]


def test_missing_directories_are_created(tmp_path: Path) -> None:
    """A writable ledger creates its parent directories; the file is in WAL mode."""
    target = tmp_path / "a" / "b" / "ledger.sqlite3"
    with SqliteLedger.open(target):
        pass
    mode = sqlite3.connect(target).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_unusable_paths_raise_ledger_error_naming_them(tmp_path: Path) -> None:
    """Not a database, or a directory that cannot be made: a LedgerError that names the
    path, chained from the original error."""
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database, only text " * 200)
    with pytest.raises(LedgerError, match=str(junk)) as caught:
        SqliteLedger.open(junk)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError, match=str(blocker)) as caught:
        SqliteLedger.open(blocker / "ledger.sqlite3")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(LedgerError, match=r"missing\.sqlite3"):
        SqliteLedger.open(tmp_path / "missing.sqlite3", readonly=True)


def test_someone_elses_database_is_not_taken_over(tmp_path: Path) -> None:
    """An SQLite file with tables but no schema version is not ours: refused, untouched."""
    foreign = tmp_path / "app.db"
    sqlite3.connect(foreign).execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(LedgerError, match="not a dropzone ledger"):
        SqliteLedger.open(foreign)
    tables = sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("users",)]


def test_empty_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    """A version-0 (empty) file gets every migration and the current user_version."""
    target = tmp_path / "empty.sqlite3"
    target.touch()
    with SqliteLedger.open(target) as opened:
        add(opened, "k")
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migrations_apply_in_order_from_the_stored_version(tmp_path: Path) -> None:
    """An older file gets only the migrations after its version, in order, keeping its data;
    a failing migration leaves the file at the version before it."""
    target = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(target, isolation_level=None)
    schema.migrate(conn, target, schema.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO entries (watch, bucket, key, etag, size, state, first_seen_at, updated_at)"
        " VALUES ('w', 'b', 'k', 'e', 1, 'pending', 'x', 'x')"
    )
    broken = (*schema.MIGRATIONS[:1], ("ALTER TABLE entries ADD COLUMN note TEXT", "NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, target, broken)
    assert schema.user_version(conn) == 1
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    assert "note" not in columns

    later = (
        *schema.MIGRATIONS[:1],
        ("ALTER TABLE entries ADD COLUMN note TEXT",),
        ("CREATE TABLE extra (x)",),
    )
    schema.migrate(conn, target, later)
    assert schema.user_version(conn) == 3
    assert conn.execute("SELECT key, note FROM entries").fetchall() == [("k", None)]


def test_a_version_1_ledger_migrates_with_no_transient_failures_counted(tmp_path: Path) -> None:
    """A ledger from before transient failures were counted apart (schema 1) must be migrated
    before it can be read; then its entries keep their attempts and start with no transient
    failure (which of those attempts failed transiently was never recorded), and count on."""
    target = tmp_path / "v1.sqlite3"
    stamp = ledger_model.to_text(T0)
    conn = sqlite3.connect(target, isolation_level=None)
    schema.migrate(conn, target, schema.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO entries (watch, bucket, key, etag, size, state, attempts, error,"
        " first_seen_at, updated_at) VALUES (?, ?, 'k', 'e', 1, 'pending', 7, 'throttled', ?, ?)",
        (W, B, stamp, stamp),
    )
    conn.close()
    with pytest.raises(LedgerError, match="schema version 1, this dropzone uses"):
        SqliteLedger.open(target, readonly=True)
    with SqliteLedger.open(target) as opened:
        (entry,) = opened.entries()
        assert (entry.attempts, entry.transient_failures, entry.error) == (7, 0, "throttled")
        assert opened.claim_one(entry.id, at(1)) is not None
        retry = opened.schedule_retry(entry.id, at(2), "HTTP 503", at(1), transient=True)
        assert (retry.attempts, retry.transient_failures) == (8, 1)
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_2_ledger_migrates_with_no_duplicate_awaiting(tmp_path: Path) -> None:
    """A ledger from before after-active (schema 2) keeps its duplicates as outcomes: none
    awaits its job after the migration."""
    target = tmp_path / "v2.sqlite3"
    stamp = ledger_model.to_text(T0)
    conn = sqlite3.connect(target, isolation_level=None)
    schema.migrate(conn, target, schema.MIGRATIONS[:2])
    conn.execute(
        "INSERT INTO entries (watch, bucket, key, etag, size, state, job_id,"
        " first_seen_at, updated_at) VALUES (?, ?, 'k', 'e', 1, 'duplicate', 'bi-1', ?, ?)",
        (W, B, stamp, stamp),
    )
    conn.close()
    with SqliteLedger.open(target) as opened:
        (entry,) = opened.entries()
        assert (entry.state, entry.job_id, entry.awaits_job) == (State.DUPLICATE, "bi-1", False)
        assert opened.end_wait(entry.id, "bi-1", "Completed", at(1)) is None
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(path: Path) -> None:
    """A file written by a newer dropzone is refused with a clear message, and an older one
    cannot be read without migrating it first."""
    with SqliteLedger.open(path):
        pass
    sqlite3.connect(path, isolation_level=None).execute(
        f"PRAGMA user_version = {SCHEMA_VERSION + 1}"
    )
    with pytest.raises(
        LedgerError, match=r"newer than this dropzone understands .*upgrade dropzone"
    ):
        SqliteLedger.open(path)
    with pytest.raises(LedgerError, match="schema version"):
        SqliteLedger.open(path, readonly=True)
    sqlite3.connect(path, isolation_level=None).execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    with SqliteLedger.open(path):
        pass  # the failed opens released the lock


def test_the_migration_to_this_version_is_one_transaction(tmp_path: Path) -> None:
    """A reader beside a daemon migrating the file (its first start, an upgrade) never sees
    a version between: a step that fails leaves the file where it started, not part way."""
    target = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(target, isolation_level=None)
    broken = (*schema.MIGRATIONS, ("NOT SQL",))
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn, target, broken)
    assert schema.user_version(conn) == 0
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


@pytest.mark.parametrize("made", ["empty file", "header only"])
def test_a_ledger_still_being_made_reads_as_none_yet(tmp_path: Path, made: str) -> None:
    """Read-only, a file the first daemon has just made and not yet filled is no ledger yet
    (what `status` or `run --dry-run` say for a missing one), not "migrate it"."""
    target = tmp_path / "ledger.sqlite3"
    target.touch()
    if made == "header only":
        conn = sqlite3.connect(target, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
    with pytest.raises(LedgerMissing, match="no ledger in"):
        SqliteLedger.open(target, readonly=True)


def test_a_version_5_ledger_keeps_its_notices_and_they_outlive_their_entries(
    tmp_path: Path,
) -> None:
    """The outbox of schema 5 (a notice went with its entry) is carried over whole, and from
    then on a forgotten entry's notice stays until it is delivered."""
    target = tmp_path / "v5.sqlite3"
    with SqliteLedger.open(target) as current:
        current.announce({W: frozenset({"rejected"})})
        add(current, "k")
        (claimed,) = current.claim_due(1, at(1))
        current.record_rejected(claimed.id, "denied", at(2))
        (notice,) = current.notices_due(at(3))
    conn = sqlite3.connect(target, isolation_level=None)
    stamp = ledger_model.to_text(at(2))
    # Back to schema 5 as it was: the table with its cascading foreign key.
    conn.executescript(
        "BEGIN; DROP TABLE notices;"
        + ";".join(schema.MIGRATIONS[4])
        + "; INSERT INTO notices (entry_id, watch, event, delivery_id, payload, happened_at,"
        f" due_at) VALUES ({claimed.id}, '{W}', 'rejected', '{notice.delivery_id}', "
        f"'{notice.body}', '{stamp}', '{stamp}'); PRAGMA user_version = 5;"
        " COMMIT;"
    )
    # A later notice gone with its entry (schema 5 cascaded): its id is never used again.
    conn.execute(
        "INSERT INTO notices (entry_id, watch, event, delivery_id, payload, happened_at, due_at)"
        " VALUES (?, ?, 'rejected', 'dz_gone', '{}', ?, ?)",
        (claimed.id, W, stamp, stamp),
    )
    (highest,) = conn.execute("SELECT max(id) FROM notices").fetchone()
    conn.execute("DELETE FROM notices WHERE delivery_id = 'dz_gone'")
    conn.close()
    with SqliteLedger.open(target) as opened:
        assert [n.delivery_id for n in opened.notices_due(at(3))] == [notice.delivery_id]
        assert opened.forget(None, ["k"]) == 1
        (kept,) = opened.notices_due(at(3))
        assert (kept.delivery_id, kept.body) == (notice.delivery_id, notice.body)
        assert opened.settle_notice(kept.id, "delivered", at(4))
        opened.announce({W: frozenset({"rejected"})})
        add(opened, "k2")
        (again,) = opened.claim_due(1, at(5))
        opened.record_rejected(again.id, "denied", at(6))
        assert [n.id > highest for n in opened.notices_due(at(7))] == [True]
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
