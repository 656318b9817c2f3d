"""What a command imports: start-up time is paid by every status, check and cron-driven run.

Each command runs as a real process under ``python -X importtime``, whose report names every
module imported; the test reads that list. The bars themselves are timed by
``bench/startup.py`` and ``bench/job_cost.py``, never here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import tomli_w

if TYPE_CHECKING:
    from pathlib import Path

# Nothing listens on port 9 (discard) on these machines: a run that reaches out fails at once.
CLOSED = "http://127.0.0.1:9"


def _config(tmp_path: Path) -> Path:
    document = {
        "ark": {"endpoint": CLOSED, "timeout_s": 2},
        "tos": {"endpoint": CLOSED, "region": "us-east-1", "addressing_style": "path"},
        "ledger": {"path": str(tmp_path / "ledger.sqlite3")},
        "daemon": {"listen": "", "once_max_wait_s": 1},
        "watch": [
            {
                "name": "chat",
                "bucket": "b",
                "prefix": "in/",
                "model": {"name": "doubao-pro-32k", "version": "240615"},
            }
        ],
    }
    path = tmp_path / "dropzone.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def _imported(tmp_path: Path, *command: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DROPZONE_", "VOLC", "AWS_"))
    }
    env |= {
        "DROPZONE_CONFIG": str(_config(tmp_path)),
        "VOLCENGINE_ACCESS_KEY": "AKLTimports",
        "VOLCENGINE_SECRET_KEY": "import-cost-secret",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dropzone", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return {name.split(".")[0] for name in modules} | modules, done


def test_status_and_check_offline_import_neither_boto3_nor_httpx(tmp_path: Path) -> None:
    _, migrated = _imported(tmp_path, "ledger", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    for command in (("status",), ("check", "--offline")):
        modules, done = _imported(tmp_path, *command)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "dropzone.cli" in modules  # the report was read
        assert {"boto3", "botocore", "httpx"} & modules == set(), command


def test_run_once_of_a_bucket_watch_imports_no_part_it_has_no_use_for(tmp_path: Path) -> None:
    """No folder watch (watchdog), no webhook (Standard Webhooks), no event feed (Kafka, the
    feeds' modules), no --dry-run (the preview), no /metrics, heartbeat or systemd (the ops
    server's modules), no metrics at all (nothing could read them), no validation (the
    preflight's), no managed transfers (boto3's session and s3transfer: nothing uploads)."""
    modules, done = _imported(tmp_path, "run", "--once", "--log-format", "json")
    assert "daemon.started" in done.stdout + done.stderr, done.stderr[-2000:]
    assert "dropzone.daemon.build" in modules
    unused = {
        "watchdog",
        "standardwebhooks",
        "confluent_kafka",
        "dropzone.daemon.feeds",
        "dropzone.watches.folder",
        "dropzone.commands.preview",
        "dropzone.ops.http",
        "dropzone.ops.health",
        "dropzone.ops.systemd",
        "dropzone.ops.metrics",
        "prometheus_client",
        "dropzone.preflight",
        "boto3",
        "s3transfer",
    }
    assert unused & modules == set()
