"""Nodes and their leases, the singleton roles, and the attempts whose node is gone.

A mixin of :class:`~dropzone.ledger.store.LedgerStore`. Every node (one daemon process)
renews a lease in the ledger; whether a lease lapsed is judged by the database's clock
(``db_now``, a store's SQL expression for seconds since the epoch), never by a node's, so
nodes whose clocks disagree still agree on who is alive. A role (the lister of a watch, the
tracker, the pruner) is held by one live node at a time: it passes to another only once its
holder's lease lapsed, and the holder's heartbeat keeps every role it holds.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cache
from typing import TYPE_CHECKING

from dropzone.ledger.model import NodeLease, State, Stranded, from_text, to_text
from dropzone.ledger.rows import entry_of

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from datetime import datetime

    from dropzone.ledger.primitives import Tx

_LAPSED = "SELECT expires_at < {now} AS lapsed FROM nodes WHERE id = ?"
_RENEW = (
    "INSERT INTO nodes (id, host, started_at, expires_at) VALUES (?, ?, ?, {now} + ?)"
    " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at"
)
_NODES = "SELECT id, host, started_at, expires_at - {now} AS remaining FROM nodes ORDER BY id"
# Taken only from a holder whose lease lapsed (or that has none): a live holder keeps it.
_TAKE_ROLE = (
    "INSERT INTO roles (name, holder, since) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, since = excluded.since"
    " WHERE roles.holder <> excluded.holder AND NOT EXISTS (SELECT 1 FROM nodes"
    "  WHERE nodes.id = roles.holder AND nodes.expires_at >= {now})"
)
_ROLE_HOLDER = "SELECT holder FROM roles WHERE name = ?"
_ROLES = "SELECT name, holder FROM roles ORDER BY name"
_LEAVE_ROLES = "DELETE FROM roles WHERE holder = ?"
_RELEASE_ROLE = "DELETE FROM roles WHERE name = ? AND holder = ?"
_LEAVE = "DELETE FROM nodes WHERE id = ?"
# This node's own attempts that are due to be reconciled again, and the attempts of nodes that
# are gone: no lease at all (they left, or claimed before nodes existed), or a lapsed one.
# Values: submitting, node, now, node.
_STRANDED = (
    "SELECT entries.*, nodes.id IS NOT NULL AS owner_listed FROM entries"
    " LEFT JOIN nodes ON nodes.id = entries.claimed_by"
    " WHERE entries.state = ? AND ("
    "  (entries.claimed_by = ? AND entries.next_attempt_at IS NOT NULL"
    "   AND entries.next_attempt_at <= ?)"
    "  OR ((entries.claimed_by IS NULL OR entries.claimed_by <> ?)"
    "   AND (nodes.id IS NULL OR nodes.expires_at < {now})))"
    " ORDER BY entries.first_seen_at, entries.id LIMIT ?"
)
_CLAIMS_BY_NODE = (
    "SELECT claimed_by, count(*) AS claims FROM entries WHERE state = ? GROUP BY claimed_by"
)


@cache
def _spelled(statement: str, db_now: str) -> str:
    return statement.format(now=db_now)


class Leases:
    # The database's clock, as seconds since the epoch, in the store's SQL.
    db_now: str

    @abstractmethod
    def write(self) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def read(self) -> AbstractContextManager[Tx]: ...

    def _sql(self, statement: str) -> str:
        return _spelled(statement, self.db_now)

    def heartbeat(self, node: str, host: str, ttl_s: float, now: datetime) -> bool:
        """Take or renew ``node``'s lease for ``ttl_s`` seconds of the database's clock;
        True when it had lapsed (another node may have taken its claims and roles over)."""
        with self.write() as tx:
            rows = tx.rows(self._sql(_LAPSED), (node,))
            tx.run(self._sql(_RENEW), (node, host, to_text(now), ttl_s))
        return bool(rows and rows[0]["lapsed"])

    def leave(self, node: str) -> None:
        """Give the lease and every role up at once (a clean stop): the others need not wait
        for it to lapse."""
        with self.write() as tx:
            tx.run(_LEAVE_ROLES, (node,))
            tx.run(_LEAVE, (node,))

    def hold_role(self, role: str, node: str, now: datetime) -> bool:
        """Whether ``node`` holds ``role`` now: it held it already, or took it because no live
        node did."""
        with self.write() as tx:
            tx.run(self._sql(_TAKE_ROLE), (role, node, to_text(now)))
            rows = tx.rows(_ROLE_HOLDER, (role,))
        return bool(rows) and rows[0]["holder"] == node

    def release_role(self, role: str, node: str) -> None:
        """``node`` no longer does the role's work: the next node that does takes it now."""
        with self.write() as tx:
            tx.run(_RELEASE_ROLE, (role, node))

    def nodes(self) -> list[NodeLease]:
        """Every node with a lease, lapsed ones included, by id."""
        with self.read() as tx:
            rows = tx.rows(self._sql(_NODES))
        return [
            NodeLease(row["id"], row["host"], from_text(row["started_at"]), row["remaining"])
            for row in rows
        ]

    def roles(self) -> dict[str, str]:
        """Role -> the node that holds (or last held) it."""
        with self.read() as tx:
            return {row["name"]: row["holder"] for row in tx.rows(_ROLES)}

    def stranded(self, node: str, now: datetime, limit: int = 100) -> list[Stranded]:
        """``submitting`` entries for ``node`` to reconcile: its own that are due again, and
        those of nodes that are gone, oldest first."""
        values = (State.SUBMITTING, node, to_text(now), node, limit)
        with self.read() as tx:
            rows = tx.rows(self._sql(_STRANDED), values)
        found = [(entry_of(row), bool(row["owner_listed"])) for row in rows]
        return [Stranded(entry, listed and entry.claimed_by != node) for entry, listed in found]

    def claims_by_node(self) -> dict[str | None, int]:
        """Attempts in flight (``submitting``), by the node that holds each."""
        with self.read() as tx:
            rows = tx.rows(_CLAIMS_BY_NODE, (State.SUBMITTING,))
        return {row["claimed_by"]: int(row["claims"]) for row in rows}
