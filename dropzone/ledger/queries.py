"""The ledger's read side: what status, the metrics and the workers' planning ask of it.

A mixin of :class:`~dropzone.ledger.store.LedgerStore`: every query is one read of the
store's (:meth:`read`), streamed ones a chunk per read.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from dropzone.ledger import model, sql
from dropzone.ledger.model import (
    Entry,
    EntryNotFound,
    State,
    Version,
    from_optional_text,
    from_text,
    to_text,
)
from dropzone.ledger.rows import entry_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager
    from datetime import datetime

    from dropzone.ledger.primitives import Row, Tx


# Rows per read when streaming: nothing is held between chunks.
CHUNK = 500


class Queries:
    @abstractmethod
    def read(self) -> AbstractContextManager[Tx]:
        """One consistent read; nothing is held once the block ends."""

    def _fetch(self, statement: str, values: Sequence[object]) -> list[Row]:
        # Whole chunks in one read, nothing held between them: a slow reader of a long
        # stream neither blocks the workers nor keeps a read transaction open.
        with self.read() as tx:
            return tx.rows(statement, values)

    def get(self, entry_id: int) -> Entry:
        rows = self._fetch(sql.SELECT_ID, (entry_id,))
        if not rows:
            raise EntryNotFound(entry_id)
        return entry_of(rows[0])

    def find(self, watch: str, bucket: str, key: str) -> list[Entry]:
        """Every version of the object that the ledger knows, oldest first."""
        return [entry_of(row) for row in self._fetch(sql.SELECT_KEY, (watch, bucket, key))]

    def in_state(self, state: State, watch: str | None = None) -> Iterator[Entry]:
        """Entries in ``state``, oldest first, streamed in chunks."""
        rows = self._fetch(sql.IN_STATE_FIRST, (state, watch, watch, CHUNK))
        while rows:
            yield from map(entry_of, rows)
            last = rows[-1]
            after = (last["first_seen_at"], last["id"])
            rows = self._fetch(sql.IN_STATE_NEXT, (state, watch, watch, *after, CHUNK))

    def entries(self, state: State | None = None, watch: str | None = None) -> Iterator[Entry]:
        """Entries (of one state, one watch, or all) by watch, bucket, key, streamed."""
        filters = (state, state, watch, watch)
        rows = self._fetch(sql.ENTRIES_FIRST, (*filters, CHUNK))
        while rows:
            yield from map(entry_of, rows)
            last = rows[-1]
            after = (last["watch"], last["bucket"], last["key"], last["etag"])
            rows = self._fetch(sql.ENTRIES_NEXT, (*filters, *after, CHUNK))

    def tracking(self, limit: int, after: Entry | None = None) -> list[Entry]:
        """Entries whose job may still change phase, least recently updated first; with
        ``after`` (the last of a previous batch), those that come after it in that order."""
        stamp = None if after is None else to_text(after.updated_at)
        values = (stamp, stamp, None if after is None else after.id, limit)
        return [entry_of(row) for row in self._fetch(sql.TRACKING, values)]

    def counts(self, watch: str | None = None) -> dict[State, int]:
        """How many entries are in each state; every state is present, zeros included."""
        rows = self._fetch(sql.COUNTS, (watch, watch))
        found = {State(row["state"]): int(row["entries"]) for row in rows}
        return {state: found.get(state, 0) for state in State}

    def oldest_unsubmitted(self, watch: str) -> datetime | None:
        """When the oldest entry still waiting, pending or submitting was first seen."""
        rows = self._fetch(sql.OLDEST_UNSUBMITTED, (watch, *model.UNSUBMITTED))
        return from_optional_text(rows[0]["oldest"])

    def upcoming(self, limit: int, now: datetime) -> list[Version]:
        """What the workers are submitting or about to: versions in ``submitting`` and pending
        ones due at ``now``, oldest first (the order claims take)."""
        values = (State.PENDING, to_text(now), State.SUBMITTING, limit)
        with self.read() as tx:
            return [Version(*row) for row in tx.tuples(sql.UPCOMING, values)]

    def next_due_at(self) -> datetime | None:
        """When the next pending entry is due (a past time if one is due already)."""
        rows = self._fetch(sql.NEXT_DUE, (State.PENDING,))
        if not rows:
            return None
        return from_text(rows[0]["next_attempt_at"] or rows[0]["updated_at"])

    def active_jobs(self, watch: str) -> int:
        """The watch's jobs holding capacity: Queued/Initializing/Running, a phase this
        version does not know, or just created."""
        return int(self._fetch(sql.ACTIVE_JOBS, (watch, State.SUBMITTED))[0]["active"])
