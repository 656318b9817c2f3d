"""The replica torture, short: three daemons on one PostgreSQL ledger while daemons are killed,
stalled past their lease and cut off, and the server restarts; one job per file.

It runs ``bench/torture_replicas.py`` as a person would and then checks, itself, the raw end
state the script reports (its checks read the emulator's jobs and every ledger entry), rather
than only its verdict. The script starts its own PostgreSQL cluster (it restarts it); the
session's ``postgres`` fixture is asked for so that a machine without PostgreSQL skips (or, in
CI, fails) as the other PostgreSQL tests do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import load_scale

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "bench" / "torture_replicas.py"
# About 40 s on two busy cores (the chaos, then the settling); a hang guard, not a bar.
DEADLINE_S = 240


def test_replicas_under_chaos_make_one_job_per_file(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    del postgres  # asked for its skip-or-fail: the script runs a server of its own
    report_path = tmp_path / "report.json"
    command = [
        sys.executable,
        str(BENCH),
        "--files",
        "40",
        "--events",
        "16",
        "--pg-restarts",
        "1",
        "--seed",
        "7",
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(report_path),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = process.communicate(timeout=DEADLINE_S * load_scale())
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"the replica torture did not finish:\n{out}")
    assert process.returncode == 0, out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["files"] == 40
    assert report["jobs"] == 40, out
    assert report["problems"] == []
    assert report["tracebacks"] == 0
    # The chaos happened: daemons killed and cut off, and the server restarted.
    assert report["events"].get("kill", 0) + report["events"].get("cut", 0) >= 1
    assert report["events"]["pg_restart"] == 1
    assert report["create_calls"] >= report["jobs"]
