"""Operators' short commands write through the ledger beside a running daemon.

The one-daemon rule is about daemons: ``retry``, ``backfill``, ``forget`` and ``submit`` each
change the ledger in one guarded transaction, and the daemon acts on the change at its
workers' next look (at least once a second), long before its next poll (60 s here, so that a
poll cannot be what submitted anything).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from dropzone.ledger import LedgerError, SqliteLedger, State
from tests.harness import load_scale, seed_entry, wait_for

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator

    from tests.harness import Stage


@pytest.fixture
def daemon(stage: Stage) -> Iterator[subprocess.Popen[str]]:
    """``dropzone run`` on the stage, polling once a minute; stopped with SIGTERM after."""
    stage.daemon["poll_interval_s"] = 60
    running = stage.spawn("run")
    try:
        wait_for(
            lambda: running.poll() is not None or _polled(stage),
            timeout=60,
            what="the daemon's first poll",
        )
        assert running.poll() is None, running.communicate()
        yield running
    finally:
        running.send_signal(signal.SIGTERM)
        running.communicate(timeout=60 * load_scale())


def _polled(stage: Stage) -> bool:
    try:
        with SqliteLedger.open(stage.ledger_path, readonly=True) as ledger:
            return ledger.baseline_done("chat")
    except LedgerError:  # not there yet, or not yet migrated by the starting daemon
        return False


def _state_of(stage: Stage, key: str) -> str | None:
    """The key's newest entry's state, read from the file as ``status`` reads it."""
    try:
        with SqliteLedger.open(stage.ledger_path, readonly=True) as ledger:
            states = [str(entry.state) for entry in ledger.entries() if entry.key == key]
    except LedgerError:  # not there yet, or not yet migrated by the starting daemon
        return None
    return states[-1] if states else None


@pytest.mark.slow
def test_retry_beside_the_daemon_is_submitted_at_once(
    stage: Stage, daemon: subprocess.Popen[str]
) -> None:
    """A rejected entry retried while the daemon runs is submitted without waiting for a poll."""
    key = stage.put("rejected.jsonl")
    seed_entry(stage, key, State.REJECTED)
    done = stage.dropzone("retry", key)
    assert done.returncode == 0, done.stderr
    assert "1 entry -> pending" in done.stdout
    wait_for(lambda: _state_of(stage, key) == "submitted", timeout=30, what="the retried entry")
    assert list(stage.create_calls().values()) == [1]


@pytest.mark.slow
def test_backfill_beside_the_daemon_is_submitted_at_once(stage: Stage) -> None:
    """Baseline entries backfilled while the daemon runs are submitted before its next poll."""
    key = stage.put("old.jsonl")
    stage.watch["on_start"] = "skip-existing"
    stage.daemon["poll_interval_s"] = 60
    running = stage.spawn("run")
    try:
        wait_for(lambda: _state_of(stage, key) == "baseline", timeout=60, what="the baseline")
        done = stage.dropzone("backfill")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: _state_of(stage, key) == "submitted", timeout=30, what="the backfill")
        assert len(stage.jobs()) == 1
    finally:
        running.send_signal(signal.SIGTERM)
        running.communicate(timeout=60 * load_scale())


@pytest.mark.slow
def test_forget_and_submit_beside_the_daemon(stage: Stage, daemon: subprocess.Popen[str]) -> None:
    """forget and submit work while the daemon runs; a second daemon is still refused."""
    key = stage.put("now.jsonl")
    done = stage.dropzone("submit", f"tos://{stage.bucket}/{key}")
    assert done.returncode == 0, done.stderr
    assert _state_of(stage, key) == "submitted"
    forgot = stage.dropzone("forget", key)
    assert forgot.returncode == 0, forgot.stderr
    assert "1 entry forgotten" in forgot.stdout
    assert _state_of(stage, key) is None
    second = stage.dropzone("run", "--once")
    assert second.returncode == 2
    assert f"another dropzone (pid {daemon.pid}) is using" in second.stderr


def test_a_slow_submit_beside_the_daemon_keeps_its_claim(
    stage: Stage, daemon: subprocess.Popen[str]
) -> None:
    """The daemon reconciles, every second, the claims of nodes that are gone. A submit
    whose Create takes seconds holds a node lease, so its claim is not one of those: it is
    not taken over mid-send (it was, as a claim of no node), and it records its own job."""
    stage.emulator.set_faults(latency_ms=2500)
    key = stage.put("slow.jsonl")
    done = stage.dropzone("submit", f"tos://{stage.bucket}/{key}")
    assert "taken over" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert _state_of(stage, key) == "submitted"
    assert stage.create_calls()[f"{stage.bucket}/{key}"] == 1


def test_forget_keeps_an_entry_whose_create_may_be_in_flight(stage: Stage) -> None:
    """An entry in submitting is not forgotten (it could be submitted twice): exit 1, named."""
    key = stage.put("busy.jsonl")
    seed_entry(stage, key, State.SUBMITTING)
    done = stage.dropzone("forget", key)
    assert done.returncode == 1
    assert "0 entries forgotten" in done.stdout
    assert f"kept, being submitted (their outcome is not known yet): {key}" in done.stderr
    assert _state_of(stage, key) == "submitting"


@pytest.mark.slow
def test_commands_other_than_submit_need_an_existing_ledger(stage: Stage) -> None:
    """retry, backfill, forget with a ledger path that holds nothing: exit 2, no file made."""
    for args in (["retry"], ["backfill"], ["forget", "x.jsonl"]):
        done = stage.dropzone(*args)
        assert done.returncode == 2, args
        assert f"no ledger at {stage.ledger_path}" in done.stderr
    assert not stage.ledger_path.exists()
