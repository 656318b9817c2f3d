"""Known credentials, every command, and a scan of everything dropzone wrote or printed.

The secret key and the session token must appear nowhere: not in any command's output or logs
(errors and retries included), not in the ledger's files, not in a validation report (in the
bucket or beside a local file), not on /metrics or /healthz.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import tomllib
from typing import TYPE_CHECKING

import httpx
import pytest
import rich  # noqa: F401 - the console scan below must run with rich installed
import tomli_w

from dropzone.emulator import Emulator
from dropzone.plan import REPORT_SUFFIX
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

SESSION_TOKEN = "STS-session-token-that-must-never-show-0123456789"
SECRETS = (SECRET_KEY, SESSION_TOKEN)


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    except httpx.TransportError:
        return False  # not listening yet


class Recorder:
    """Runs commands with the session token added to the stage's credentials; keeps all text."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.texts: dict[str, str] = {}

    def run_on_terminal(self, *args: str) -> int:
        """The command with a pseudo-terminal for stdout and stderr, as a person at a console
        runs it: the console renderer in colour, rich's where rich is installed."""
        main, child = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "dropzone", *args],
            env={**self.stage.env(), "VOLCENGINE_SESSION_TOKEN": SESSION_TOKEN},
            stdin=subprocess.DEVNULL,
            stdout=child,
            stderr=child,
        )
        os.close(child)
        chunks = []
        while True:  # read as it comes: a full terminal buffer would stop the child
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child's end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(main)
        returncode = process.wait(timeout=120 * load_scale())
        self.texts["terminal: " + " ".join(args)] = b"".join(chunks).decode(errors="replace")
        return returncode

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.stage.dropzone(*args, env={"VOLCENGINE_SESSION_TOKEN": SESSION_TOKEN})
        self.texts[" ".join(args)] = done.stdout + done.stderr
        return done


@pytest.mark.slow
def test_no_command_prints_or_stores_a_secret(tmp_path: Path, moto_endpoint: str) -> None:
    s3 = s3_client(moto_endpoint)
    port = free_port()
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=0.2, run_s=0.4, seed=5) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.watch.update({"validate": True, "report": True})
        stage.daemon.update({"listen": f"127.0.0.1:{port}", "track_interval_s": 0.2})
        good, bad = stage.put("good.jsonl"), stage.put("bad.jsonl", b'{"custom_id": "x"\n')
        rec = Recorder(stage)
        assert rec.run("check").returncode == 0
        rec.run("check", "--list")
        # Errors and retries print the most: half of all calls fail at first.
        ark.set_faults(fail_rate=0.5)
        rec.run("run", "--once")
        # The console renderer too, with rich installed (a dev dependency for this): it
        # printed frame locals, the session token among them (issue 12 item 8).
        rec.run_on_terminal("run", "--once", "--log-level", "debug")
        ark.set_faults(fail_rate=0.0)
        rec.run("run", "--once")
        rec.run("status")
        rec.run("status", "--json")
        rec.run("retry", "--state", "invalid")
        rec.run("forget", good)
        rec.run("submit", f"tos://{stage.bucket}/{good}")
        rec.run("backfill")
        local = tmp_path / "local-bad.jsonl"
        local.write_bytes(b"not json\n")
        rec.run("validate", str(local), str(tmp_path / "missing.jsonl"))
        process = stage.spawn("run", env={"VOLCENGINE_SESSION_TOKEN": SESSION_TOKEN})
        try:
            wait_for(lambda: _healthy(port), what="the daemon to report healthy")
            rec.texts["/metrics"] = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            rec.texts["/healthz"] = httpx.get(f"http://127.0.0.1:{port}/healthz").text
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30 * load_scale())
        rec.texts["run (daemon)"] = out + err
        # A wrong secret: the refusal and its hint are printed; the secret is not.
        late = stage.put("late.jsonl")
        wrong_env = {
            "VOLCENGINE_SECRET_KEY": SECRET_KEY + "x",
            "DROPZONE_DAEMON__ONCE_MAX_WAIT_S": "1",
        }
        wrong = stage.dropzone("run", "--once", env=wrong_env)
        rec.texts["run --once (wrong secret)"] = wrong.stdout + wrong.stderr
        states = {row["key"]: row["state"] for row in stage.status()}
        objects = s3.list_objects_v2(Bucket=stage.bucket)["Contents"]
        reports = {
            item["Key"]: s3.get_object(Bucket=stage.bucket, Key=item["Key"])["Body"].read()
            for item in objects
            if item["Key"].endswith(REPORT_SUFFIX)
        }
    # The commands did their work (a scan of nothing would prove nothing).
    assert states == {good: "submitted", bad: "invalid", late: "pending"}
    assert list(reports) == [bad + REPORT_SUFFIX]
    assert "dropzone_submissions_total" in rec.texts["/metrics"]
    assert "ark.auth_failed" in rec.texts["run --once (wrong secret)"]
    console = rec.texts["terminal: run --once --log-level debug"]
    assert "\x1b[" in console  # in colour: the console renderer, not JSON
    assert "daemon.started" in console
    assert "local-bad.jsonl" in rec.texts[f"validate {local} {tmp_path / 'missing.jsonl'}"]
    assert_no_secret(rec.texts, reports, stage.ledger_path.parent)


def assert_no_secret(texts: dict[str, str], reports: dict[str, bytes], ledger_dir: Path) -> None:
    """No secret in any text printed, any report written, any file of the ledger's."""
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{name} printed a secret"
    for secret in SECRETS:
        for key, body in reports.items():
            assert secret.encode() not in body, key
        for path in ledger_dir.iterdir():
            assert secret.encode() not in path.read_bytes(), path


def test_a_secret_pasted_as_a_credential_path_is_never_printed(stage: Stage) -> None:
    """A secret key pasted into `secret_key_file` (where its file's path belongs) was printed
    back in the "no such file" error (issue 12 item 8). Neither `run` nor `check` shows it
    now: the error names the setting, and `check` shows the setting as [secure]."""
    config = stage.tmp / "pasted.toml"
    data = tomllib.loads(stage.config_text())
    access_key = stage.tmp / "access_key"
    access_key.write_text("AKLTdaemontest\n", encoding="utf-8")
    data["ark"].update(access_key_file=str(access_key), secret_key_file=SECRET_KEY)
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    no_env = {"VOLCENGINE_ACCESS_KEY": "", "VOLCENGINE_SECRET_KEY": ""}
    run = stage.dropzone("run", "--once", "-c", str(config), env=no_env)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        "dropzone run: [ark] secret_key_file: no such file (the value is not shown)\n"
    )
    check = stage.dropzone("check", "--json", "-c", str(config), env=no_env)
    assert check.returncode != 0
    assert "[secure]" in check.stdout
    for done in (run, check):
        assert SECRET_KEY not in done.stdout + done.stderr
