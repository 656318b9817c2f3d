"""The command line's contracts: exit codes, messages, and what each ledger command does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.harness import SECRET_KEY, Stage, load_scale, wait_for

if TYPE_CHECKING:
    from pathlib import Path


def test_config_error_exit_2_names_file_and_setting(stage: Stage) -> None:
    """A wrong type and an unknown key are both reported, naming the file and the settings."""
    stage.daemon["concurrency"] = "many"
    stage.watch["patern"] = "*.jsonl"
    done = stage.dropzone("run", "--once")
    assert done.returncode == 2
    config = str(stage.tmp / "dropzone.toml")
    assert config in done.stderr
    assert "daemon.concurrency" in done.stderr
    assert "patern" in done.stderr
    assert "pattern" in done.stderr  # the suggestion
    assert stage.create_calls() == {}


def test_check_redacts_and_reports_credentials(stage: Stage) -> None:
    """check prints the effective config, says credentials were found, and never the secret."""
    done = stage.dropzone("check")
    assert done.returncode == 0, done.stderr
    effective = json.loads(done.stdout)
    assert effective["watch"][0]["bucket"] == stage.bucket
    assert "credentials: ok: found" in done.stderr
    assert SECRET_KEY not in done.stdout + done.stderr


def test_check_without_credentials_exit_1(stage: Stage) -> None:
    """Without credentials, check says so and exits 1 (the config itself is fine)."""
    env = stage.env()
    del env["VOLCENGINE_SECRET_KEY"], env["VOLCENGINE_ACCESS_KEY"]
    done = subprocess.run(
        [sys.executable, "-m", "dropzone", "check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no Volcengine credentials found" in done.stderr


@pytest.mark.slow
def test_check_list_counts_without_writing(stage: Stage) -> None:
    """check --list gives objects, matching and new per watch and creates no ledger."""
    stage.put("a.jsonl")
    stage.put("b.jsonl")
    stage.put("notes.txt", b"x")
    done = stage.dropzone("check", "--list")
    assert done.returncode == 0, done.stderr
    assert "3 objects, 2 match, 2 new" in done.stderr
    assert not stage.ledger_path.exists()


def test_dry_run_prints_requests_and_changes_nothing(stage: Stage) -> None:
    """--dry-run prints the planned request per object; no ledger, no API call."""
    key = stage.put("team/x.jsonl")
    done = stage.dropzone("run", "--dry-run")
    assert done.returncode == 0, done.stderr
    [planned] = [json.loads(line) for line in done.stdout.splitlines()]
    assert planned["key"] == key
    assert planned["action"] == "submit"
    request = planned["request"]
    assert request["OutputDirTosLocation"]["ObjectKey"] == "batch-inference-job/output/team/x/"
    assert {"Key": "dropzone-watch", "Value": "chat"} in request["Tags"]
    assert not stage.ledger_path.exists()
    assert stage.create_calls() == {}


@pytest.mark.slow
def test_status_filters_and_retry_forget(stage: Stage) -> None:
    """status --state/--watch filter; forget makes a file new again; retry needs a state."""
    key = stage.put("a.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    submitted = stage.dropzone("status", "--json", "--state", "submitted", "--watch", "chat")
    assert [json.loads(line)["key"] for line in submitted.stdout.splitlines()] == [key]
    assert stage.dropzone("status", "--json", "--state", "rejected").stdout == ""
    bad_state = stage.dropzone("status", "--state", "nonsense")
    assert bad_state.returncode == 2
    assert "states: baseline" in bad_state.stderr
    forgot = stage.dropzone("forget", key)
    assert "1 entry forgotten" in forgot.stdout
    assert stage.status() == []
    assert stage.dropzone("retry").stdout.strip() == "0 entries -> pending"


@pytest.mark.slow
def test_submit_one_object_now(stage: Stage) -> None:
    """submit tos://BUCKET/KEY records and submits one object at once, even a baseline one."""
    stage.watch["on_start"] = "skip-existing"
    key = stage.put("later.jsonl")
    done = stage.dropzone("submit", f"tos://{stage.bucket}/{key}")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.splitlines()[-1])  # after the daemon's log lines
    assert record["state"] == "submitted"
    assert record["job_id"].startswith("bi-")
    missing = stage.dropzone("submit", f"tos://{stage.bucket}/{stage.prefix}nope.jsonl")
    assert missing.returncode == 1
    assert "no such object" in missing.stderr
    assert stage.dropzone("submit", "s3://x").returncode == 2


@pytest.mark.slow
def test_second_daemon_on_the_same_ledger_refuses(stage: Stage) -> None:
    """A second daemon on the same ledger stops with a clear message naming the ledger."""
    first = stage.spawn("run")
    try:
        wait_for(stage.ledger_path.exists, what="the first daemon's ledger")
        second = stage.dropzone("run", "--once")
        assert second.returncode == 2
        assert str(stage.ledger_path) in second.stderr
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30 * load_scale())


@pytest.mark.slow
def test_validate_command(tmp_path: Path, stage: Stage) -> None:
    """dropzone validate: exit 0 for a valid file, 1 with line-numbered reasons otherwise."""
    good = tmp_path / "good.jsonl"
    good.write_text('{"custom_id":"1","body":{}}\n', encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id":"1","body":{}}\n{"body":{}}\n', encoding="utf-8")
    assert stage.dropzone("validate", str(good)).returncode == 0
    done = stage.dropzone("validate", str(good), str(bad))
    assert done.returncode == 1
    assert "line 2: custom_id is missing" in done.stdout
