"""The container image built from the Dockerfile as it is, and run for real: the demo; the
daemon against the emulator and moto on the host's loopback, as uid 10001 on a read-only
root, its HEALTHCHECK healthy, unhealthy while the process is frozen, healthy again; a clean
stop (SIGTERM, exit 0)."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING

import pytest

from tests.harness import ACCESS_KEY, SECRET_KEY, free_port, log_events, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.harness import Stage
    from tests.system.engine import Podman

pytestmark = [pytest.mark.slow, pytest.mark.system]

# The health-check timers need a systemd on the host; the tests run each check themselves.
NO_TIMER = ("--health-interval", "disable")


def test_the_demo_runs_in_the_image_on_a_read_only_root(podman: Podman, image: str) -> None:
    done = podman(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "host", image,
        "demo", "--quick",
        timeout=300,
    )  # fmt: skip
    assert "the emulator holds 1 job for 2 drops of the same file" in done.stdout, done.stdout
    assert "-> results/chat-sample/output/results.jsonl (5 answers)" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_the_image_runs_as_10001_with_the_healthcheck_it_declares(
    podman: Podman, image: str
) -> None:
    assert podman("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip() == "10001"
    check = json.loads(
        podman("image", "inspect", "--format", "{{json .HealthCheck}}", image).stdout
    )
    assert check["Test"][0] == "CMD"
    assert "/healthz" in " ".join(check["Test"])
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["StopSignal"] == "SIGTERM"
    assert config["User"] == "10001:10001"


def container_config(stage: Stage) -> str:
    """The stage's config as the container reads it: the ledger in the image's volume."""
    stage.ledger = {"path": "/var/lib/dropzone/ledger.sqlite3"}
    return stage.config_text()


def secrets_folder(tmp: Path) -> Path:
    """/run/secrets as the image documents it; readable by uid 10001."""
    folder = tmp / "secrets"
    folder.mkdir()
    for name, value in (("access_key", ACCESS_KEY), ("secret_key", SECRET_KEY)):
        (folder / name).write_text(value + "\n", encoding="utf-8")
        os.chown(folder / name, 10001, 10001)
        (folder / name).chmod(0o400)
    return folder


def test_the_daemon_in_the_image_submits_stays_healthy_and_stops_cleanly(
    podman: Podman, image: str, stage: Stage
) -> None:
    config = stage.tmp / "container.toml"
    config.write_text(container_config(stage), encoding="utf-8")
    port = free_port()
    name = f"dropzone-daemon-{port}"
    podman(
        "run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp",
        "--network", "host", *NO_TIMER,
        "--env", f"DROPZONE_DAEMON__LISTEN=127.0.0.1:{port}",
        "--volume", f"{config}:/etc/dropzone/dropzone.toml:ro",
        "--volume", f"{secrets_folder(stage.tmp)}:/run/secrets:ro",
        image,
    )  # fmt: skip
    try:
        key = stage.put("in-the-container.jsonl")
        wait_for(lambda: len(stage.jobs()) == 1, timeout=120, what="the file's job")

        def health() -> int:
            return podman("healthcheck", "run", name, check=False, timeout=60).returncode

        wait_for(lambda: health() == 0, timeout=60, what="the HEALTHCHECK healthy")
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        written = podman("exec", name, "touch", "/opt/dropzone/written", check=False)
        assert written.returncode != 0
        assert "Read-only file system" in written.stderr
        pid = int(podman.inspect(name, "{{.State.Pid}}"))
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: health() != 0, timeout=60, what="unhealthy while frozen")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: health() == 0, timeout=60, what="healthy again once thawed")
        podman("stop", "--time", "45", name, timeout=120)
        assert podman.inspect(name, "{{.State.ExitCode}}") == "0"
        logs = podman("logs", name)
    finally:
        podman.remove(name)
    events = [e["event"] for e in log_events(logs.stdout)]
    assert "daemon.ready" in events
    assert "job.submitted" in events
    assert "daemon.stopping" in events, events[-5:]
    assert "Traceback" not in logs.stdout + logs.stderr
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1}
