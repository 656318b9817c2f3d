"""The contract: node leases by the database's clock, singleton roles, stranded attempts."""

from __future__ import annotations

from dropzone.ledger import Ledger, State
from tests.ledger_contract.helpers import add, at

TTL = 30.0
LAPSED = -1.0  # a lease renewed "for -1 s" has lapsed already: no test waits for one to


def test_a_lease_is_live_until_it_lapses(ledger: Ledger) -> None:
    assert ledger.heartbeat("n1", "host-a", TTL, at(0)) is False
    assert ledger.heartbeat("n1", "host-a", TTL, at(1)) is False
    (lease,) = ledger.nodes()
    assert (lease.id, lease.host, lease.started_at, lease.live) == ("n1", "host-a", at(0), True)
    assert 0 < lease.remaining_s <= TTL
    ledger.heartbeat("n1", "host-a", LAPSED, at(2))
    assert not ledger.nodes()[0].live
    assert ledger.heartbeat("n1", "host-a", TTL, at(3)) is True  # it had lapsed
    assert ledger.nodes()[0].live


def test_a_role_stays_with_its_live_holder_and_passes_when_it_lapses(ledger: Ledger) -> None:
    ledger.heartbeat("n1", "a", TTL, at(0))
    ledger.heartbeat("n2", "b", TTL, at(0))
    assert ledger.hold_role("list:chat", "n1", at(1)) is True
    assert ledger.hold_role("list:chat", "n2", at(1)) is False
    assert ledger.hold_role("list:chat", "n1", at(2)) is True
    assert ledger.hold_role("track", "n2", at(2)) is True
    assert ledger.roles() == {"list:chat": "n1", "track": "n2"}
    ledger.heartbeat("n1", "a", LAPSED, at(3))
    assert ledger.hold_role("list:chat", "n2", at(4)) is True
    assert ledger.hold_role("list:chat", "n1", at(5)) is False  # back, but the role moved on
    ledger.leave("n2")
    assert ledger.roles() == {}
    assert [lease.id for lease in ledger.nodes()] == ["n1"]
    assert ledger.hold_role("track", "n1", at(6)) is True


def test_a_role_given_up_by_its_holder_passes_at_once(ledger: Ledger) -> None:
    """A node that no longer does a role's work (a reload took it away) lets it go, so that
    a node that does takes it without waiting for the holder's lease to lapse."""
    ledger.heartbeat("n1", "a", TTL, at(0))
    ledger.heartbeat("n2", "b", TTL, at(0))
    assert ledger.hold_role("notify", "n1", at(1)) is True
    ledger.release_role("notify", "n2")  # not its role: nothing changes
    assert ledger.hold_role("notify", "n2", at(2)) is False
    ledger.release_role("notify", "n1")
    assert ledger.roles() == {}
    assert ledger.hold_role("notify", "n2", at(3)) is True


def test_a_role_of_a_node_without_a_lease_is_free(ledger: Ledger) -> None:
    assert ledger.hold_role("prune", "n1", at(0)) is True  # n1 never heartbeat: no live holder
    ledger.heartbeat("n2", "b", TTL, at(0))
    assert ledger.hold_role("prune", "n2", at(1)) is True


def test_attempts_of_live_nodes_are_theirs_and_of_gone_ones_stranded(ledger: Ledger) -> None:
    ledger.heartbeat("live", "a", TTL, at(0))
    ledger.heartbeat("stalled", "b", TTL, at(0))
    ledger.heartbeat("me", "c", TTL, at(0))
    claims = {}
    for key, node in [("a", "live"), ("b", "stalled"), ("c", "left"), ("d", "me"), ("e", "me")]:
        claimed = ledger.claim_one(add(ledger, key).id, at(1), node=node)
        assert claimed is not None
        claims[key] = claimed
    unowned = ledger.claim_one(add(ledger, "f").id, at(1))  # before nodes existed
    assert unowned is not None
    ledger.defer_reconcile(claims["e"].id, at(10), "not listed yet", at(2))
    ledger.heartbeat("stalled", "b", LAPSED, at(3))

    def stranded_for(node: str, now: float) -> dict[str, bool]:
        return {s.entry.key: s.owner_may_live for s in ledger.stranded(node, at(now))}

    # "left" has no lease (it left), "f" no node: gone for sure; "stalled" may yet wake up.
    assert stranded_for("me", 5) == {"b": True, "c": False, "f": False}
    assert stranded_for("me", 10) == {"b": True, "c": False, "e": False, "f": False}
    assert stranded_for("live", 5) == {"b": True, "c": False, "f": False}
    assert ledger.claims_by_node() == {"live": 1, "stalled": 1, "left": 1, "me": 2, None: 1}
    counts = ledger.counts()
    assert counts[State.SUBMITTING] == 6
