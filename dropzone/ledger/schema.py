"""The SQLite schema as an ordered list of migrations; its version is ``PRAGMA user_version``.

Each migration is frozen text that moves a ledger from version N to N + 1. A released migration
is never edited: a change is a new migration appended to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import sqlite3
from contextlib import suppress
from typing import TYPE_CHECKING

from dropzone.ledger.model import LedgerUnusable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

Migration = tuple[str, ...]

_V1_INITIAL: Migration = (
    """
    CREATE TABLE watches (
        name TEXT PRIMARY KEY,
        bucket TEXT NOT NULL,
        prefix TEXT NOT NULL,
        baseline_done INTEGER NOT NULL DEFAULT 0 CHECK (baseline_done IN (0, 1)),
        scope_since TEXT NOT NULL
    )
    """,
    # AUTOINCREMENT: an id is never reused after forget/prune, so an id in a log line or in a
    # worker's hands always means the same entry.
    """
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        watch TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('baseline', 'waiting', 'pending', 'submitting',
                                             'submitted', 'duplicate', 'invalid', 'rejected')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        error TEXT,
        job_id TEXT,
        phase TEXT,
        output_dir TEXT,
        input_tag TEXT,
        requests_total INTEGER,
        requests_completed INTEGER,
        requests_failed INTEGER,
        first_seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        claimed_at TEXT,
        gone_since TEXT
    )
    """,
    # The identity; its (watch, bucket, key) prefix also serves the listing diff's range reads.
    "CREATE UNIQUE INDEX entries_identity ON entries (watch, bucket, key, etag)",
    # Claims walk pending entries oldest first; counts and the backlog age use it too.
    "CREATE INDEX entries_state ON entries (state, first_seen_at)",
    "CREATE INDEX entries_schedule ON entries (state, next_attempt_at)",
    # Jobs still worth polling (and counting against a watch's cap) are few among many
    # finished ones.
    """
    CREATE INDEX entries_tracking ON entries (watch, updated_at)
    WHERE job_id IS NOT NULL
      AND (phase IS NULL OR phase NOT IN ('Completed', 'Terminated', 'Failed'))
    """,
    "CREATE INDEX entries_gone ON entries (gone_since) WHERE gone_since IS NOT NULL",
)

# `attempts` counts claims, so throttled or unauthorised attempts spent the budget meant for
# transient failures. Rows that already exist start at 0: how many of their attempts failed
# transiently was never recorded, and a fresh budget costs at most a few more retries, where
# copying `attempts` would reject an entry that was only ever throttled on its next 5xx.
_V2_TRANSIENT_FAILURES: Migration = (
    "ALTER TABLE entries ADD COLUMN transient_failures INTEGER NOT NULL DEFAULT 0",
)

# `on_change = "after-active"`: a duplicate that waits for the job it names (its job_id) to
# end, and is then submitted. Existing duplicates were recorded as outcomes: they do not wait.
_V3_AWAITS_JOB: Migration = (
    (
        "ALTER TABLE entries ADD COLUMN awaits_job INTEGER NOT NULL DEFAULT 0"
        " CHECK (awaits_job IN (0, 1))"
    ),
)

# Replicas (and the one daemon of a file, alike): a claim is stamped with a fencing token and
# the node that holds it, and every later write of that attempt is conditioned on the token.
# Nodes hold leases, and the singleton roles (the lister of a watch, the tracker, the pruner)
# are held by a live node. Existing rows were claimed by no node: a submitting one among them
# is stranded, and reconciled by the next start, as before.
_V4_NODES: Migration = (
    "ALTER TABLE entries ADD COLUMN claim_token INTEGER",
    "ALTER TABLE entries ADD COLUMN claimed_by TEXT",
    # One row: the last token given (SQLite has no sequences; writes are serialised anyway).
    "CREATE TABLE claim_tokens (last INTEGER NOT NULL)",
    "INSERT INTO claim_tokens (last) VALUES (0)",
    # expires_at: seconds since the epoch by the database's clock, never a node's.
    """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
    "CREATE TABLE roles (name TEXT PRIMARY KEY, holder TEXT NOT NULL, since TEXT NOT NULL)",
)

# Notifications: an outbox written in the transaction of the outcome it tells of, so that a
# crash loses neither, and delivered from there (dropzone.notify). delivery_id is the notice's
# identity: the same outcome recorded twice is one notice.
_V5_NOTICES: Migration = (
    """
    CREATE TABLE notices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
        watch TEXT NOT NULL,
        event TEXT NOT NULL,
        delivery_id TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        happened_at TEXT NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        due_at TEXT NOT NULL,
        settled_at TEXT,
        outcome TEXT CHECK (outcome IN ('delivered', 'gave_up', 'skipped')),
        error TEXT
    )
    """,
    "CREATE INDEX notices_due ON notices (due_at) WHERE settled_at IS NULL",
    "CREATE INDEX notices_entry ON notices (entry_id)",
)

# A notice outlives its entry until it is settled: forgetting an entry (to submit its key
# again) does not take back what its outcome told. SQLite cannot change a foreign key in
# place, so the table is made again with entry_id set to NULL when the entry goes.
_V6_NOTICES_OUTLIVE_ENTRIES: Migration = (
    """
    CREATE TABLE notices_v6 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id INTEGER REFERENCES entries (id) ON DELETE SET NULL,
        watch TEXT NOT NULL,
        event TEXT NOT NULL,
        delivery_id TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        happened_at TEXT NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        due_at TEXT NOT NULL,
        settled_at TEXT,
        outcome TEXT CHECK (outcome IN ('delivered', 'gave_up', 'skipped')),
        error TEXT
    )
    """,
    # The id counter carried over too: a notice's id is never used again, even one deleted.
    """
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'notices_v6', seq FROM sqlite_sequence WHERE name = 'notices'
    """,
    "INSERT INTO notices_v6 SELECT * FROM notices",
    "DROP TABLE notices",
    "ALTER TABLE notices_v6 RENAME TO notices",
    "CREATE INDEX notices_due ON notices (due_at) WHERE settled_at IS NULL",
    "CREATE INDEX notices_entry ON notices (entry_id)",
)

MIGRATIONS: tuple[Migration, ...] = (
    _V1_INITIAL,
    _V2_TRANSIENT_FAILURES,
    _V3_AWAITS_JOB,
    _V4_NODES,
    _V5_NOTICES,
    _V6_NOTICES_OUTLIVE_ENTRIES,
)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(
    conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> None:
    """Bring the file up to ``len(migrations)`` in one committed transaction: a reader beside
    the daemon migrating it (``dropzone status`` at its first start) sees the schema before
    or after, never part way, and a failed step leaves the file as it was.

    ``conn`` must be in autocommit mode (``isolation_level=None``): the transaction is
    explicit.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read under the write lock: another opener may have migrated it meanwhile.
        version = _version_to_migrate(conn, path, len(migrations))
        for step in migrations[version:]:
            for statement in step:
                conn.execute(statement)
        if version < len(migrations):
            conn.execute(f"PRAGMA user_version = {len(migrations):d}")
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (SQLITE_FULL does): a second ROLLBACK
        # would fail and hide the error that matters.
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _version_to_migrate(conn: sqlite3.Connection, path: Path, known: int) -> int:
    version = user_version(conn)
    if version > known:
        raise LedgerUnusable(
            f"ledger {path} has schema version {version}, newer than this dropzone"
            f" understands ({known}); upgrade dropzone or use another ledger.path"
        )
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        # Adding our tables to somebody else's database would be a poor surprise.
        raise LedgerUnusable(f"{path} is an SQLite database but not a dropzone ledger")
    return version
