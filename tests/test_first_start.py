"""A first start is not a first start when Ark already holds the watch's jobs.

A ledger zeroed while the daemon was stopped was started afresh, and a file that had been
waiting became `baseline`: never submitted. Now such a start waits and says why, and the
operator chooses: `backfill` (submit what is there, adopting the jobs Ark has) or
`run --baseline-anyway`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.harness import free_port, log_events, wait_for

if TYPE_CHECKING:
    from tests.harness import Stage


@pytest.fixture
def held_start(stage: Stage) -> Stage:
    """f0 baselined at the first start, f1 submitted, f2 waiting; then the ledger zeroed."""
    stage.watch["on_start"] = "skip-existing"
    stage.put("f0.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    stage.put("f1.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    assert len(stage.jobs()) == 1
    stage.put("f2.jsonl")
    for path in stage.ledger_path.parent.glob(f"{stage.ledger_path.name}-*"):
        path.unlink()
    os.truncate(stage.ledger_path, 0)
    return stage


def test_a_zeroed_ledger_does_not_baseline_what_waited(held_start: Stage) -> None:
    stage = held_start
    done = stage.dropzone("run", "--once")
    assert done.returncode == 1
    [held] = [e for e in log_events(done.stdout) if e["event"] == "watch.first_start_held"]
    assert held["level"] == "error"
    assert "Ark already holds jobs tagged dropzone-watch=chat" in held["reason"]
    assert "dropzone backfill --watch chat" in held["reason"]
    assert "--baseline-anyway" in held["reason"]
    assert stage.status() == []  # nothing recorded as baseline
    assert len(stage.jobs()) == 1


def test_backfill_lets_the_start_submit_what_is_there_adopting_the_job(held_start: Stage) -> None:
    stage = held_start
    stage.dropzone("run", "--once")
    backfilled = stage.dropzone("backfill", "--watch", "chat")
    assert backfilled.returncode == 0, backfilled.stderr
    assert "watch chat: its first start submits what is there" in backfilled.stdout
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stdout
    states = {e["key"].rsplit("/", 1)[1]: e["state"] for e in stage.status()}
    assert states == {"f0.jsonl": "submitted", "f1.jsonl": "submitted", "f2.jsonl": "submitted"}
    assert len(stage.jobs()) == 3  # f1's job adopted, one each for f0 and f2
    assert sorted(stage.create_calls().values()) == [1, 1, 1]


def test_baseline_anyway_is_the_operators_choice(held_start: Stage) -> None:
    stage = held_start
    done = stage.dropzone("run", "--once", "--baseline-anyway")
    assert done.returncode == 0, done.stdout
    assert {entry["state"] for entry in stage.status()} == {"baseline"}
    assert len(stage.jobs()) == 1


def test_healthz_says_why_the_first_start_waits(held_start: Stage) -> None:
    """The daemon stays up (a restart changes nothing): /healthz 200, `degraded` says why."""
    stage = held_start
    port = free_port()
    stage.daemon["listen"] = f"127.0.0.1:{port}"
    daemon = stage.spawn("run")
    try:

        def held() -> bool:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            except httpx.HTTPError:
                return False
            return any("dropzone-watch=chat" in line for line in body["degraded"])

        wait_for(held, what="/healthz to say the first start waits")
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        daemon.terminate()
        out, _ = daemon.communicate(timeout=60)
    assert answer.status_code == 200, json.dumps(answer.json())
    events = [e["event"] for e in log_events(out)]
    assert events.count("watch.first_start_held") == 1  # told once, not at every poll


def test_a_first_start_cut_short_is_not_taken_for_a_lost_ledger(stage: Stage) -> None:
    """A first listing that did not complete (the start's wait ran out) leaves the watch's
    first start to do again; the jobs Ark holds are the ledger's own, so it is not held."""
    stage.watch["on_start"] = "skip-existing"
    stage.put("f0.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    stage.put("f1.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    with sqlite3.connect(stage.ledger_path) as conn:
        conn.execute("UPDATE watches SET baseline_done = 0")
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stdout
    assert not [e for e in log_events(done.stdout) if e["event"] == "watch.first_start_held"]
    states = {e["key"].rsplit("/", 1)[1]: e["state"] for e in stage.status()}
    assert states == {"f0.jsonl": "baseline", "f1.jsonl": "submitted"}
