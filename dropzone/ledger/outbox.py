"""The notifications outbox: notices written with the outcomes they tell of, then delivered.

A mixin of :class:`~dropzone.ledger.store.LedgerStore`. The store writes a notice in the
transaction of the outcome (:meth:`Outbox.tell`), for the watches and events it was told to
(:meth:`Outbox.announce`); a notifier reads those due, and settles each (delivered, or given
up) or puts it off to a later try. A notice is settled once: the writes are conditioned on it
not being settled yet.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from types import MappingProxyType
from typing import TYPE_CHECKING

from dropzone.ledger.model import from_text, to_text
from dropzone.ledger.notices import delivery_id, event_of, notice_of, payload

if TYPE_CHECKING:
    from collections.abc import Mapping
    from contextlib import AbstractContextManager
    from datetime import datetime

    from dropzone.ledger.model import Entry
    from dropzone.ledger.notices import Notice, Settled
    from dropzone.ledger.primitives import Tx

_TELL = (
    "INSERT INTO notices (entry_id, watch, event, delivery_id, payload, happened_at, due_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO NOTHING"
)
_DUE = (
    "SELECT id, watch, event, delivery_id, payload, happened_at, tries FROM notices"
    " WHERE settled_at IS NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?"
)
_SETTLE = (
    "UPDATE notices SET settled_at = ?, outcome = ?, error = coalesce(?, error)"
    " WHERE id = ? AND settled_at IS NULL"
)
_DEFER = (
    "UPDATE notices SET tries = tries + 1, due_at = ?, error = ?"
    " WHERE id = ? AND settled_at IS NULL"
)
_PENDING = "SELECT count(*) AS pending FROM notices WHERE settled_at IS NULL"
_NEXT_DUE = "SELECT min(due_at) AS due FROM notices WHERE settled_at IS NULL"

_NOBODY: Mapping[str, frozenset[str]] = MappingProxyType({})


class Outbox:
    notify_on: Mapping[str, frozenset[str]] = _NOBODY

    @abstractmethod
    def write(self) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def read(self) -> AbstractContextManager[Tx]: ...

    def announce(self, wanted: Mapping[str, frozenset[str]]) -> None:
        """From now on, write a notice of these events (by watch) with their outcomes; a
        reload gives the new set. Nothing is written for a watch that is not named."""
        self.notify_on = MappingProxyType(dict(wanted))

    def tell(self, tx: Tx, entry: Entry, now: datetime) -> None:
        """In the outcome's own transaction: a notice of it, if its watch asked for one."""
        event = event_of(entry)
        if event is None or event not in self.notify_on.get(entry.watch, ()):
            return
        stamp = to_text(now)
        body = json.dumps(payload(entry, event, now), separators=(",", ":"))
        values = (entry.id, entry.watch, event, delivery_id(entry, event), body, stamp, stamp)
        tx.run(_TELL, values)

    def notices_due(self, now: datetime, limit: int = 100) -> list[Notice]:
        """Unsettled notices due by ``now``, the oldest due first."""
        with self.read() as tx:
            return [notice_of(row) for row in tx.rows(_DUE, (to_text(now), limit))]

    def settle_notice(
        self, notice_id: int, outcome: Settled, now: datetime, error: str | None = None
    ) -> bool:
        """Delivered, or given up (``error`` says why; else the last failed try's reason is
        kept): never tried again. False when it was settled already (or is gone with its
        entry)."""
        with self.write() as tx:
            return tx.run(_SETTLE, (to_text(now), outcome, error, notice_id)) == 1

    def defer_notice(self, notice_id: int, due: datetime, error: str) -> bool:
        """A delivery failed: one more try counted, the next at ``due``."""
        with self.write() as tx:
            return tx.run(_DEFER, (to_text(due), error, notice_id)) == 1

    def notices_pending(self) -> tuple[int, datetime | None]:
        """How many notices are not settled yet, and when the first of them is due."""
        with self.read() as tx:
            pending = int(tx.rows(_PENDING)[0]["pending"])
            due = tx.rows(_NEXT_DUE)[0]["due"]
        return pending, (None if due is None else from_text(str(due)))
