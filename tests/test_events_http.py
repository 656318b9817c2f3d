"""``POST /events/tos``: a bucket watch triggered by TOS notifications over HTTP.

The real daemon on a real listener, moto and the emulator on loopback. The watch's listing
runs every ``reconcile_interval_s``; set to an hour here (after the first one at start), a
job made within seconds came from the event.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dropzone.events.http_feed import SIGNATURE_HEADER, signature
from tests.harness import free_port, wait_for
from tests.test_local_daemon import Daemon

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.harness import Stage

SECRET = "events-secret-never-logged"


def notification(bucket: str, *keys: str, name: str = "tos:ObjectCreated:Put") -> bytes:
    events = [
        {
            "eventName": name,
            "eventTime": "2026-12-03T10:00:00Z",
            "tos": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": '"x"', "size": 1}},
        }
        for key in keys
    ]
    return json.dumps({"events": events}).encode()


class Feed:
    """The daemon's event route, as a forwarding function would call it."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/events/tos"

    def post(self, body: bytes, *, secret: str = SECRET, signed: bool = True) -> httpx.Response:
        headers = {SIGNATURE_HEADER: signature(secret.encode(), body)} if signed else {}
        return httpx.post(self.url, content=body, headers=headers, timeout=30)


def feed_the_watch(stage: Stage, *, reconcile_interval_s: float) -> Feed:
    """The stage's watch fed over HTTP, its secret in a file; the daemon's route."""
    port = free_port()
    secret_file = stage.tmp / "events-secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    stage.events = {"http_secret_file": str(secret_file)}
    stage.watch.update(feed="http", reconcile_interval_s=reconcile_interval_s, min_age_s=0)
    stage.daemon.update(listen=f"127.0.0.1:{port}", poll_interval_s=0.3)
    return Feed(port)


@pytest.fixture
def fed(stage: Stage) -> Iterator[tuple[Stage, Feed, Daemon]]:
    feed = feed_the_watch(stage, reconcile_interval_s=3600)
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        yield stage, feed, daemon
    finally:
        code = daemon.stop()
        assert code == 0, daemon.output()
        assert SECRET not in daemon.output()
        assert "Traceback" not in daemon.output()


def outcomes(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    counts: dict[str, Any] = response.json()["outcomes"]
    return counts


def test_an_event_makes_the_job_and_a_duplicate_or_stale_one_nothing(
    fed: tuple[Stage, Feed, Daemon],
) -> None:
    stage, feed, daemon = fed
    key = stage.put("a.jsonl")
    assert outcomes(feed.post(notification(stage.bucket, key))) == {"recorded": 1}
    wait_for(lambda: len(stage.jobs()) == 1, timeout=20, what="the event's job")
    assert outcomes(feed.post(notification(stage.bucket, key))) == {"known": 1}
    gone = stage.prefix + "never-put.jsonl"
    assert outcomes(feed.post(notification(stage.bucket, gone))) == {"stale": 1}
    elsewhere = notification("another-bucket", key) + b""
    assert outcomes(feed.post(elsewhere)) == {"unmatched": 1}
    other = notification(stage.bucket, key, name="tos:ObjectRemoved:Delete")
    assert outcomes(feed.post(other)) == {"ignored": 1}
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1}
    [detected] = daemon.events("object.detected")
    assert (detected["key"], detected["by"]) == (key, "event")


def test_a_key_sent_url_encoded_is_found_as_it_is_stored(fed: tuple[Stage, Feed, Daemon]) -> None:
    stage, feed, _ = fed
    key = stage.put("a b+c.jsonl")
    encoded = key.replace("+", "%2B").replace(" ", "+")
    assert outcomes(feed.post(notification(stage.bucket, encoded))) == {"recorded": 1}
    wait_for(lambda: len(stage.jobs()) == 1, timeout=20, what="the job")
    assert stage.jobs_by_input().keys() == {key}


def test_an_unsigned_or_wrongly_signed_message_is_refused_and_changes_nothing(
    fed: tuple[Stage, Feed, Daemon],
) -> None:
    stage, feed, daemon = fed
    body = notification(stage.bucket, stage.put("a.jsonl"))
    odd = httpx.post(
        feed.url,
        content=body,
        headers={SIGNATURE_HEADER.encode(): "sha256=\u00e9t\u00e9".encode("latin-1")},
        timeout=30,
    )
    for answer in (feed.post(body, signed=False), feed.post(body, secret="not-the-secret"), odd):
        assert answer.status_code == 401
        assert SIGNATURE_HEADER in answer.json()["error"]
    assert stage.status() == []
    assert len(daemon.events("event.refused")) == 3


def test_malformed_messages_are_counted_and_logged_once_per_kind(
    fed: tuple[Stage, Feed, Daemon],
) -> None:
    stage, feed, daemon = fed
    for _ in range(3):
        assert outcomes(feed.post(b"not json")) == {"malformed": 1}
    assert outcomes(feed.post(b'{"events": [{"eventTime": 1}]}')) == {"malformed": 1}
    kinds = [event["kind"] for event in daemon.events("event.malformed")]
    assert kinds == ["not JSON", "event without eventName"]
    metrics = httpx.get(feed.url.replace("/events/tos", "/metrics"), timeout=30).text
    assert 'dropzone_events_total{feed="http",outcome="malformed"} 4.0' in metrics
    too_big = httpx.post(feed.url, content=b"x" * (2 << 20), timeout=30)
    assert too_big.status_code == 413
    assert stage.status() == []


def test_a_file_whose_event_never_came_is_found_by_the_reconcile_listing(stage: Stage) -> None:
    feed_the_watch(stage, reconcile_interval_s=2)
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        key = stage.put("missed.jsonl")
        wait_for(lambda: len(stage.jobs()) == 1, timeout=30, what="the reconcile listing's job")
    finally:
        assert daemon.stop() == 0, daemon.output()
    [detected] = daemon.events("object.detected")
    assert detected["key"] == key
    assert "by" not in detected
    polls = daemon.events("poll.completed")
    assert polls, "the listing logged what it found"


@pytest.mark.parametrize(
    ("events", "watch", "daemon", "message"),
    [
        ({}, {"feed": "http"}, {}, "needs [events] http_secret_file"),
        ({"http_secret_file": "s"}, {"feed": "http"}, {"listen": ""}, "set it"),
        ({"http_secret_file": "s"}, {"feed": "kafka"}, {}, "needs [events] kafka_bootstrap"),
        (
            {"kafka_bootstrap_servers": "b:9092", "kafka_options": {"sasl.password": "p"}},
            {},
            {},
            "no secret in the config; put the password in kafka_password_file",
        ),
        (
            {"kafka_bootstrap_servers": "b:9092", "kafka_options": {"group.id": "g"}},
            {},
            {},
            "'group.id' is dropzone's to set",
        ),
        ({}, {"feed": "http", "local_dir": "inbox"}, {}, "a folder watch sees its own files"),
    ],
)
def test_a_feed_that_cannot_work_is_a_clear_config_error(
    stage: Stage,
    events: dict[str, str],
    watch: dict[str, str],
    daemon: dict[str, str],
    message: str,
) -> None:
    stage.events = events
    stage.watch.update(watch)
    stage.daemon.update(daemon)
    done = stage.dropzone("check", "--offline")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreadable_secret_file_stops_the_start_with_one_line(stage: Stage) -> None:
    stage.events = {"http_secret_file": str(stage.tmp / "missing-secret")}
    stage.watch.update(feed="http")
    stage.daemon.update(listen=f"127.0.0.1:{free_port()}")
    done = stage.dropzone("run")
    assert done.returncode == 2, done.stderr
    assert "[events] http_secret_file: cannot read it" in done.stderr
    assert "Traceback" not in done.stderr


def load_forwarder() -> Any:
    """contrib's veFaaS function, loaded by its path as veFaaS loads it."""
    path = Path(__file__).resolve().parent.parent / "contrib" / "vefaas-forwarder" / "index.py"
    spec = importlib.util.spec_from_file_location("vefaas_forwarder", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vefaas_forwarder_delivers_a_notification_signed(
    fed: tuple[Stage, Feed, Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contrib function, handed a trigger's event (as a dict, and wrapped in a
    CloudEvents envelope), posts it signed; a wrong secret raises, so veFaaS runs it again."""
    stage, feed, _ = fed
    forwarder = load_forwarder()
    first, second = stage.put("a.jsonl"), stage.put("b.jsonl")
    monkeypatch.setenv("DROPZONE_EVENTS_URL", feed.url)
    monkeypatch.setenv("DROPZONE_EVENTS_SECRET", SECRET)
    answer = forwarder.handler(json.loads(notification(stage.bucket, first)), None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"outcomes": {"recorded": 1}}
    envelope = {"specversion": "1.0", "data": json.loads(notification(stage.bucket, second))}
    assert json.loads(forwarder.handler(envelope, None)["body"]) == {"outcomes": {"recorded": 1}}
    wait_for(lambda: len(stage.jobs()) == 2, timeout=20, what="both jobs")
    with pytest.raises(RuntimeError, match="dropzone answered 401"):
        forwarder.forward(notification(stage.bucket, first), feed.url, "wrong-secret")
