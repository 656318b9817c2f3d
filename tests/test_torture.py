"""The torture, short: a daemon SIGKILLed at random moments under a faulty API, one job per file.

The first test runs ``bench/torture.py`` as a person would, against the session's moto server,
and then checks the raw end state the script reports (the emulator's jobs per input and every
ledger entry) itself, rather than only trusting the script's verdict. What it proves holds for
any timing of the kills: nothing here waits "long enough"; the end state is read after a
bounded ``run --once``.

The second pins down, deterministically, a hole the torture found with its ``--stall-rate``
fault (the emulator's slow Creates): a Create carried out after the client stopped waiting for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dropzone.emulator import Emulator
from dropzone.plan import input_tag
from tests.harness import ACCESS_KEY, SECRET_KEY, Stage, load_scale, new_bucket, s3_client, wait_for

BENCH = Path(__file__).resolve().parent.parent / "bench" / "torture.py"
FILES = 40
KILLS = 20
SEED = 20240611
# The run takes about 35 s on two busy cores; stretched by the load (a hang guard, not a bar).
DEADLINE_S = 110


def run_torture(tmp_path: Path, moto_endpoint: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    """Run the script in its own process group (killed whole on a hang); exit code, output,
    and its JSON report."""
    report_path = tmp_path / "report.json"
    command = [
        sys.executable,
        str(BENCH),
        "--s3-endpoint",
        moto_endpoint,
        "--workdir",
        str(tmp_path / "work"),
        "--json",
        str(report_path),
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=DEADLINE_S * load_scale())
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the torture did not finish within {DEADLINE_S} s:\n{output[-6000:]}")
    assert report_path.exists(), output[-6000:]
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    return process.returncode, output, report


@pytest.mark.slow
def test_sigkill_torture_with_short_jobs_leaves_one_job_per_file(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """40 files over two TOS watches and two local ones (upload, mounted), added while a real
    daemon is SIGKILLed 20 times (while starting, at work, or just after a Create reached the
    API) and the API loses 10% of Create answers and fails 10% of calls (5xx, 429): every file
    ends with exactly one job, no job exists for anything else, and the ledger holds one
    submitted entry per file naming that job, whose tag is the entry's. Jobs last 0.3 s, so the
    platform's guard never hides a repeated Create: only the ledger and the reconciliation by
    tag keep it to one."""
    code, output, report = run_torture(
        tmp_path,
        moto_endpoint,
        *("--files", str(FILES), "--kills", str(KILLS), "--seed", str(SEED)),
        *("--queue-s", "0.1", "--run-s", "0.2", "--max-work-s", "1.0", "--once-max-wait-s", "60"),
    )
    assert code == 0, output[-8000:]
    assert report["violations"] == []
    assert report["kills"] >= KILLS
    expected: list[str] = report["expected"]
    assert len(set(expected)) == FILES
    jobs: dict[str, list[str]] = report["jobs_by_input"]
    assert {name: len(ids) for name, ids in jobs.items()} == dict.fromkeys(expected, 1)
    rows: list[dict[str, Any]] = report["ledger"]
    assert sorted(f"{r['bucket']}/{r['key']}" for r in rows) == sorted(expected)
    assert {r["state"] for r in rows} == {"submitted"}
    assert all([r["job_id"]] == jobs[f"{r['bucket']}/{r['key']}"] for r in rows)
    tags: dict[str, str] = report["job_tags"]
    assert all(tags[r["job_id"]] == input_tag(r["bucket"], r["key"], r["etag"]) for r in rows)
    assert report["create_calls"] >= FILES


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["wal", "empty"])
def test_the_torture_with_the_ledger_lost_after_every_kill_makes_no_second_job(
    tmp_path: Path, moto_endpoint: str, loss: str
) -> None:
    """The write-ahead log deleted (or the ledger replaced by an empty file) after each of 8
    SIGKILLs: the platform's tags keep it to one job per file, and the ledger, rebuilt from
    the listings, names each one (a lost ledger gave 5 of 5 submitted files a second job)."""
    files = 16
    code, output, report = run_torture(
        tmp_path,
        moto_endpoint,
        *("--files", str(files), "--kills", "8", "--seed", str(SEED), "--ledger-loss", loss),
        *("--queue-s", "0.1", "--run-s", "0.2", "--max-work-s", "1.0", "--once-max-wait-s", "60"),
    )
    assert code == 0, output[-8000:]
    assert report["violations"] == []
    assert report["ledger_losses"] >= 1
    jobs: dict[str, list[str]] = report["jobs_by_input"]
    assert {name: len(ids) for name, ids in jobs.items()} == dict.fromkeys(report["expected"], 1)
    assert {r["state"] for r in report["ledger"]} == {"submitted"}


@pytest.mark.slow
def test_a_create_carried_out_after_the_time_out_makes_no_second_job(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """A Create the platform carries out 3.2 s after it arrived, when the client gave up after
    2 s, still ends as one job: the reconciliation must not take "not listed yet" for "never
    made" and send the request again. Jobs last 0.3 s, so the guard cannot catch the second."""
    s3 = s3_client(moto_endpoint)
    # Every Create is held 3.2 s before the platform carries it out.
    slow = Emulator(
        ACCESS_KEY, SECRET_KEY, queue_s=0.1, run_s=0.2, slow_create_rate=1.0, slow_create_s=3.2
    )
    with slow as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        key = stage.put("slow.jsonl")
        done = subprocess.run(
            [sys.executable, "-m", "dropzone", "run", "--once"],
            env={**stage.env(), "DROPZONE_ARK__TIMEOUT_S": "2"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Anything but the second job fails for real (pytest.fail is no AssertionError).
        try:
            wait_for(
                lambda: ark.state()["slowed_creates_under_way"] == 0,
                what="the slow Creates to be carried out",
            )
        except AssertionError as exc:
            pytest.fail(str(exc))
        if done.returncode != 0:
            pytest.fail(done.stdout[-3000:] + done.stderr[-3000:])
        if ark.state()["slowed_creates"] == 0:
            pytest.fail("no Create was slowed: the test proves nothing")
        rows = stage.status()
        if [(r["key"], r["state"]) for r in rows] != [(key, "submitted")]:
            pytest.fail(f"unexpected ledger: {rows}")
        assert [len(ids) for ids in stage.jobs_by_input().values()] == [1], stage.jobs_by_input()
