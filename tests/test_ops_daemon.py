"""A running daemon answers /metrics and /healthz, notifies systemd, and tracks jobs to the end."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dropzone.emulator import Emulator
from dropzone.emulator.inputs import s3_reader
from tests.harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Stage,
    free_port,
    load_scale,
    new_bucket,
    s3_client,
    wait_for,
)

if TYPE_CHECKING:
    from pathlib import Path


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.mark.slow
def test_metrics_health_notify_and_tracking(tmp_path: Path, moto_endpoint: str) -> None:
    """One daemon run: READY=1 after the first poll, metrics and health over HTTP, phases to
    Completed in status, STOPPING=1 on SIGTERM."""
    s3 = s3_client(moto_endpoint)
    notify = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify))
    receiver.settimeout(20)
    port = free_port()
    reader = s3_reader(moto_endpoint)
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=0.3, run_s=0.6, read_input=reader) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.daemon.update({"listen": f"127.0.0.1:{port}", "track_interval_s": 0.2})
        key = stage.put("a.jsonl")
        env = {**stage.env(), "NOTIFY_SOCKET": str(notify)}
        process = subprocess.Popen(
            [sys.executable, "-m", "dropzone", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.recv(4096).decode().startswith("READY=1")
            wait_for(
                lambda: [r["phase"] for r in stage.status()] == ["Completed"],
                what="the job's phase to reach Completed in status",
            )
            metrics = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30 * load_scale())
        messages: list[bytes] = []
        while b"STOPPING=1" not in b"".join(messages):
            messages.append(receiver.recv(4096))
        receiver.close()
        [row] = stage.status()
    assert process.returncode == 0
    submitted = ("dropzone_submissions_total", (("outcome", "submitted"), ("watch", "chat")))
    assert metrics[submitted] == 1
    create = (
        "dropzone_api_requests_total",
        (("action", "CreateBatchInferenceJob"), ("status", "200")),
    )
    assert metrics[create] == 1
    assert metrics["dropzone_ledger_entries", (("state", "submitted"), ("watch", "chat"))] == 1
    assert health.status_code == 200
    body = health.json()
    assert body["ok"] is True
    assert (body["degraded"], body["ark"]["reachable"]) == ([], True)
    assert metrics["dropzone_ark_unreachable_seconds", ()] == 0
    assert body["watches"]["chat"]["last_poll"] is not None
    assert row["key"] == key
    assert row["request_counts"] == {"total": 2, "completed": 2, "failed": 0}  # jsonl()'s lines


@pytest.mark.slow
def test_a_folder_watch_has_a_last_poll_as_a_bucket_watch_does(stage: Stage) -> None:
    """A local-folder watch is never listed; its rounds set the last-poll gauge all the same,
    or deploy/prometheus's "never polled" alert would fire for every folder watch."""
    stage.watch_folder()
    port = free_port()
    stage.daemon.update(listen=f"127.0.0.1:{port}")
    process = stage.spawn("run")
    try:

        def last_poll() -> float | None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            except httpx.TransportError:
                return None
            series = ("dropzone_last_successful_poll_timestamp_seconds", (("watch", "chat"),))
            return _samples(text).get(series)

        wait_for(lambda: last_poll() is not None, timeout=60, what="the folder watch's last poll")
        first = last_poll()
        assert first is not None
        wait_for(lambda: (last_poll() or 0) > first, timeout=60, what="a later round's")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30 * load_scale())
    assert process.returncode == 0
