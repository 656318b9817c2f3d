"""systemd/dropzone.service under a real systemd (PID 1 of a container, ``--systemd=always``):
READY=1 makes it active, ``systemctl reload`` is a SIGHUP to the same process, a frozen daemon
is killed by the watchdog and restarted, ``systemctl stop`` drains it (STOPPING=1, exit 0),
and a live ``systemd-analyze security`` scores it 2.0 or less.

The container's root mount is private, so systemd's LoadCredential= paths (mounted into the
service's namespace) never appear until ``mount --make-rshared /`` runs before ``/sbin/init``
(systemd issue #38103). The daemon reaches the emulator and moto on the host's loopback.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.harness import ACCESS_KEY, SECRET_KEY, free_port, log_events, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.harness import Stage
    from tests.system.engine import Podman

pytestmark = [pytest.mark.slow, pytest.mark.system]

BOOT = "mount --make-rshared / && exec /sbin/init"
# The drop-in that makes the watchdog's test take seconds instead of a minute.
FAST_WATCHDOG = "[Service]\nWatchdogSec=4\n"


class Booted:
    """A container whose PID 1 is systemd, and the unit in it."""

    def __init__(self, podman: Podman, name: str) -> None:
        self.podman = podman
        self.name = name

    def sh(self, script: str, *, check: bool = True) -> str:
        return self.podman("exec", self.name, "sh", "-c", script, check=check).stdout.strip()

    def show(self, *properties: str) -> dict[str, str]:
        text = self.sh(f"systemctl show dropzone.service -p {','.join(properties)}")
        return dict(line.split("=", 1) for line in text.splitlines())

    def journal(self) -> str:
        return self.sh("journalctl -u dropzone.service -o cat --no-pager", check=False)

    def active(self) -> bool:
        return self.sh("systemctl is-active dropzone.service", check=False) == "active"


@pytest.fixture
def booted(podman: Podman, unit_image: str, stage: Stage) -> Iterator[Booted]:
    etc = stage.tmp / "etc-dropzone"
    (etc / "credentials").mkdir(parents=True)
    stage.ledger = {"path": "/var/lib/dropzone/ledger.sqlite3"}
    stage.daemon.update(listen=f"127.0.0.1:{free_port()}")
    (etc / "dropzone.toml").write_text(stage.config_text(), encoding="utf-8")
    (etc / "dropzone.toml").chmod(0o644)
    for name, value in (("access_key", ACCESS_KEY), ("secret_key", SECRET_KEY)):
        (etc / "credentials" / name).write_text(value + "\n", encoding="utf-8")
        (etc / "credentials" / name).chmod(0o600)
    (etc / "credentials").chmod(0o700)
    name = f"dropzone-unit-{free_port()}"
    podman(
        "run", "--detach", "--name", name, "--systemd=always", "--privileged",
        "--network", "host", "--volume", f"{etc}:/etc/dropzone:ro",
        "--entrypoint", "/bin/sh", unit_image, "-c", BOOT,
    )  # fmt: skip
    unit = Booted(podman, name)
    try:
        yield unit
    finally:
        podman.remove(name)


def test_the_unit_is_ready_reloads_is_restarted_by_the_watchdog_and_stops_cleanly(
    booted: Booted, stage: Stage
) -> None:
    wait_for(booted.active, timeout=120, what="dropzone.service active (READY=1)")
    assert booted.show("Type")["Type"] == "notify"
    key = stage.put("under-systemd.jsonl")
    wait_for(lambda: len(stage.jobs()) == 1, timeout=120, what="the file's job")

    pid = booted.show("MainPID")["MainPID"]
    booted.sh("systemctl reload dropzone.service")
    wait_for(lambda: "config.reloaded" in booted.journal(), timeout=60, what="the reload")
    assert booted.show("MainPID")["MainPID"] == pid
    assert booted.active()

    booted.sh(
        "mkdir -p /run/systemd/system/dropzone.service.d && printf '"
        + FAST_WATCHDOG.replace("\n", "\\n")
        + "' > /run/systemd/system/dropzone.service.d/watchdog.conf"
        " && systemctl daemon-reload && systemctl restart dropzone.service"
    )
    wait_for(booted.active, timeout=120, what="active again with WatchdogSec=4")
    assert booted.show("WatchdogUSec")["WatchdogUSec"] == "4s"
    frozen = booted.show("MainPID")["MainPID"]
    booted.sh(f"kill -STOP {frozen}")

    def restarted() -> bool:
        now = booted.show("MainPID", "NRestarts", "ActiveState")
        return now["MainPID"] not in {frozen, "0"} and now["ActiveState"] == "active"

    wait_for(restarted, timeout=120, what="the watchdog's kill and the restart")
    assert int(booted.show("NRestarts")["NRestarts"]) >= 1
    assert "Watchdog timeout" in booted.sh("journalctl -u dropzone.service --no-pager")

    booted.sh("systemctl stop dropzone.service")
    stopped = booted.show("ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    events = [e["event"] for e in log_events(booted.journal())]
    assert "daemon.ready" in events
    assert "daemon.stopping" in events
    assert "Traceback" not in booted.journal()
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1}


def test_a_live_security_analysis_scores_the_unit_2_or_less(booted: Booted) -> None:
    wait_for(booted.active, timeout=120, what="dropzone.service active")
    report = booted.sh("systemd-analyze security --no-pager dropzone.service")
    found = re.search(r"Overall exposure level for dropzone\.service: (\d+\.\d+)", report)
    assert found is not None, report[-2000:]
    assert float(found.group(1)) <= 2.0, report
