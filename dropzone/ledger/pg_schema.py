"""The PostgreSQL schema as ordered migrations; its version is a row of ``dropzone_schema``.

The tables are the SQLite store's, column for column, so that one set of statements
(:mod:`dropzone.ledger.sql`) serves both: times are the same fixed-width ISO-8601 text (it
sorts as the instants do), flags are 0/1 integers. The pending migrations run in one
transaction under an advisory transaction lock, so replicas starting together apply them
once; steps are additive, so an older replica keeps working beside a newer one during a
rolling update. A released migration is never edited: a change is a new one appended to
:data:`MIGRATIONS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

Migration = tuple[str, ...]

# Any fixed number: every dropzone that migrates a database takes this lock first.
MIGRATION_LOCK = 0x64726F70  # "drop"

# Every text compares byte by byte (COLLATE "C"), as S3 orders keys and SQLite compares text,
# whatever the database's own locale: the listing diff reads a page's key range in the order
# the listing gave it, and times sort as the instants they name.
_V1_INITIAL: Migration = (
    """
    CREATE TABLE watches (
        name TEXT COLLATE "C" PRIMARY KEY,
        bucket TEXT COLLATE "C" NOT NULL,
        prefix TEXT COLLATE "C" NOT NULL,
        baseline_done INTEGER NOT NULL DEFAULT 0 CHECK (baseline_done IN (0, 1)),
        scope_since TEXT COLLATE "C" NOT NULL
    )
    """,
    # An identity never reuses an id after forget/prune, as SQLite's AUTOINCREMENT does not.
    """
    CREATE TABLE entries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        watch TEXT COLLATE "C" NOT NULL,
        bucket TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        etag TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        state TEXT COLLATE "C" NOT NULL
            CHECK (state IN ('baseline', 'waiting', 'pending', 'submitting',
                             'submitted', 'duplicate', 'invalid', 'rejected')),
        attempts INTEGER NOT NULL DEFAULT 0,
        transient_failures INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT COLLATE "C",
        error TEXT COLLATE "C",
        job_id TEXT COLLATE "C",
        phase TEXT COLLATE "C",
        output_dir TEXT COLLATE "C",
        input_tag TEXT COLLATE "C",
        requests_total BIGINT,
        requests_completed BIGINT,
        requests_failed BIGINT,
        first_seen_at TEXT COLLATE "C" NOT NULL,
        updated_at TEXT COLLATE "C" NOT NULL,
        claimed_at TEXT COLLATE "C",
        gone_since TEXT COLLATE "C",
        awaits_job INTEGER NOT NULL DEFAULT 0 CHECK (awaits_job IN (0, 1))
    )
    """,
    "CREATE UNIQUE INDEX entries_identity ON entries (watch, bucket, key, etag)",
    "CREATE INDEX entries_state ON entries (state, first_seen_at)",
    # NULLS FIRST as the next-due query reads it (a pending entry due now has none).
    "CREATE INDEX entries_schedule ON entries (state, next_attempt_at NULLS FIRST)",
    """
    CREATE INDEX entries_tracking ON entries (watch, updated_at)
    WHERE job_id IS NOT NULL
      AND (phase IS NULL OR phase NOT IN ('Completed', 'Terminated', 'Failed'))
    """,
    "CREATE INDEX entries_gone ON entries (gone_since) WHERE gone_since IS NOT NULL",
)

# Replicas: fenced claims (a token from a sequence, and the claiming node), node leases and
# the singleton roles, as in the SQLite schema's version 4. expires_at is seconds since the
# epoch by the server's clock_timestamp(), so no node's clock decides a lease.
_V2_NODES: Migration = (
    "ALTER TABLE entries ADD COLUMN claim_token BIGINT",
    'ALTER TABLE entries ADD COLUMN claimed_by TEXT COLLATE "C"',
    "CREATE SEQUENCE claim_tokens",
    """
    CREATE TABLE nodes (
        id TEXT COLLATE "C" PRIMARY KEY,
        host TEXT COLLATE "C" NOT NULL,
        started_at TEXT COLLATE "C" NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE roles (
        name TEXT COLLATE "C" PRIMARY KEY,
        holder TEXT COLLATE "C" NOT NULL,
        since TEXT COLLATE "C" NOT NULL
    )
    """,
)

# Notifications: the outbox of the SQLite schema's version 5.
_V3_NOTICES: Migration = (
    """
    CREATE TABLE notices (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
        watch TEXT COLLATE "C" NOT NULL,
        event TEXT COLLATE "C" NOT NULL,
        delivery_id TEXT COLLATE "C" NOT NULL UNIQUE,
        payload TEXT NOT NULL,
        happened_at TEXT COLLATE "C" NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        due_at TEXT COLLATE "C" NOT NULL,
        settled_at TEXT COLLATE "C",
        outcome TEXT COLLATE "C" CHECK (outcome IN ('delivered', 'gave_up', 'skipped')),
        error TEXT
    )
    """,
    "CREATE INDEX notices_due ON notices (due_at) WHERE settled_at IS NULL",
    "CREATE INDEX notices_entry ON notices (entry_id)",
)

# A notice outlives its entry until it is settled (the SQLite schema's version 6).
_V4_NOTICES_OUTLIVE_ENTRIES: Migration = (
    "ALTER TABLE notices ALTER COLUMN entry_id DROP NOT NULL",
    "ALTER TABLE notices DROP CONSTRAINT notices_entry_id_fkey",
    """
    ALTER TABLE notices ADD CONSTRAINT notices_entry_id_fkey
        FOREIGN KEY (entry_id) REFERENCES entries (id) ON DELETE SET NULL
    """,
)

MIGRATIONS: tuple[Migration, ...] = (
    _V1_INITIAL,
    _V2_NODES,
    _V3_NOTICES,
    _V4_NOTICES_OUTLIVE_ENTRIES,
)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS dropzone_schema (version INTEGER NOT NULL)",
    "INSERT INTO dropzone_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT FROM dropzone_schema)",
)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version; 0 for a database dropzone never used. The connection
    reads rows as dicts (the store's)."""
    present = conn.execute("SELECT to_regclass('dropzone_schema') IS NOT NULL AS found").fetchone()
    if not present or not present["found"]:
        return 0
    row = conn.execute("SELECT version FROM dropzone_schema").fetchone()
    return 0 if row is None else int(row["version"])


def migrate(conn: psycopg.Connection[Any], migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Bring the database up to ``len(migrations)`` in one transaction under
    :data:`MIGRATION_LOCK`, reading the version once it holds it: a replica reading beside
    the one migrating sees the schema before or after, never part way."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for statement in _VERSION_TABLE:
            conn.execute(statement)
        # Newer than this dropzone knows: a newer replica migrated it during a rolling
        # update, and the steps are additive, so this one goes on with what it knows.
        version = schema_version(conn)
        if version >= len(migrations):
            return
        for step in migrations[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute("UPDATE dropzone_schema SET version = %s", (len(migrations),))
