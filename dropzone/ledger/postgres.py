"""The PostgreSQL ledger store: one database shared by every replica, through a connection pool.

What a ledger does is :class:`~dropzone.ledger.store.LedgerStore`'s; this module supplies its
transactions over psycopg 3 (synchronous, like the daemon's threads) and psycopg_pool. Values
are bound on the client (``ClientCursor``): the pool's transactions keep no prepared statements
and no session state (what replicas will need behind a transaction-mode pooler), and a ``NULL``
given for an optional filter needs no declared type. Nothing holds a session lock: replicas
share the ledger through fenced claims and leases (:mod:`dropzone.ledger.leases`), and only
transaction-level advisory locks (a migration, a watch's cap), so a transaction-mode pooler
may stand in front. A claim takes due rows with ``FOR UPDATE SKIP LOCKED`` in a
``MATERIALIZED`` CTE: as a subquery of ``UPDATE ... FROM`` the planner may run it again and
claim more rows than asked (PostgreSQL bug #15715).
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from dropzone.ledger import model
from dropzone.ledger.model import (
    LedgerFailed,
    LedgerMissing,
    LedgerUnusable,
    State,
)
from dropzone.ledger.pg_schema import MIGRATION_LOCK, SCHEMA_VERSION, migrate, schema_version
from dropzone.ledger.store import LedgerStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from dropzone.ledger.primitives import Row, Tx

_CONNECT_TIMEOUT_S = 10
# A dead peer is noticed within about a minute, not when the kernel gives up (hours).
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_MAX_IDLE_S = 120.0
# What a probe (/readyz) waits for a connection: an answer in time, or not ready.
_PROBE_TIMEOUT_S = 5.0
# A watch's cap is held under this key and the hash of the watch's name (transaction locks).
CAP_LOCK = MIGRATION_LOCK + 1
# How long a worker waits for a free connection before the attempt fails (and is retried).
_POOL_TIMEOUT_S = 30.0
# Values in the CTE's order: pending, now, watch, watch, limit; then the update's.
_CLAIM_DUE = (
    "WITH due AS MATERIALIZED ("
    " SELECT id FROM entries WHERE state = %s"
    "  AND (next_attempt_at IS NULL OR next_attempt_at <= %s) AND (%s IS NULL OR watch = %s)"
    "  ORDER BY first_seen_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " UPDATE entries SET state = %s, attempts = attempts + 1, next_attempt_at = NULL,"
    " claimed_at = %s, claim_token = %s, claimed_by = %s, updated_at = %s"
    " FROM due WHERE entries.id = due.id AND entries.state = %s"
    " RETURNING entries.*"
)


def placeholders(statement: str) -> str:
    """The portable statement in psycopg's spelling: ``?`` -> ``%s`` (the statements are
    this package's constants, with no ``%`` and no ``?`` inside a literal)."""
    return statement.replace("?", "%s")


def described(url: str) -> str:
    """The database as messages name it: host, port and name, never a password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql (a malformed url)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"postgresql://{host}:{port}/{parts.get('dbname') or ''}"


def _plain(values: Sequence[object]) -> tuple[object, ...]:
    # A state travels as its text, whatever psycopg would make of an enum member.
    return tuple(value.value if isinstance(value, Enum) else value for value in values)


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(placeholders(statement), _plain(values)).fetchall()
        return rows

    def tuples(self, statement: str, values: Sequence[object] = ()) -> list[Any]:
        with self._conn.cursor(row_factory=tuple_row) as cursor:
            return cursor.execute(placeholders(statement), _plain(values)).fetchall()

    def run(self, statement: str, values: Sequence[object] = ()) -> int:
        return self._conn.execute(placeholders(statement), _plain(values)).rowcount

    def run_many(self, statement: str, values: Iterable[Sequence[object]]) -> int:
        with self._conn.cursor() as cursor:
            cursor.executemany(placeholders(statement), [_plain(each) for each in values])
            return cursor.rowcount


class PostgresLedger(LedgerStore):
    """The ledger in a PostgreSQL database (implements :class:`~dropzone.ledger.Ledger`).

    Open it with :meth:`open`; safe to share between threads (each transaction takes a
    connection from the pool and gives it back).
    """

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], where: str) -> None:
        self._pool = pool
        self._where = where

    @classmethod
    def open(
        cls,
        url: str,
        *,
        password: str | None = None,
        lock: bool = False,
        readonly: bool = False,
        create: bool = True,
        max_connections: int = 8,
    ) -> Self:
        """Connect to the database at ``url``; with ``create``, make or migrate the schema.

        ``password``, when given, is used instead of libpq's own (``PGPASSWORD``, ``.pgpass``):
        it comes from a file, never the config's text. ``lock`` is the SQLite store's (one
        daemon per file): replicas share this one. ``readonly`` (``status``) and ``create=False``
        (``retry``, ``forget``, ...) need a ledger that exists; ``readonly`` changes nothing.
        """
        where = described(url)
        extra = _connect_options(password)
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={**extra, "cursor_factory": psycopg.ClientCursor, "row_factory": dict_row},
            timeout=_POOL_TIMEOUT_S,
            # A connection the server or the network closed while it sat in the pool is found
            # when it is taken, not by the write that needed it; idle ones are let go before
            # the usual idle time-outs of servers and firewalls.
            check=ConnectionPool.check_connection,
            max_idle=_MAX_IDLE_S,
            open=False,
            name="dropzone-ledger",
        )
        del lock  # replicas share the ledger; their claims are fenced instead
        try:
            # One connection first, on its own: a wrong password or host fails at once with
            # the server's words, where the pool would retry in the background until its
            # time-out and say only that.
            with psycopg.connect(url, **extra, row_factory=dict_row) as conn:
                _check_exists(conn, where, readonly=readonly, create=create)
                if not readonly:
                    migrate(conn)
            pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
        except (psycopg.Error, PoolTimeout) as exc:
            pool.close()
            raise LedgerUnusable(f"cannot open ledger {where}: {_reason(exc)}") from exc
        except BaseException:
            pool.close()
            raise
        return cls(pool, where)

    def reachable(self) -> bool:
        """Whether the database answers now (/readyz), within a few seconds."""
        try:
            with self._pool.connection(timeout=_PROBE_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    @property
    def where(self) -> str:
        return self._where

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[_PgTx]:
        # Every commit stays durable: waiting for it costs this process a round trip either
        # way (the WAL flush is the server's work), and a SET LOCAL synchronous_commit would
        # add one.
        del durable
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise LedgerFailed(f"ledger {self._where}: {_reason(exc)}") from exc

    @contextmanager
    def read(self) -> Iterator[_PgTx]:
        # A read is a transaction too: one snapshot, given back to the pool at once.
        with self.write() as tx:
            yield tx

    def claim_rows(
        self, tx: Tx, limit: int, now: str, watch: str | None, claim: tuple[int, str | None]
    ) -> list[Row]:
        pending = State.PENDING
        values = (pending, now, watch, watch, limit, model.CLAIM.target, now, *claim, now, pending)
        # Already in psycopg's spelling: no '?' to translate.
        return tx.rows(_CLAIM_DUE, values)

    # The server's clock, whichever node asks (clock_timestamp: not the transaction's start).
    db_now = "extract(epoch FROM clock_timestamp())::float8"

    def next_token(self, tx: Tx) -> int:
        return int(tx.rows("SELECT nextval('claim_tokens') AS token")[0]["token"])

    def lock_watch(self, tx: Tx, watch: str) -> None:
        tx.rows("SELECT pg_advisory_xact_lock(?, hashtext(?)) AS held", (CAP_LOCK, watch))

    keep_ids_clause = " OVERRIDING SYSTEM VALUE"

    def after_copy(self, tx: Tx, highest_id: int) -> None:
        # Rows copied with their ids leave the identity where it was: move it past them, and
        # the tokens past the copied claims'.
        tx.rows(
            "SELECT setval(pg_get_serial_sequence('entries', 'id'),"
            " greatest((SELECT max(id) FROM entries), ?, 1)) AS next",
            (highest_id,),
        )
        tx.rows(
            "SELECT setval('claim_tokens', greatest((SELECT max(claim_token) FROM entries), 1))"
            " AS next"
        )

    def displaced(self) -> str | None:
        """Never: a database is not a file that can be replaced under the daemon, and a
        replica that lost its connection, or its lease, is fenced by its claims' tokens."""
        return None

    def close(self) -> None:
        self._pool.close()


def probe_postgres(url: str, password: str | None = None) -> str:
    """Connect, begin a transaction and roll it back, changing nothing (``dropzone check``);
    what the database holds, or a LedgerUnusable saying what stands in the way."""
    where = described(url)
    try:
        with psycopg.connect(url, **_connect_options(password), row_factory=dict_row) as conn:
            version = schema_version(conn)
            if version == 0:
                row = conn.execute(
                    "SELECT has_schema_privilege(current_schema(), 'CREATE') AS can"
                ).fetchone()
                if not row or not row["can"]:
                    raise LedgerUnusable(
                        f"{where}: the user may not create tables in its schema; grant CREATE"
                        " (the first run makes the ledger's tables)"
                    )
                conn.rollback()
                return "answers; no ledger yet: the first run creates its tables"
            counted = conn.execute("SELECT count(*) AS entries FROM entries").fetchone()
            conn.rollback()
    except psycopg.Error as exc:
        raise LedgerUnusable(f"cannot reach {where}: {_reason(exc)}") from exc
    entries = counted["entries"] if counted else 0
    if version > SCHEMA_VERSION:
        raise LedgerUnusable(f"{where} has schema version {version}, newer than this dropzone's")
    migrated = "" if version == SCHEMA_VERSION else f"; schema {version} migrates on the next run"
    return f"answers ({entries} entries{migrated})"


def _connect_options(password: str | None) -> dict[str, Any]:
    """What every connection of the store is opened with (the pool's, the lock's, a probe's)."""
    options: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT_S, **_KEEPALIVES}
    if password is not None:
        options["password"] = password
    return options


def _check_exists(
    conn: psycopg.Connection[Any], where: str, *, readonly: bool, create: bool
) -> None:
    version = schema_version(conn)
    if version == 0 and (readonly or not create):
        raise LedgerMissing(
            f"no ledger in {where} ([ledger] url): nothing has run with this config yet,"
            " or it points elsewhere"
        )
    if readonly and version < SCHEMA_VERSION:
        raise LedgerUnusable(
            f"ledger {where} has schema version {version}, this dropzone uses"
            f" {SCHEMA_VERSION}: open it read-write once (dropzone run) to migrate it"
        )


def _reason(exc: BaseException) -> str:
    """The driver's message on one line (libpq's may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
