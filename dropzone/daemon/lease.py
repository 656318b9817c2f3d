"""This process as a node of the ledger: its id, and the lease it renews while it runs.

Every daemon is a node, whether it shares a PostgreSQL ledger with replicas or owns an SQLite
file. It renews its lease every third of the lease's time; a node whose lease lapsed is taken
for gone by the others, which take its roles and reconcile its attempts. Between renewals it
counts the live nodes every second (a read), and the platform's request rate is shared out
between them: a node that joins is counted by the others within that second, not a third of
a lease later, so that together they are over the cap for a second at most.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING

from dropzone.ledger import LedgerError
from dropzone.log import get_logger

PEER_CHECK_S = 1.0

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from dropzone.ledger import Ledger


def new_node_id(host: str) -> str:
    """Unique per process: a restarted daemon is a new node (the old one's lease lapses, and
    its attempts are reconciled), and a pid reused in another container is no confusion."""
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class LeaseKeeper:
    """Renews this node's lease; ``share``: told the number of live nodes when it changes."""

    def __init__(  # noqa: PLR0913 - every parameter is an independent, injected dependency
        self,
        *,
        ledger: Ledger,
        ttl_s: float,
        clock: Callable[[], datetime],
        node: str | None = None,
        host: str | None = None,
        share: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        peer_check_s: float = PEER_CHECK_S,
    ) -> None:
        self.host = host or socket.gethostname()
        self.node = node or new_node_id(self.host)
        self.ttl_s = ttl_s
        self._ledger = ledger
        self._clock = clock
        self._share = share
        self._monotonic = monotonic
        self._peer_check_s = min(peer_check_s, ttl_s / 3)
        self._renewed_at: float | None = None
        self.live_nodes = 1
        self._log = get_logger()

    def renew(self) -> bool:
        """One renewal; False when the ledger could not be written (told, and tried again)."""
        try:
            lapsed = self._ledger.heartbeat(self.node, self.host, self.ttl_s, self._clock())
        except LedgerError as exc:
            self._log.error("ledger.failed", error=str(exc), during="lease renewal")
            return False
        self._renewed_at = self._monotonic()
        if lapsed:
            self._log.warning(
                "node.lease_lapsed",
                node=self.node,
                note="this node was stalled or cut off past its lease: other nodes may have"
                " taken its roles and attempts over, and its writes of those are refused",
            )
        self.count_peers()
        return True

    def count_peers(self) -> None:
        """Counts the live nodes and, when their number changed, shares the cap anew."""
        try:
            live = max(1, sum(lease.live for lease in self._ledger.nodes()))
        except LedgerError:
            return  # the renewal tells of a ledger that fails; the count stays as it was
        if live != self.live_nodes:
            self._log.info("node.peers", node=self.node, live_nodes=live)
            self.live_nodes = live
            if self._share is not None:
                self._share(live)

    def age_s(self) -> float | None:
        """Seconds since the last renewal; None before the first."""
        if self._renewed_at is None:
            return None
        return self._monotonic() - self._renewed_at

    def fresh(self) -> bool:
        """Whether the lease is still held, by this node's count (/readyz)."""
        age = self.age_s()
        return age is not None and age < self.ttl_s

    def keep(self, stop_event: threading.Event) -> threading.Thread:
        """Renew every third of the lease's time and count the peers in between, on a thread
        of its own, until stopped."""

        def loop() -> None:
            renew_at = self._monotonic() + self.ttl_s / 3
            while not stop_event.wait(self._peer_check_s):
                if self._monotonic() >= renew_at:
                    renew_at = self._monotonic() + self.ttl_s / 3
                    self.renew()
                else:
                    self.count_peers()

        thread = threading.Thread(target=loop, name="lease", daemon=True)
        thread.start()
        return thread

    def leave(self) -> None:
        """Give the lease and the roles up (a clean stop): no one waits for them to lapse."""
        try:
            self._ledger.leave(self.node)
        except LedgerError as exc:
            self._log.warning("ledger.failed", error=str(exc), during="leaving")
