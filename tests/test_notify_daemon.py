"""A watch's webhook hears of every outcome across SIGKILLs of the daemon: the real daemon,
the emulator's jobs ending, a receiver on loopback that is down at first. None is lost, and
a notice sent again carries the same delivery ID."""

from __future__ import annotations

import select
import signal
import socket
import sqlite3
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest

from dropzone.emulator import Emulator
from dropzone.emulator.inputs import s3_reader
from tests.harness import ACCESS_KEY, SECRET_KEY, Stage, new_bucket, s3_client, wait_for
from tests.test_local_daemon import Daemon
from tests.webhook_receiver import SECRET, receiving

if TYPE_CHECKING:
    from pathlib import Path

    from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

GOOD, BAD = 16, 4


def notify_stage(stage: Stage, receiver: Receiver) -> None:
    secret = stage.tmp / "webhook-secret"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    stage.watch.update(
        validate=True,
        notify={"url": receiver.url, "secret_file": str(secret), "timeout_s": 5},
    )
    stage.daemon.update(track_interval_s=0.2, poll_interval_s=0.3)


def told(receiver: Receiver) -> dict[tuple[str, str], set[str]]:
    """(key, event) -> the delivery IDs the receiver took for it (each verified)."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for request in receiver.delivered():
        notice = request.verified()
        assert request.headers["webhook-id"] == notice["delivery_id"]
        found[notice["key"], notice["event"]].add(notice["delivery_id"])
    return found


def test_every_outcome_reaches_the_webhook_across_kills(tmp_path: Path, moto_endpoint: str) -> None:
    s3 = s3_client(moto_endpoint)
    with (
        Emulator(
            ACCESS_KEY,
            SECRET_KEY,
            queue_s=0.3,
            run_s=0.5,
            seed=3,
            read_input=s3_reader(moto_endpoint),
        ) as ark,
        receiving() as receiver,
    ):
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        notify_stage(stage, receiver)
        receiver.answers.extend([503] * 3)  # down at first: the first notices are tried again
        receiver.delay_s = 0.15  # slow, so that the kills strike in the middle of a batch
        good = [stage.put(f"good{n}.jsonl") for n in range(GOOD)]
        bad = [stage.put(f"bad{n}.jsonl", b"this is not JSON\n") for n in range(BAD)]
        expected = {(key, "Completed") for key in good} | {(key, "invalid") for key in bad}

        for round_number in range(2):
            daemon = Daemon(stage.spawn("run"))
            try:
                daemon.wait_ready()
                enough = 3 * (round_number + 1)
                wait_for(
                    lambda: len(told(receiver)) >= enough,  # noqa: B023 - used at once
                    timeout=60,
                    what=f"more notices delivered ({round_number + 1})",
                )
            finally:
                daemon.process.send_signal(signal.SIGKILL)
                assert daemon.stop() == -signal.SIGKILL
            assert "Traceback" not in daemon.output()
            assert "T0/token" not in daemon.output(), "the URL's path (a token) was shown"
        assert set(told(receiver)) < expected, "everything was told before the last kill"

        last = Daemon(stage.spawn("run"))
        try:
            last.wait_ready()
            wait_for(lambda: set(told(receiver)) == expected, timeout=90, what="every notice")
        finally:
            assert last.stop() == 0, last.output()
        assert "Traceback" not in last.output()

    delivered = told(receiver)
    assert set(delivered) == expected
    assert all(len(ids) == 1 for ids in delivered.values()), "a repeat with another ID"
    assert [r.headers["x-answered"] for r in receiver.received()[:3]] == ["503"] * 3
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1 for key in good}
    completed = [r.notice for r in receiver.delivered() if r.notice["event"] == "Completed"]
    assert all(n["job_id"] and n["output_dir"] for n in completed)
    assert all(n["request_counts"]["total"] == 2 for n in completed)  # jsonl()'s two lines


def test_a_stop_in_the_middle_of_a_notify_round_waits_for_one_try_at_most(stage: Stage) -> None:
    """run --once tells of its outcomes before it exits; a receiver that takes connections
    and never answers holds each try for its time-out. A SIGTERM then ends the round after
    the try under way, not after every notice (each left for the next run)."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        secret = stage.tmp / "webhook-secret"
        secret.write_text(SECRET + "\n", encoding="utf-8")
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        stage.watch.update(
            validate=True, notify={"url": url, "secret_file": str(secret), "timeout_s": 8}
        )
        for n in range(4):
            stage.put(f"bad{n}.jsonl", b"this is not JSON\n")
        running = stage.spawn("run", "--once")
        wait_for(
            lambda: bool(select.select([silent], [], [], 0)[0]),
            timeout=60,
            what="the first try to connect",
        )
        running.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        running.communicate(timeout=60)
        took = time.monotonic() - stopped
        assert took < 20, f"the round went on for {took:.0f} s after SIGTERM"
    finally:
        silent.close()
    with sqlite3.connect(stage.ledger_path) as conn:
        (pending,) = conn.execute(
            "SELECT count(*) FROM notices WHERE settled_at IS NULL"
        ).fetchone()
    assert pending == 4
