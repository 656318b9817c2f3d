"""Notifications: what an outcome tells (pure), and the notifier delivering the outbox of a
real SQLite ledger to a webhook receiver on loopback and to a command."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from dropzone import runtime
from dropzone.ark.signer import Credentials
from dropzone.config import load_settings
from dropzone.config.notify import shown_url
from dropzone.daemon.build import build_daemon
from dropzone.ledger import RequestCounts, SqliteLedger, State
from dropzone.ledger.notices import EVENTS, delivery_id, event_of
from dropzone.notify.notifier import Notifier, Route
from dropzone.notify.routes import routes_for, signer_from
from dropzone.notify.service import NotifyService
from dropzone.notify.targets import CommandTarget, WebhookTarget
from dropzone.runtime import UsageError, utc_now
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
    upload's outcome) another claim, another ID."""
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
    assert delivery_id(rejected, "rejected") == delivery_id(
        replace(rejected, updated_at=clock.advance(60)), "rejected"
    ), "the same claim's outcome, written again"
    assert entry.claim_token is not None
    assert delivery_id(rejected, "rejected") != delivery_id(
        replace(rejected, claim_token=entry.claim_token + 1), "rejected"
    ), "a retry's claim is another outcome"
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
    routes = {W: Route(frozenset({"Failed"}), (), 3600)}
    with SqliteLedger.open(tmp_path / "l") as ledger:
        ledger.announce({W: frozenset(EVENTS)})
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, observer=tally)
        ledger.record_rejected(an_entry(ledger, "a.jsonl", clock).id, "denied", clock())
        assert notifier.deliver_due() == 1
    assert tally.seen == [(W, "skipped")]


def test_a_watch_reloaded_without_its_notify_table_has_its_notices_skipped(
    tmp_path: Path,
) -> None:
    """Still configured, asking for nothing: a notice written before the reload is skipped
    at once, not put off as one of a watch this node has not got."""
    config = tmp_path / "dropzone.toml"
    config.write_text(
        '[[watch]]\nname = "chat"\nbucket = "b"\nprefix = "in/"\n'
        'model = { name = "m", version = "1" }\n',
        encoding="utf-8",
    )
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    tally = Tally()
    with SqliteLedger.open(tmp_path / "l") as ledger, httpx.Client() as client:
        routes = routes_for(load_settings(config, {}), lambda: client, clock, None)
        ledger.announce({W: frozenset(EVENTS)})  # as before the reload
        ledger.record_rejected(an_entry(ledger, "a.jsonl", clock).id, "denied", clock())
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, observer=tally)
        assert notifier.deliver_due() == 1
    assert tally.seen == [(W, "skipped")]


def test_a_watch_this_node_does_not_know_is_left_to_a_node_that_does(tmp_path: Path) -> None:
    """Replicas part way through a rolling update have different watches: the node holding
    the role puts off a notice of a watch it has not got (another node may take the role),
    and skips it only once it is a day old."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    tally = Tally()
    routes: dict[str, Route] = {}
    with SqliteLedger.open(tmp_path / "l") as ledger:
        ledger.announce({W: frozenset(EVENTS)})
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock, observer=tally)
        ledger.record_rejected(an_entry(ledger, "a.jsonl", clock).id, "denied", clock())
        assert notifier.deliver_due() == 0
        assert ledger.notices_pending()[0] == 1
        clock.advance(86400)
        assert notifier.deliver_due() == 1
        assert ledger.notices_pending() == (0, None)
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


def test_a_target_that_breaks_is_a_failed_try_and_holds_up_no_other_notice(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A URL that passes as one but that httpx cannot send to (an empty label) raises no
    HTTPError: it is a failed try of its own notice, and the next notice is delivered."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    broken = WebhookTarget(
        "http://a..b/hook/token", signer_from(SECRET, "s"), httpx.Client(), clock, timeout_s=5
    )
    with SqliteLedger.open(tmp_path / "l") as ledger, httpx.Client() as client:
        ledger.announce({"first": frozenset(EVENTS), W: frozenset(EVENTS)})
        routes = {
            "first": Route(frozenset(EVENTS), (broken,), 3600),
            W: Route(frozenset(EVENTS), (webhook(receiver, clock, client),), 3600),
        }
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock)
        entry, _ = ledger.add_object("first", B, "a.jsonl", "e1", 10, State.PENDING, clock())
        claimed = ledger.claim_one(entry.id, clock())
        assert claimed is not None
        ledger.record_rejected(claimed.id, "denied", clock())
        ledger.record_rejected(an_entry(ledger, "b.jsonl", clock).id, "denied", clock())
        assert notifier.deliver_due() == 1
        (left,) = ledger.notices_due(clock.advance(3600))
        assert (left.watch, left.tries) == ("first", 1)
    assert [r.verified()["key"] for r in receiver.received()] == ["b.jsonl"]
    error = ledger_error(tmp_path / "l", left.id)
    assert error == "webhook http://a..b/...: UnicodeError"


def test_each_target_hears_only_the_events_its_watch_asked_for(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A folder watch fetches its results on Completed; its webhook asked only for Failed,
    so a Completed notice does not reach it, and a Failed one does."""
    (tmp_path / "secret").write_text(SECRET, encoding="utf-8")
    (tmp_path / "in").mkdir()
    config = tmp_path / "dropzone.toml"
    config.write_text(
        "[[watch]]\n"
        'name = "chat"\nbucket = "b"\nprefix = "in/"\nmodel = { name = "m", version = "1" }\n'
        f"local_dir = {str(tmp_path / 'in')!r}\n"
        "[watch.notify]\n"
        f"url = {receiver.url!r}\nsecret_file = {str(tmp_path / 'secret')!r}\n"
        'events = ["Failed"]\n',
        encoding="utf-8",
    )
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    with SqliteLedger.open(tmp_path / "l") as ledger, httpx.Client() as client:
        routes = routes_for(load_settings(config, {}), lambda: client, clock, None)
        assert routes[W].events == {"Completed", "Failed"}
        ledger.announce({W: routes[W].events})
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock)
        for key, phase in [("a.jsonl", "Completed"), ("b.jsonl", "Failed")]:
            done = ledger.record_submitted(
                an_entry(ledger, key, clock).id, "bi-" + key, "o/", clock()
            )
            ledger.record_phase(done.id, phase, None, clock())
        assert notifier.deliver_due() == 2
    assert [r.verified()["event"] for r in receiver.received()] == ["Failed"]


def test_a_command_that_leaves_a_child_running_is_delivered_when_it_exits(tmp_path: Path) -> None:
    """A command that starts something in the background (which keeps its output open) is
    done when the command exits 0, not when the background child lets go."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    script = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    )
    target = CommandTarget([sys.executable, "-c", script], timeout_s=20)
    with SqliteLedger.open(tmp_path / "l") as ledger:
        ledger.announce({W: frozenset(EVENTS)})
        routes = {W: Route(frozenset(EVENTS), (target,), 3600)}
        notifier = Notifier(ledger=ledger, routes=lambda: routes, clock=clock)
        ledger.record_rejected(an_entry(ledger, "a.jsonl", clock).id, "denied", clock())
        started = time.monotonic()
        assert notifier.deliver_due() == 1, ledger_error(tmp_path / "l", 1)
    assert time.monotonic() - started < 15, "waited for the background child"


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
        ({"url": "https://h.example:99999/x", "secret_file": "s"}, "port"),
        ({"url": "https://h.example:0/x", "secret_file": "s"}, "port"),
        ({"url": "https://a..b/x", "secret_file": "s"}, "host"),
        ({"url": "https://\u2603.example/x", "secret_file": "s"}, "host"),
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


def test_a_url_given_in_place_of_the_notify_table_is_not_shown(stage: Stage) -> None:
    stage.watch["notify"] = "https://hooks.example.com/T0/the-token"
    done = stage.dropzone("check", "--offline")
    assert done.returncode == 2, done.stderr
    assert 'watch[0] (name "chat").notify' in done.stderr
    assert "the-token" not in done.stdout + done.stderr


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


def test_an_outcome_of_submit_is_told_of_by_the_next_run(stage: Stage) -> None:
    """``dropzone submit`` records the outcome as the daemon does, and its notice with it;
    the daemon (here run --once) delivers it."""
    told = stage.tmp / "told.jsonl"
    script = f"import sys; open({str(told)!r}, 'a').write(sys.stdin.read() + '\\n')"
    stage.watch["validate"] = True
    stage.watch["notify"] = {"command": [sys.executable, "-c", script]}
    key = stage.put("bad.jsonl", b"not JSON\n")
    submitted = stage.dropzone("submit", f"tos://{stage.bucket}/{key}")
    assert submitted.returncode == 1, submitted.stderr
    assert json.loads(submitted.stdout.splitlines()[-1])["state"] == "invalid"
    assert not told.exists(), "submit is not the notifier"
    ran = stage.dropzone("run", "--once")
    assert ran.returncode == 0, ran.stderr
    (notice,) = [json.loads(line) for line in told.read_text().splitlines()]
    assert (notice["key"], notice["event"]) == (key, "invalid")


def test_a_node_reloaded_without_notifications_lets_the_role_go(tmp_path: Path) -> None:
    """The notify role stays with a live holder; one whose reload took its notify tables away
    delivers nothing from then on, so it lets the role go for a node that does."""
    config = tmp_path / "dropzone.toml"
    body = (
        f'[ledger]\npath = "{tmp_path / "ledger.sqlite3"}"\n[daemon]\nlisten = ""\n'
        '[[watch]]\nname = "chat"\nbucket = "b"\nprefix = "in/"\n'
        'model = { name = "m", version = "1" }\n'
    )
    config.write_text(body + '[watch.notify]\ncommand = ["true"]\n', encoding="utf-8")
    settings = load_settings(config, {})
    config.write_text(body, encoding="utf-8")
    without = load_settings(config, {})
    credentials = Credentials("AKLTnotifyrole", "notify-role-secret")
    with SqliteLedger.open(settings.ledger.path) as ledger:
        api = runtime.ark_client(settings, credentials)  # never called here
        notices = NotifyService(settings, ledger=ledger, clock=utc_now)
        daemon = build_daemon(
            settings,
            ledger=ledger,
            api=api,
            s3=runtime.s3_client(settings, credentials),
            notices=notices,
        )
        try:
            daemon.lease.renew()
            ledger.heartbeat("other", "host-b", 60, utc_now())
            daemon.notify()
            assert ledger.roles() == {"notify": daemon.lease.node}
            assert not ledger.hold_role("notify", "other", utc_now())
            notices.replace(without)
            daemon.notify()
            assert ledger.hold_role("notify", "other", utc_now())
        finally:
            notices.close()
            api.close()
