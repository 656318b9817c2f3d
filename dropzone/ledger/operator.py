"""What operators change on purpose (``backfill``, ``retry``, ``forget``), and pruning.

A mixin of :class:`~dropzone.ledger.store.LedgerStore`: each change is one write transaction
of the store's, guarded by the same transition table as the daemon's writes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from dropzone.ledger import model, sql
from dropzone.ledger.model import Move, State, to_text

if TYPE_CHECKING:
    from collections.abc import Collection
    from contextlib import AbstractContextManager
    from datetime import datetime

    from dropzone.ledger.primitives import Tx


class OperatorWrites:
    @abstractmethod
    def write(self) -> AbstractContextManager[Tx]:
        """One write transaction, committed (durably) when the block ends without error."""

    # --- commands ----------------------------------------------------------------------

    def backfill(self, watch: str | None, now: datetime) -> int:
        """Baseline entries (of one watch, or all) -> pending; returns how many moved."""
        values = (model.BACKFILL.target, to_text(now), State.BASELINE, watch, watch)
        with self.write() as tx:
            return tx.run(sql.BACKFILL, values)

    def retry(self, states: Collection[State], keys: Collection[str] | None, now: datetime) -> int:
        """Entries in ``states`` (of ``keys`` only, if given) -> pending, with ``attempts``
        and ``transient_failures`` back to 0.

        :class:`InvalidTransition` before anything changes if one of the states cannot go
        back to pending (a submitted entry has its job).
        """
        move = Move(frozenset(states), State.PENDING)
        sources = tuple(sorted(move.sources))
        values = (move.target, to_text(now), *sources)
        with self.write() as tx:
            if keys is None:
                return tx.run(sql.retry(sources, by_key=False), values)
            statement = sql.retry(sources, by_key=True)
            return tx.run_many(statement, [(*values, key) for key in keys])

    def forget(self, watch: str | None, keys: Collection[str]) -> int:
        """Delete every version of ``keys`` (in one watch, or all): they will count as new.

        Entries in ``submitting`` are kept: their outcome is not known yet.
        """
        with self.write() as tx:
            values = [(key, watch, watch, State.SUBMITTING) for key in keys]
            return tx.run_many(sql.FORGET, values)

    def prune(self, older_than: datetime) -> int:
        """Delete entries gone from their listing since before ``older_than``.

        Entries still present are never pruned (they would be submitted again), nor entries
        in ``submitting`` (their Create call still has to be reconciled).
        """
        with self.write() as tx:
            pruned = tx.run(sql.PRUNE, (to_text(older_than), State.SUBMITTING))
            tx.run(sql.PRUNE_NOTICES)
            return pruned
