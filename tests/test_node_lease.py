"""A node's lease keeper: peers are counted between renewals, and the cap shared anew.

The keeper runs its own thread on a real SQLite ledger; the peers are other nodes' leases in
the same ledger, written as their daemons would write them.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dropzone.daemon.lease import LeaseKeeper
from dropzone.ledger import SqliteLedger
from tests.harness import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

import pytest


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as opened:
        yield opened


def now() -> datetime:
    return datetime.now(UTC)


def test_a_peer_that_joins_or_leaves_changes_the_share_within_a_peer_check(
    ledger: SqliteLedger,
) -> None:
    shares: list[int] = []
    # A lease of an hour renews every 20 minutes: a share told sooner came from the count.
    keeper = LeaseKeeper(
        ledger=ledger, ttl_s=3600, clock=now, node="a", share=shares.append, peer_check_s=0.05
    )
    stop = threading.Event()
    assert keeper.renew()
    thread = keeper.keep(stop)
    try:
        ledger.heartbeat("b", "host-b", 3600, now())
        wait_for(lambda: shares == [2], 10, "the share for two live nodes")
        ledger.heartbeat("c", "host-c", 3600, now())
        wait_for(lambda: shares == [2, 3], 10, "the share for three")
        ledger.leave("b")
        wait_for(lambda: shares == [2, 3, 2], 10, "the share for two again")
        assert keeper.live_nodes == 2
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_the_lease_is_renewed_every_third_of_its_time(ledger: SqliteLedger) -> None:
    keeper = LeaseKeeper(ledger=ledger, ttl_s=3, clock=now, node="a", peer_check_s=0.05)
    stop = threading.Event()
    assert keeper.renew()
    thread = keeper.keep(stop)
    started = time.monotonic()
    renewals = 0
    last_age = [keeper.age_s() or 0.0]

    def renewed() -> bool:
        """The age went down since the last look: a renewal in between."""
        age = keeper.age_s() or 0.0
        dropped = age < last_age[0]
        last_age[0] = age
        return dropped

    try:
        # Renewed until more than a lease's time has gone by: still live, by the ledger.
        while time.monotonic() - started < 4.5:
            wait_for(renewed, 10, "a renewal")
            renewals += 1
        leases = {lease.id: lease for lease in ledger.nodes()}
        assert leases["a"].live
        assert renewals >= 3
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_ledger_that_fails_leaves_the_share_as_it_was(tmp_path: Path) -> None:
    shares: list[int] = []
    path = tmp_path / "ledger.sqlite3"
    opened = SqliteLedger.open(path)
    keeper = LeaseKeeper(ledger=opened, ttl_s=30, clock=now, node="a", share=shares.append)
    assert keeper.renew()
    opened.heartbeat("b", "host-b", 30, now())
    keeper.count_peers()
    assert shares == [2]
    opened.close()
    keeper.count_peers()  # a closed ledger answers nothing: no new share, no exception
    assert shares == [2]
    assert keeper.live_nodes == 2
