"""Ops: the metrics series, the /healthz verdict, the HTTP endpoint and systemd notify.

Everything runs against real local resources: a loopback HTTP server spoken to with httpx,
Unix datagram sockets standing in for systemd, a SQLite ledger in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from dropzone.jobs.reachability import Outage
from dropzone.ledger import SqliteLedger, State
from dropzone.ops import (
    SUBMISSION_OUTCOMES,
    HealthBody,
    Heartbeat,
    ListenError,
    Metrics,
    OpsServer,
    SubmissionOutcome,
    SystemdNotifier,
    health_probe,
    health_report,
    observe_ledger,
    submission_outcome,
    watchdog_interval_s,
)
from dropzone.ops.events import ledger_writable
from dropzone.ops.health import ArkStatus, readiness_probe
from dropzone.testing import FakeTimer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
INTERVAL = 30.0
Labels = frozenset[tuple[str, str]]


# --- helpers ---------------------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, Labels], float]:
    text = metrics.render().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


class RecordingSink:
    def __init__(self) -> None:
        self.pings = 0

    def watchdog(self) -> bool:
        self.pings += 1
        return True


@contextmanager
def serving(
    metrics: Metrics, health: Callable[[], tuple[bool, Mapping[str, object]]]
) -> Iterator[httpx.Client]:
    with (
        OpsServer(("127.0.0.1", 0), metrics, health) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client,
    ):
        yield client


def fresh_health() -> tuple[bool, HealthBody]:
    return health_report(
        START + 100,
        INTERVAL,
        {"chat": START + 95},
        {"chat": 2},
        ledger_writable=True,
        started_at=START,
    )


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound Unix datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    spare: Path | None = None
    if len(os.fsencode(path)) > 100:  # sun_path holds 108 bytes; pytest's base path may be long
        spare = Path(tempfile.mkdtemp(prefix="dz-"))
        path = spare / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)  # the deadline for every expected datagram
        yield sock, str(path)
    if spare is not None:
        shutil.rmtree(spare)


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


# --- metrics ---------------------------------------------------------------------------------


def test_api_calls_count_by_status_and_time_by_action() -> None:
    """The client's observer hook feeds the request counter and the latency histogram."""
    metrics = Metrics()
    metrics.api_call("CreateBatchInferenceJob", "200", 0.3)
    metrics.api_call("CreateBatchInferenceJob", "transport_error", 2.0)
    metrics.api_call("ListBatchInferenceJobs", "429", 0.01)
    create = {"action": "CreateBatchInferenceJob"}
    assert value(metrics, "dropzone_api_requests_total", **create, status="200") == 1
    assert value(metrics, "dropzone_api_requests_total", **create, status="transport_error") == 1
    assert (
        value(metrics, "dropzone_api_requests_total", action="ListBatchInferenceJobs", status="429")
        == 1
    )
    assert value(metrics, "dropzone_api_request_duration_seconds_count", **create) == 2
    assert value(metrics, "dropzone_api_request_duration_seconds_sum", **create) == pytest.approx(
        2.3
    )
    assert value(metrics, "dropzone_api_request_duration_seconds_bucket", **create, le="0.5") == 1


def test_watch_events_are_counted_per_watch() -> None:
    """Detections, submission outcomes and polls land in the watch's series; others stay 0."""
    metrics = Metrics(["chat", "eval"])
    metrics.object_detected("chat", 3)
    metrics.object_detected("chat")
    metrics.submission("chat", "duplicate")
    metrics.submission_result("chat", State.PENDING)
    metrics.submission_result("chat", State.BASELINE)  # not an outcome: not counted
    metrics.poll_completed("chat", 1.5, START)
    assert value(metrics, "dropzone_objects_detected_total", watch="chat") == 4
    assert value(metrics, "dropzone_objects_detected_total", watch="eval") == 0
    chat = {"watch": "chat"}
    assert value(metrics, "dropzone_submissions_total", **chat, outcome="duplicate") == 1
    assert value(metrics, "dropzone_submissions_total", **chat, outcome="retried") == 1
    assert value(metrics, "dropzone_submissions_total", **chat, outcome="submitted") == 0
    assert value(metrics, "dropzone_poll_duration_seconds_count", **chat) == 1
    assert value(metrics, "dropzone_last_successful_poll_timestamp_seconds", **chat) == START
    assert value(metrics, "dropzone_last_successful_poll_timestamp_seconds", watch="eval") is None


def test_known_watches_start_with_every_outcome_at_zero() -> None:
    """Series exist at 0 before the first event, so rate() and alerts work from the start."""
    metrics = Metrics(["chat"])
    for outcome in SUBMISSION_OUTCOMES:
        assert value(metrics, "dropzone_submissions_total", watch="chat", outcome=outcome) == 0
    assert value(metrics, "dropzone_backlog_oldest_age_seconds", watch="chat") == 0


def test_unknown_submission_outcome_is_refused() -> None:
    """A label outside the documented outcomes is a bug, caught at the call, not in a graph."""
    metrics = Metrics()
    with pytest.raises(ValueError, match="lost"):
        metrics.submission("chat", "lost")  # type: ignore[arg-type]


def test_ledger_counts_cover_every_state_and_replace_old_values() -> None:
    """Every state has a series; a state missing from a later count drops to 0, not stale."""
    metrics = Metrics()
    metrics.ledger_counts("chat", {State.PENDING: 2, State.SUBMITTED: 5})
    metrics.ledger_counts("chat", {"submitted": 7})
    for state in State:
        expected = 7 if state is State.SUBMITTED else 0
        assert value(metrics, "dropzone_ledger_entries", watch="chat", state=state) == expected


def test_jobs_by_phase_zeroes_phases_no_longer_reported() -> None:
    """A phase seen before and absent now reads 0 instead of its last count."""
    metrics = Metrics()
    metrics.jobs_by_phase({"Queued": 2, "Running": 1})
    metrics.jobs_by_phase({"Running": 3, "Completed": 1})
    assert value(metrics, "dropzone_jobs", phase="Queued") == 0
    assert value(metrics, "dropzone_jobs", phase="Running") == 3
    assert value(metrics, "dropzone_jobs", phase="Completed") == 1


@pytest.mark.parametrize(("seconds", "expected"), [(None, 0.0), (12.5, 12.5), (-3.0, 0.0)])
def test_backlog_age(seconds: float | None, expected: float) -> None:
    """No backlog reads 0; a clock step backwards never gives a negative age."""
    metrics = Metrics()
    metrics.backlog_age("chat", seconds)
    assert value(metrics, "dropzone_backlog_oldest_age_seconds", watch="chat") == expected


def test_observe_ledger_reads_counts_and_backlog_from_a_real_ledger(tmp_path: Path) -> None:
    """After a poll, the ledger gauges and the backlog age come from the SQLite ledger."""
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    metrics = Metrics()
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.add_object("chat", "bkt", "a.jsonl", "e1", 10, State.PENDING, t0)
        ledger.add_object("chat", "bkt", "b.jsonl", "e2", 10, State.BASELINE, t0)
        observe_ledger(metrics, ledger, "chat", t0 + timedelta(minutes=10))
    assert value(metrics, "dropzone_ledger_entries", watch="chat", state="pending") == 1
    assert value(metrics, "dropzone_ledger_entries", watch="chat", state="baseline") == 1
    assert value(metrics, "dropzone_ledger_entries", watch="chat", state="rejected") == 0
    assert value(metrics, "dropzone_backlog_oldest_age_seconds", watch="chat") == 600


def test_each_metrics_has_its_own_registry() -> None:
    """Two Metrics never share series, and the global registry stays untouched."""
    first, second = Metrics(), Metrics()
    first.object_detected("chat")
    assert value(first, "dropzone_objects_detected_total", watch="chat") == 1
    assert value(second, "dropzone_objects_detected_total", watch="chat") is None
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("dropzone_")]


def test_every_series_is_prefixed_and_documented() -> None:
    """The exposition has exactly the documented families, each named dropzone_* with help."""
    metrics = Metrics(["chat"])
    metrics.api_call("GetBatchInferenceJob", "200", 0.1)
    metrics.poll_completed("chat", 0.2, START)
    metrics.ledger_counts("chat", {})
    metrics.jobs_by_phase({"Running": 1})
    families = [
        family
        for family in text_string_to_metric_families(metrics.render().decode("utf-8"))
        # prometheus-client's companion series (counter creation times) come with the library.
        if not family.name.endswith("_created")
    ]
    assert {family.name for family in families} == {
        "dropzone_objects_detected",
        "dropzone_submissions",
        "dropzone_api_requests",
        "dropzone_api_request_duration_seconds",
        "dropzone_poll_duration_seconds",
        "dropzone_last_successful_poll_timestamp_seconds",
        "dropzone_ledger_entries",
        "dropzone_jobs",
        "dropzone_backlog_oldest_age_seconds",
        "dropzone_ark_held_answers",
        "dropzone_claims",
        "dropzone_events",
        "dropzone_event_last_received_timestamp_seconds",
        "dropzone_event_consumer_lag",
        "dropzone_notifications",
    }
    assert all(len(family.documentation) > 20 for family in families)


class _Node:
    node, host, live_nodes = "web-1-42-abc", "web-1", 3

    def __init__(self) -> None:
        self.age: float | None = None

    def age_s(self) -> float | None:
        return self.age


def test_the_node_series_show_its_id_lease_age_and_claims_by_node() -> None:
    """The node's id as a label, its lease's age (+Inf before the first renewal), the live
    nodes, and the attempts in flight by node, a node gone since at 0."""
    metrics = Metrics()
    node = _Node()
    metrics.track_node(node)
    assert value(metrics, "dropzone_node_info", node="web-1-42-abc", host="web-1") == 1
    assert value(metrics, "dropzone_node_lease_age_seconds") == float("inf")
    node.age = 4.5
    assert value(metrics, "dropzone_node_lease_age_seconds") == 4.5
    assert value(metrics, "dropzone_nodes_live") == 3
    metrics.claims_by_node({"web-1-42-abc": 2, "web-2-7-def": 1, None: 1})
    assert value(metrics, "dropzone_claims", node="web-2-7-def") == 1
    assert value(metrics, "dropzone_claims", node="none") == 1
    metrics.claims_by_node({"web-1-42-abc": 1})
    assert value(metrics, "dropzone_claims", node="web-2-7-def") == 0
    assert value(metrics, "dropzone_claims", node="web-1-42-abc") == 1


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        (State.SUBMITTED, "submitted"),
        (State.DUPLICATE, "duplicate"),
        (State.REJECTED, "rejected"),
        (State.INVALID, "invalid"),
        (State.PENDING, "retried"),
        (State.SUBMITTING, "retried"),
        (State.BASELINE, None),
        (State.WAITING, None),
    ],
)
def test_submission_outcome_of_each_state(state: State, outcome: SubmissionOutcome | None) -> None:
    """The state a submission ends in maps to its outcome label; non-outcomes map to None."""
    assert submission_outcome(state) == outcome


# --- health verdict --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "last_poll", "writable", "ok"),
    [
        pytest.param(START + 100, START + 95, True, True, id="fresh-poll"),
        pytest.param(START + 200, START + 110, True, True, id="exactly-three-intervals"),
        pytest.param(START + 200, START + 109, True, False, id="stale-poll"),
        pytest.param(START + 90, None, True, True, id="never-polled-within-grace"),
        pytest.param(START + 91, None, True, False, id="never-polled-grace-over"),
        pytest.param(START + 100, START + 95, False, False, id="ledger-not-writable"),
    ],
)
def test_health_verdict(now: float, last_poll: float | None, writable: bool, ok: bool) -> None:
    """Healthy iff the ledger is writable and the watch polled within 3 intervals (or grace)."""
    verdict, body = health_report(
        now, INTERVAL, {"chat": last_poll}, {"chat": 0}, ledger_writable=writable, started_at=START
    )
    assert verdict is ok
    assert body["ok"] is ok


def test_one_stale_watch_makes_the_daemon_unhealthy() -> None:
    """The overall verdict needs every watch; the body says which one is behind."""
    ok, body = health_report(
        START + 500,
        INTERVAL,
        {"chat": START + 490, "eval": START + 300},
        {},
        ledger_writable=True,
        started_at=START,
    )
    assert not ok
    assert body["watches"]["chat"]["ok"]
    assert not body["watches"]["eval"]["ok"]


def test_no_watches_depends_on_the_ledger_only() -> None:
    """Without watches there is nothing to be late: the ledger decides."""
    assert health_report(START + 1e6, INTERVAL, {}, {}, ledger_writable=True, started_at=START)[0]
    assert not health_report(
        START + 1e6, INTERVAL, {}, {}, ledger_writable=False, started_at=START
    )[0]


def test_health_body_fields() -> None:
    """The body names each watch's last poll (ISO-8601 UTC), the seconds since, entries due."""
    _, body = health_report(
        START + 80,  # within the grace period: the unpolled watch is still fine
        INTERVAL,
        {"chat": START + 75.5},
        {"chat": 2, "eval": 1},
        ledger_writable=True,
        started_at=START,
    )
    assert body == {
        "ok": True,
        "degraded": [],
        "ark": {"reachable": True, "unreachable_since": None, "failed_calls": 0, "reason": None},
        "ledger_writable": True,
        "checked_at": "2023-11-14T22:14:40Z",
        "started_at": "2023-11-14T22:13:20Z",
        "stale_after_s": 90.0,
        "watches": {
            "chat": {
                "ok": True,
                "last_poll": "2023-11-14T22:14:35Z",
                "seconds_since": 4.5,
                "due": 2,
            },
            "eval": {"ok": True, "last_poll": None, "seconds_since": None, "due": 1},
        },
    }
    assert json.loads(json.dumps(body)) == body


def test_an_ark_outage_degrades_the_body_but_not_the_verdict() -> None:
    """During an Ark outage /healthz still says ok (a restart cures nothing) and tells it."""
    since = datetime.fromtimestamp(START + 10, UTC)
    outage = Outage(since=since, failed_calls=7, reason="ConnectError: refused", declared=True)
    ok, body = health_report(
        START + 80, INTERVAL, {}, {}, ledger_writable=True, started_at=START, ark=ArkStatus(outage)
    )
    assert ok
    assert body["degraded"] == ["ark unreachable: ConnectError: refused"]
    assert body["ark"] == {
        "reachable": False,
        "unreachable_since": "2023-11-14T22:13:30Z",
        "failed_calls": 7,
        "reason": "ConnectError: refused",
    }


# --- heartbeat -------------------------------------------------------------------------------


def test_no_watchdog_interval_means_no_ping() -> None:
    """Without WATCHDOG_USEC the heartbeat never asks for a ping."""
    heartbeat = Heartbeat(clock=FakeTimer())
    heartbeat.beat()
    assert not heartbeat.watchdog_due()


def test_watchdog_ping_due_at_half_the_interval_after_progress() -> None:
    """A ping is due at half the interval, and only if the loop beat since the last ping."""
    clock = FakeTimer()
    heartbeat = Heartbeat(clock=clock, watchdog_interval_s=10)
    assert not heartbeat.watchdog_due()  # no progress yet
    heartbeat.beat()
    assert heartbeat.watchdog_due()
    heartbeat.watchdog_pinged()
    clock.now += 4.9
    heartbeat.beat()
    assert not heartbeat.watchdog_due()
    clock.now += 0.1
    assert heartbeat.watchdog_due()
    heartbeat.watchdog_pinged()
    clock.now += 60
    assert not heartbeat.watchdog_due()  # a stuck loop does not get its watchdog fed


def test_pulse_pings_every_half_interval() -> None:
    """A loop pulsing each second with a 10 s watchdog pings at 0, 5, 10, 15 and 20 s."""
    clock = FakeTimer(0)
    sink = RecordingSink()
    heartbeat = Heartbeat(clock=clock, watchdog_interval_s=10)
    for second in range(21):
        clock.now = second
        heartbeat.pulse(sink)
    assert sink.pings == 5


def test_polls_are_progress_and_known_watches_start_unpolled() -> None:
    """A successful poll is recorded for /healthz and counts as a beat for the watchdog."""
    clock = FakeTimer()
    heartbeat = Heartbeat(clock=clock, watchdog_interval_s=10, watches=["chat", "eval"])
    assert heartbeat.last_polls() == {"chat": None, "eval": None}
    assert heartbeat.seconds_since_beat() is None
    heartbeat.polled("chat", START)
    clock.now += 2
    assert heartbeat.last_polls() == {"chat": START, "eval": None}
    assert heartbeat.seconds_since_beat() == 2
    assert heartbeat.watchdog_due()


def test_health_probe_reads_the_heartbeat() -> None:
    """The probe combines the heartbeat's polls with the due counts and the ledger check."""
    heartbeat = Heartbeat(watches=["chat"])
    writable = [True]
    probe = health_probe(
        heartbeat=heartbeat,
        poll_interval_s=INTERVAL,
        started_at=START,
        due=lambda: {"chat": 4},
        ledger_writable=lambda: writable[0],
        wall_clock=lambda: START + 200,
    )
    ok, body = probe()
    assert not ok  # never polled, grace over
    heartbeat.polled("chat", START + 190)
    ok, body = probe()
    assert ok
    assert body["watches"]["chat"]["due"] == 4
    writable[0] = False
    assert not probe()[0]


# --- HTTP ------------------------------------------------------------------------------------


def test_metrics_endpoint_serves_the_exposition() -> None:
    """GET /metrics answers 200 in the Prometheus text format with the registry's series."""
    metrics = Metrics(["chat"])
    metrics.object_detected("chat", 2)
    with serving(metrics, fresh_health) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    [sample] = families["dropzone_objects_detected"].samples
    assert sample.labels == {"watch": "chat"}
    assert sample.value == 2


def test_readyz_follows_the_ledger_at_each_request(tmp_path: Path) -> None:
    """/readyz is 200 while the ledger can be written and 503 once it cannot, asked anew at
    each request; /healthz beside it is unchanged. Without a readiness check it is 200."""
    path = tmp_path / "ledger.sqlite3"
    with SqliteLedger.open(path) as ledger:
        usable = ledger_writable(path, ledger.displaced)
        with (
            OpsServer(("127.0.0.1", 0), Metrics(), fresh_health, readiness_probe(usable)) as ops,
            httpx.Client(base_url=f"http://127.0.0.1:{ops.port}", timeout=10) as client,
        ):
            ready = client.get("/readyz")
            path.rename(tmp_path / "moved.sqlite3")  # the file gone from under the daemon
            gone = client.get("/readyz")
            healthy = client.get("/healthz")
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "ledger": "ok"})
    assert (gone.status_code, gone.json()) == (503, {"ready": False, "ledger": "unusable"})
    assert healthy.status_code == 200
    with serving(Metrics(), fresh_health) as client:
        assert client.get("/readyz").status_code == 200


def test_healthz_is_200_when_healthy_and_503_when_not() -> None:
    """/healthz answers the verdict as the status and the same JSON shape in both cases."""
    now = [START + 100]

    def health() -> tuple[bool, HealthBody]:
        return health_report(
            now[0],
            INTERVAL,
            {"chat": START + 95},
            {"chat": 3},
            ledger_writable=True,
            started_at=START,
        )

    with serving(Metrics(), health) as client:
        good = client.get("/healthz")
        now[0] = START + 1000
        bad = client.get("/healthz")
    assert good.status_code == 200
    assert bad.status_code == 503
    assert good.headers["content-type"] == "application/json"
    assert good.json()["ok"] is True
    assert bad.json()["ok"] is False
    assert good.json().keys() == bad.json().keys()
    assert bad.json()["watches"]["chat"] == {
        "ok": False,
        "last_poll": "2023-11-14T22:14:55Z",
        "seconds_since": 905.0,
        "due": 3,
    }


def test_failing_health_probe_answers_503() -> None:
    """A probe that raises reports unhealthy instead of dropping the connection."""

    def broken() -> tuple[bool, HealthBody]:
        raise OSError("disk gone")

    with capture_logs(), serving(Metrics(), broken) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "error": "health check failed: OSError"}


def test_other_paths_are_404_and_queries_are_ignored() -> None:
    """Only /metrics and /healthz exist; a query string does not change the route."""
    with serving(Metrics(), fresh_health) as client:
        assert client.get("/").status_code == 404
        assert client.get("/metrics/extra").status_code == 404
        assert client.get("/metrics?name[]=x").status_code == 200
        assert client.get("/healthz?verbose=1").status_code == 200


def test_requests_are_not_logged_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Scrapes leave stderr alone; each request is a debug-level structlog event."""
    with capture_logs() as logs, serving(Metrics(), fresh_health) as client:
        client.get("/metrics")
    assert capsys.readouterr().err == ""
    assert [log["log_level"] for log in logs if log["event"] == "ops.request"] == ["debug"]


def test_port_zero_binds_a_real_port_and_stop_closes_it() -> None:
    """Port 0 gives a real port; after stop nothing listens there; stop twice is harmless."""
    server = OpsServer(("127.0.0.1", 0), Metrics(), fresh_health)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    with capture_logs():
        server.start()
    port = server.port
    assert port > 0
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)


def test_busy_port_is_a_listen_error_naming_the_setting() -> None:
    """A port another socket listens on fails start() with a message naming daemon.listen."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = OpsServer(("127.0.0.1", port), Metrics(), fresh_health)
        with pytest.raises(ListenError, match=r"daemon\.listen"):
            server.start()


def test_a_client_gone_before_its_answer_is_a_log_line_not_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A health probe's client that timed out and reset its connection while the probe ran:
    the write fails (a broken pipe or a reset), and that is one debug line of the JSON log,
    not socketserver's plain-text traceback on stderr."""
    asked = threading.Event()
    answer = threading.Event()

    def slow_health() -> tuple[bool, HealthBody]:
        asked.set()
        answer.wait(30)
        return fresh_health()

    with capture_logs() as logs, OpsServer(("127.0.0.1", 0), Metrics(), slow_health) as server:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert asked.wait(30)
        # SO_LINGER 0: the close resets the connection, as a client that timed out does.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        answer.set()
        deadline = time.monotonic() + 30
        while not any(e["event"] == "ops.client_gone" for e in logs):
            assert time.monotonic() < deadline, f"no ops.client_gone in {logs}"
            time.sleep(0.02)
    gone = next(e for e in logs if e["event"] == "ops.client_gone")
    assert gone["log_level"] == "debug"
    assert gone["error"] in {"BrokenPipeError", "ConnectionResetError"}
    assert "Traceback" not in capfd.readouterr().err


def test_ipv6_loopback() -> None:
    """An IPv6 host ("[::1]:9464" in the config) gets an IPv6 socket."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with capture_logs(), OpsServer(("::1", 0), Metrics(), fresh_health) as server:
        response = httpx.get(f"http://[::1]:{server.port}/healthz", timeout=10)
    assert response.status_code == 200


# --- systemd notify --------------------------------------------------------------------------


def test_notifications_reach_the_socket(receiver: tuple[socket.socket, str]) -> None:
    """READY, STATUS, WATCHDOG and STOPPING arrive as systemd's plain datagrams."""
    sock, path = receiver
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert received(sock) == "READY=1"
    assert notifier.status("polling 2 watches")
    assert received(sock) == "STATUS=polling 2 watches"
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"
    assert notifier.ready(status="ready: 2 watches")
    assert received(sock) == "READY=1\nSTATUS=ready: 2 watches"


def test_status_text_stays_one_assignment(receiver: tuple[socket.socket, str]) -> None:
    """A newline in a status cannot smuggle a second assignment (e.g. READY=1) to systemd."""
    sock, path = receiver
    SystemdNotifier({"NOTIFY_SOCKET": path}).status("draining\nREADY=1")
    assert received(sock) == "STATUS=draining READY=1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
def test_abstract_socket() -> None:
    """NOTIFY_SOCKET=@name reaches the abstract socket of that name."""
    name = f"dropzone-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert received(sock) == "WATCHDOG=1"


def test_without_notify_socket_nothing_happens() -> None:
    """Outside systemd every call is a quiet no-op."""
    with capture_logs() as logs:
        notifier = SystemdNotifier({})
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.status("x")
        assert not notifier.watchdog()
        assert not notifier.stopping()
    assert logs == []


def test_unsupported_address_disables_notify_with_a_warning() -> None:
    """An address form dropzone does not speak (vsock) is said once, then ignored."""
    with capture_logs() as logs:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
        assert not notifier.ready()
    assert [log["event"] for log in logs] == ["systemd.notify_unsupported"]


def test_vanished_socket_never_raises_and_logs_once(tmp_path: Path) -> None:
    """Sends to a socket that went away fail quietly: one warning per outage, no exception."""
    path = tmp_path / "gone.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    path.unlink()
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    assert [log["event"] for log in logs] == ["systemd.notify_failed"]
    assert logs[0]["log_level"] == "warning"


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        pytest.param({}, 1, None, id="unset"),
        pytest.param({"WATCHDOG_USEC": "30000000"}, 1, 30.0, id="30s"),
        pytest.param({"WATCHDOG_USEC": "500000"}, 1, 0.5, id="half-second"),
        pytest.param({"WATCHDOG_USEC": "0"}, 1, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "soon"}, 1, None, id="garbage"),
        pytest.param({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "4242"}, 4242, 5.0, id="our-pid"),
        pytest.param({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "4242"}, 4243, None, id="other"),
        pytest.param({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "x"}, 4242, None, id="bad-pid"),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    """WATCHDOG_USEC gives the interval, unless WATCHDOG_PID names another process."""
    assert watchdog_interval_s(env, pid) == expected


def test_watchdog_pid_defaults_to_this_process() -> None:
    """Without an explicit pid the check compares with os.getpid()."""
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 2.0
    theirs = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval_s(theirs) is None


# --- one heartbeat, both consumers -----------------------------------------------------------


def test_one_heartbeat_feeds_the_watchdog_and_healthz(receiver: tuple[socket.socket, str]) -> None:
    """The same heartbeat drives WATCHDOG=1 over a real socket and /healthz over real HTTP."""
    sock, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    heartbeat = Heartbeat(watchdog_interval_s=watchdog_interval_s(env), watches=["chat"])
    notifier = SystemdNotifier(env)
    clock = [START + 1000]
    probe = health_probe(
        heartbeat=heartbeat,
        poll_interval_s=INTERVAL,
        started_at=START,
        due=lambda: {"chat": 0},
        ledger_writable=lambda: True,
        wall_clock=lambda: clock[0],
    )
    with serving(Metrics(), probe) as client:
        assert client.get("/healthz").status_code == 503  # grace over, never polled
        heartbeat.polled("chat", clock[0])
        heartbeat.pulse(notifier)
        assert client.get("/healthz").status_code == 200
    assert received(sock) == "WATCHDOG=1"
