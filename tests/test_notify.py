"""Notifications: what an outcome tells (pure), and the notifier delivering the outbox of a
real SQLite ledger to a webhook receiver on loopback and to a command."""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from dropzone.config.notify import shown_url
from dropzone.ledger import RequestCounts, SqliteLedger, State
from dropzone.ledger.notices import EVENTS, delivery_id, event_of
from dropzone.notify.notifier import Notifier, Route
from dropzone.notify.routes import signer_from
from dropzone.notify.targets import CommandTarget, WebhookTarget
from dropzone.runtime import UsageError
from dropzone.testing import FakeClock
from tests.harness import wait_for
from tests.webhook_receiver import SECRET, receiving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from dropzone.ledger import Entry
    from tests.harness import Stage
    from tests.webhook_receiver import Receiver

W, B = "chat", "bucket"


# --- pure --------------------------------------------------------------------------------------


def an_entry(ledger: SqliteLedger, key: str, clock: FakeClock) -> Entry:
    entry, _ = ledger.add_object(W, B, key, "e1", 10, State.PENDING, clock())
    claimed = ledger.claim_one(entry.id, clock())
    assert claimed is not None
    return claimed


def test_which_outcomes_are_events(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    with SqliteLedger.open(tmp_path / "l") as ledger:
        entry = an_entry(ledger, "a.jsonl", clock)
        assert event_of(entry) is None  # submitting
        done = ledger.record_submitted(entry.id, "bi-1", "out/", clock())
        assert event_of(done) is None  # no phase yet
        for phase, event in [("Running", None), ("Completed", "Completed"), ("Failed", "Failed")]:
            assert event_of(replace(done, phase=phase)) == event
        assert event_of(replace(done, state=State.REJECTED)) == "rejected"
        assert event_of(replace(done, state=State.INVALID)) == "invalid"
        assert event_of(replace(done, state=State.DUPLICATE)) == "duplicate"
        assert event_of(replace(done, state=State.DUPLICATE, awaits_job=True)) is None
        assert event_of(replace(done, state=State.PENDING)) is None


def test_a_delivery_id_names_one_outcome(tmp_path: Path) -> None:
    """The same outcome, the same ID (a phase seen twice); another version, event or (for an
    upload's outcome) another move, another ID."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    with SqliteLedger.open(tmp_path / "l") as ledger:
        entry = ledger.record_submitted(an_entry(ledger, "a.jsonl", clock).id, "bi", None, clock())
    ended = replace(entry, phase="Completed")
    assert delivery_id(ended, "Completed") == delivery_id(
        replace(ended, updated_at=clock.advance(60)), "Completed"
    )
    assert delivery_id(ended, "Completed") != delivery_id(ended, "Failed")
    assert delivery_id(ended, "Completed") != delivery_id(replace(ended, etag="e2"), "Completed")
    rejected = replace(entry, state=State.REJECTED)
    assert delivery_id(rejected, "rejected") != delivery_id(
        replace(rejected, updated_at=clock.advance(60)), "rejected"
    )
    assert delivery_id(ended, "Completed").startswith("dz_")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/services/T0/B0/secret-token", "https://hooks.example.com/..."),
        ("http://127.0.0.1:8080/?token=x", "http://127.0.0.1:8080/..."),
        ("https://example.com", "https://example.com/"),
        ("not a url", "the URL (not shown)"),
    ],
)
def test_a_url_is_shown_without_its_path(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    "secret", ["", "plain-password", "whsec_", "whsec_not*base64", "whsec_c2hvcnQ="]
)
def test_a_secret_that_is_not_a_standard_webhooks_one_is_refused(secret: str) -> None:
    with pytest.raises(UsageError) as caught:
        signer_from(secret, "watch 'chat' notify.secret_file")
    message = str(caught.value)
    assert message.startswith("watch 'chat' notify.secret_file: the file must hold")
    assert "openssl rand -base64 32" in message
    if secret.removeprefix("whsec_"):
        assert secret not in message


# --- the notifier over a real ledger and receiver ----------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def notified(self, watch: str, outcome: str) -> None:
        self.seen.append((watch, outcome))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


def webhook(receiver: Receiver, clock: FakeClock, client: httpx.Client) -> WebhookTarget:
    return WebhookTarget(receiver.url, signer_from(SECRET, "s"), client, clock, timeout_s=5)


def test_each_notice_is_delivered_signed_and_settled(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    tally = Tally()
    with SqliteLedger.open(tmp_path / "l") as ledger, httpx.Client() as client:
        ledger.announce({W: frozenset(EVENTS)})
        routes = {W: Route(frozenset(EVENTS), (webhook(receiver, clock, client),), 3600)}
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, observer=tally)
        done = ledger.record_submitted(an_entry(ledger, "a.jsonl", clock).id, "bi-a", "o/", clock())
        ledger.record_phase(done.id, "Completed", RequestCounts(3, 3, 0), clock())
        ledger.record_rejected(an_entry(ledger, "b.jsonl", clock).id, "denied", clock())
        assert notifier.deliver_due() == 2
        assert notifier.deliver_due() == 0, "a delivered notice was delivered again"
    got = receiver.received()
    assert [r.verified()["event"] for r in got] == ["Completed", "rejected"]
    first = got[0].verified()
    assert got[0].headers["webhook-id"] == first["delivery_id"]
    assert (first["job_id"], first["request_counts"]["completed"]) == ("bi-a", 3)
    assert got[0].headers["content-type"] == "application/json"
    assert tally.seen == [(W, "delivered"), (W, "delivered")]


def test_a_receiver_that_fails_is_tried_again_later_under_the_same_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    """503, then 500, then 204: three tries, one delivery ID, the waits
    growing; the notice is delivered once the receiver takes it."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    receiver.answers.extend([503, 500])
    with SqliteLedger.open(tmp_path / "l") as ledger, httpx.Client() as client:
        ledger.announce({W: frozenset(EVENTS)})
        routes = {W: Route(frozenset(EVENTS), (webhook(receiver, clock, client),), 3600)}
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, jitter=lambda: 0.5)
        ledger.record_invalid(an_entry(ledger, "a.jsonl", clock).id, "line 1: not JSON", clock())
        assert notifier.deliver_due() == 0
        assert notifier.deliver_due() == 0, "tried again before its time"
        clock.advance(1)
        assert notifier.deliver_due() == 0
        clock.advance(1.4)
        assert notifier.deliver_due() == 0, "the second wait is longer"
        clock.advance(0.2)
        assert notifier.deliver_due() == 1
        assert ledger.notices_pending() == (0, None)
    got = receiver.received()
    assert [r.headers["x-answered"] for r in got] == ["503", "500", "2xx"]
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert all(r.verified()["event"] == "invalid" for r in got)


def test_a_notice_is_given_up_once_too_old(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    receiver.answers.extend([503] * 10)
    tally = Tally()
    with SqliteLedger.open(tmp_path / "l") as ledger, httpx.Client() as client:
        ledger.announce({W: frozenset(EVENTS)})
        routes = {W: Route(frozenset(EVENTS), (webhook(receiver, clock, client),), 60)}
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, observer=tally)
        ledger.record_rejected(an_entry(ledger, "a.jsonl", clock).id, "denied", clock())
        assert notifier.deliver_due() == 0
        clock.advance(61)
        assert notifier.deliver_due() == 1
        clock.advance(3600)
        assert notifier.deliver_due() == 0
        assert ledger.notices_pending() == (0, None)
    assert tally.seen == [(W, "failed"), (W, "gave_up")]
    assert len(receiver.received()) == 2


def test_a_watch_that_no_longer_asks_is_skipped(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    tally = Tally()
    routes: dict[str, Route] = {}
    with SqliteLedger.open(tmp_path / "l") as ledger:
        ledger.announce({W: frozenset(EVENTS)})
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, observer=tally)
        ledger.record_rejected(an_entry(ledger, "a.jsonl", clock).id, "denied", clock())
        assert notifier.deliver_due() == 1
    assert tally.seen == [(W, "skipped")]


def test_a_command_gets_the_notice_on_its_standard_input(tmp_path: Path) -> None:
    """The JSON on stdin, the delivery ID in the environment; a failing command is a failed
    try that says its exit status and what it printed, and is tried again."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    out = tmp_path / "told.jsonl"
    script = (
        "import json, os, sys\n"
        "body = json.load(sys.stdin)\n"
        f"if os.path.exists({str(tmp_path / 'fail')!r}): sys.exit('receiver down')\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps([os.environ['DROPZONE_DELIVERY_ID'], body]) + '\\n')\n"
    )
    (tmp_path / "fail").touch()
    target = CommandTarget([sys.executable, "-c", script], timeout_s=30)
    with SqliteLedger.open(tmp_path / "l") as ledger:
        ledger.announce({W: frozenset(EVENTS)})
        routes = {W: Route(frozenset(EVENTS), (target,), 3600)}
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock)
        ledger.record_duplicate(an_entry(ledger, "a.jsonl", clock).id, "bi-x", "o/", clock())
        assert notifier.deliver_due() == 0
        (notice,) = ledger.notices_due(clock.advance(3600))
        assert notice.tries == 1
        (tmp_path / "fail").unlink()
        assert notifier.deliver_due() == 1
    ((told_id, body),) = [json.loads(line) for line in out.read_text().splitlines()]
    assert told_id == body["delivery_id"] == notice.delivery_id
    assert (body["event"], body["job_id"]) == ("duplicate", "bi-x")
    row = ledger_error(tmp_path / "l", notice.id)
    assert row.startswith(f"command {sys.executable}: exit status 1: receiver down")


def notice_due(path: Path) -> bool:
    """Whether the ledger's one unsettled notice is due by now (its retry's time came)."""
    with sqlite3.connect(path) as conn:
        (due,) = conn.execute("SELECT due_at FROM notices WHERE settled_at IS NULL").fetchone()
    return bool(datetime.fromisoformat(due) <= datetime.now(UTC))


def ledger_error(path: Path, notice_id: int) -> str:
    with sqlite3.connect(path) as conn:
        (error,) = conn.execute("SELECT error FROM notices WHERE id = ?", (notice_id,)).fetchone()
    return str(error)


# --- the command line --------------------------------------------------------------------------


def with_webhook(stage: Stage, url: str, secret: str = SECRET, **extra: object) -> Path:
    secret_file = stage.tmp / "webhook-secret"
    secret_file.write_text(secret + "\n", encoding="utf-8")
    stage.watch["notify"] = {"url": url, "secret_file": str(secret_file), **extra}
    return secret_file


def test_check_reads_the_secret_and_shows_no_part_of_the_url_that_may_be_a_token(
    stage: Stage,
) -> None:
    with_webhook(stage, "https://hooks.example.com/T0/B0/the-token", command=["sh"])
    done = stage.dropzone("check", "--offline", "--json")
    assert done.returncode == 0, done.stderr
    notify = json.loads(done.stdout)["watch"][0]["notify"]
    assert (notify["url"], notify["secret_file"]) == ("https://hooks.example.com/...", "[secure]")
    lines = [line for line in done.stderr.splitlines() if line.startswith("watch 'chat' notify")]
    assert lines[0] == "watch 'chat' notify: ok: webhook https://hooks.example.com/... signed"
    assert lines[1].startswith("watch 'chat' notify: ok: command /")
    assert "the-token" not in done.stdout + done.stderr


def test_a_secret_that_cannot_be_used_stops_check_and_run_with_one_line(stage: Stage) -> None:
    with_webhook(stage, "https://hooks.example.com/x", secret="hunter2-not-a-whsec")
    checked = stage.dropzone("check", "--offline")
    assert checked.returncode == 1
    assert "watch 'chat' notify: FAILED: watch 'chat' notify.secret_file: the file must hold" in (
        checked.stderr
    )
    ran = stage.dropzone("run", "--once")
    assert ran.returncode == 2
    (line,) = [row for row in ran.stderr.splitlines() if row.strip()]
    assert line.startswith("dropzone run: watch 'chat' notify.secret_file: the file must hold")
    for done in (checked, ran):
        assert "hunter2" not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("notify", "says"),
    [
        ({"url": "https://h.example/x"}, "a webhook needs secret_file"),
        ({"events": ["Completed"]}, "set url (a webhook), command, or both"),
        ({"command": []}, "give the program and its arguments"),
        ({"command": ["x"], "events": []}, "name at least one of Completed"),
        ({"command": ["x"], "events": ["Done"]}, "Input should be 'Completed'"),
        ({"url": "https://user:pw@h.example/x", "secret_file": "s"}, "no credentials in the URL"),
        ({"url": "file:///etc/passwd", "secret_file": "s"}, "must be an http:// or https://"),
        ({"command": ["x"], "give_up_after_s": 0}, "out of range"),
    ],
)
def test_a_notify_table_that_cannot_work_is_a_clear_config_error(
    stage: Stage, notify: dict[str, object], says: str
) -> None:
    stage.watch["notify"] = notify
    done = stage.dropzone("check", "--offline")
    assert done.returncode == 2, done.stderr
    assert 'watch[0] (name "chat").notify' in done.stderr
    assert says in done.stderr
    assert "pw@" not in done.stderr
    assert "Traceback" not in done.stderr


def test_run_once_tells_of_its_outcomes_and_an_earlier_runs(stage: Stage) -> None:
    """run --once delivers the notices of what it did before it exits; one it could not
    deliver (the receiver down) is delivered by the next run, under the same ID."""
    stage.watch["validate"] = True
    with receiving() as receiver:
        with_webhook(stage, receiver.url)
        receiver.answers.append(503)
        bad = stage.put("bad.jsonl", b"not JSON\n")
        first = stage.dropzone("run", "--once")
        assert first.returncode == 1, first.stderr  # an invalid file fails a run --once
        assert [r.headers["x-answered"] for r in receiver.received()] == ["503"]
        wait_for(lambda: notice_due(stage.ledger_path), timeout=30, what="the next try due")
        second = stage.dropzone("run", "--once")
        assert second.returncode == 0, second.stderr
        got = receiver.received()
    assert [r.headers["x-answered"] for r in got] == ["503", "2xx"]
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
    told = got[1].verified()
    assert (told["event"], told["key"]) == ("invalid", bad)
    assert "line 1" in told["error"]
    for done in (first, second):
        assert "T0/token" not in done.stdout + done.stderr, "the URL's path (a token) was shown"
