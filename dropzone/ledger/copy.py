"""One ledger copied into another store, row for row (``dropzone ledger copy``).

Ids are kept, so an id in an old log line still names the same entry (and the next new id
follows the highest the source ever gave, a forgotten entry's included); an entry copied in
``submitting`` is reconciled by the first daemon on the new ledger, as after a crash (its
claim is older than that daemon's start). The target must hold no entries: a copy never
merges two histories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropzone.ledger.model import LedgerUnusable

if TYPE_CHECKING:
    from dropzone.ledger.primitives import Tx
    from dropzone.ledger.store import LedgerStore

WATCH_COLUMNS = ("name", "bucket", "prefix", "baseline_done", "scope_since")
ENTRY_COLUMNS = (
    "id",
    "watch",
    "bucket",
    "key",
    "etag",
    "size",
    "state",
    "attempts",
    "transient_failures",
    "next_attempt_at",
    "error",
    "job_id",
    "phase",
    "output_dir",
    "input_tag",
    "requests_total",
    "requests_completed",
    "requests_failed",
    "first_seen_at",
    "updated_at",
    "claimed_at",
    "gone_since",
    "awaits_job",
    "claim_token",
    "claimed_by",
)
# A notice's own id is not kept: nothing outside the ledger names it (its delivery_id does).
NOTICE_COLUMNS = (
    "entry_id",
    "watch",
    "event",
    "delivery_id",
    "payload",
    "happened_at",
    "tries",
    "due_at",
    "settled_at",
    "outcome",
    "error",
)
_CHUNK = 1000
_WATCHES = f"SELECT {', '.join(WATCH_COLUMNS)} FROM watches ORDER BY name"  # noqa: S608
_ENTRIES = f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608
_NOTICES = f"SELECT id, {', '.join(NOTICE_COLUMNS)} FROM notices WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608


def _insert(table: str, columns: tuple[str, ...], target: LedgerStore) -> str:
    marks = ", ".join("?" * len(columns))
    keep_ids = target.keep_ids_clause if table == "entries" else ""
    return f"INSERT INTO {table} ({', '.join(columns)}){keep_ids} VALUES ({marks})"  # noqa: S608


def copy_ledger(source: LedgerStore, target: LedgerStore) -> tuple[int, int]:
    """Every watch and entry of ``source`` into ``target``, in one transaction of the
    target's (a copy cut short leaves it empty); returns (watches, entries) copied."""
    with target.write() as tx:
        held = tx.rows(
            "SELECT (SELECT count(*) FROM entries) AS entries,"
            " (SELECT count(*) FROM watches) AS watches"
        )[0]
        if held["entries"] or held["watches"]:
            raise LedgerUnusable(
                f"ledger {target.where} already holds {held['entries']} entries of"
                f" {held['watches']} watch(es): copy into an empty one"
            )
        with source.read() as read:
            watches = read.tuples(_WATCHES)
            issued = source.highest_id(read)
        tx.run_many(_insert("watches", WATCH_COLUMNS, target), watches)
        copied, after = 0, 0
        while True:
            with source.read() as read:
                rows = read.tuples(_ENTRIES, (after, _CHUNK))
            if not rows:
                break
            tx.run_many(_insert("entries", ENTRY_COLUMNS, target), rows)
            copied += len(rows)
            after = rows[-1][0]
        _copy_notices(source, target, tx)
        target.after_copy(tx, issued)
    return len(watches), copied


def _copy_notices(source: LedgerStore, target: LedgerStore, tx: Tx) -> None:
    """The outbox too: a notice not yet delivered is delivered from the new ledger, and one
    delivered is not delivered again."""
    after = 0
    while True:
        with source.read() as read:
            rows = read.tuples(_NOTICES, (after, _CHUNK))
        if not rows:
            return
        tx.run_many(_insert("notices", NOTICE_COLUMNS, target), [row[1:] for row in rows])
        after = rows[-1][0]
