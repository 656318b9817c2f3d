"""The daemon end to end: moto S3 and the Ark emulator on loopback, the real command line."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING

import pytest

from dropzone.emulator import Emulator
from tests.harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Stage,
    load_scale,
    log_events,
    new_bucket,
    s3_client,
    wait_for,
)

if TYPE_CHECKING:
    from pathlib import Path

TRICKY = [
    "plain.jsonl",
    "with space.jsonl",
    "team-a/deep/er/nested.jsonl",
    "中文 数据集.jsonl",
    "plus+percent%25.jsonl",
    "dots.v1.2.jsonl",
    "emoji-😀.jsonl",
]


def test_each_file_one_job_with_derived_output(stage: Stage) -> None:
    """N uploads give N jobs, each once, with the design's output folders; a rerun adds none."""
    keys = [stage.put(rel) for rel in TRICKY]
    stage.put("notes.txt", b"not a dataset")
    stage.s3.put_object(Bucket=stage.bucket, Key=stage.prefix + "folder/", Body=b"")
    first = stage.dropzone("run", "--once")
    assert first.returncode == 0, first.stderr + first.stdout
    assert stage.create_calls() == {f"{stage.bucket}/{k}": 1 for k in keys}
    by_key = {job["InputFileTosLocation"]["ObjectKey"]: job for job in stage.jobs()}
    nested = by_key[stage.prefix + "team-a/deep/er/nested.jsonl"]
    assert nested["OutputDirTosLocation"] == {
        "BucketName": stage.bucket,
        "ObjectKey": "batch-inference-job/output/team-a/deep/er/nested/",
    }
    rows = stage.status()
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert {r["state"] for r in rows} == {"submitted"}
    assert {r["job_id"] for r in rows} == {job["Id"] for job in stage.jobs()}
    submitted = [e for e in log_events(first.stdout) if e["event"] == "job.submitted"]
    assert len(submitted) == len(keys)
    assert all(
        {"watch", "bucket", "key", "etag", "job_id", "timestamp", "level"} <= e.keys()
        for e in submitted
    )
    again = stage.dropzone("run", "--once")
    assert again.returncode == 0, again.stderr
    assert sum(stage.create_calls().values()) == len(keys)


@pytest.mark.slow
def test_first_start_baseline_then_new_objects(stage: Stage) -> None:
    """With skip-existing, objects already there are baseline; later uploads are submitted."""
    stage.watch["on_start"] = "skip-existing"
    old = [stage.put(f"old-{i}.jsonl") for i in range(3)]
    first = stage.dropzone("run", "--once")
    assert first.returncode == 0, first.stderr
    assert stage.create_calls() == {}
    baseline_lines = [e for e in log_events(first.stdout) if e["event"] == "object.baseline"]
    assert [e["count"] for e in baseline_lines] == [3]
    new = stage.put("new.jsonl")
    second = stage.dropzone("run", "--once")
    assert second.returncode == 0, second.stderr
    assert stage.create_calls() == {f"{stage.bucket}/{new}": 1}
    states = {r["key"]: r["state"] for r in stage.status()}
    assert states == {**dict.fromkeys(old, "baseline"), new: "submitted"}
    backfilled = stage.dropzone("backfill")
    assert "3 baseline entries -> pending" in backfilled.stdout
    assert stage.dropzone("run", "--once").returncode == 0
    assert sum(stage.create_calls().values()) == 4


@pytest.mark.slow
def test_pagination_beyond_1000_keys(stage: Stage) -> None:
    """A prefix of 1,050 objects is listed page by page; each is recorded and submitted once."""
    for i in range(1050):
        stage.s3.put_object(Bucket=stage.bucket, Key=f"{stage.prefix}k{i:05d}.jsonl", Body=b"{}")
    done = stage.dropzone("run", "--once", timeout=240)
    assert done.returncode == 0, done.stderr
    calls = stage.create_calls()
    assert len(calls) == 1050
    assert set(calls.values()) == {1}
    polls = [e for e in log_events(done.stdout) if e["event"] == "poll.completed"]
    assert polls[0]["objects"] == 1050
    assert polls[0]["new"] == 1050


@pytest.mark.slow
def test_reupload_while_active_is_a_duplicate(stage: Stage) -> None:
    """A new version of a file whose job is still active is recorded against that job."""
    key = stage.put("a.jsonl", b'{"custom_id":"1","body":{}}\n')
    assert stage.dropzone("run", "--once").returncode == 0
    [job_id] = stage.jobs_by_input()[key]
    stage.put("a.jsonl", b'{"custom_id":"2","body":{}}\n')
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stderr
    rows = sorted(stage.status(), key=lambda r: r["updated_at"])
    assert [(r["state"], r["job_id"]) for r in rows] == [
        ("submitted", job_id),
        ("duplicate", job_id),
    ]
    duplicates = [e for e in log_events(done.stdout) if e["event"] == "job.duplicate"]
    assert [(e["existing_job_id"], e["level"]) for e in duplicates] == [(job_id, "info")]
    assert stage.jobs_by_input() == {key: [job_id]}


@pytest.mark.slow
def test_reupload_after_completion_is_a_new_job(tmp_path: Path, moto_endpoint: str) -> None:
    """Once the first job has completed, a new version of the file gets a job of its own."""
    s3 = s3_client(moto_endpoint)
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=0.1, run_s=0.2) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        key = stage.put("a.jsonl", b'{"custom_id":"1","body":{}}\n')
        assert stage.dropzone("run", "--once").returncode == 0
        wait_for(
            lambda: all(j["Status"]["Phase"] == "Completed" for j in stage.jobs()),
            what="the first job to complete",
        )
        stage.put("a.jsonl", b'{"custom_id":"2","body":{}}\n')
        assert stage.dropzone("run", "--once").returncode == 0
        assert len(stage.jobs_by_input()[key]) == 2
        assert {r["state"] for r in stage.status()} == {"submitted"}


@pytest.mark.slow
def test_guard_in_another_wording(tmp_path: Path, moto_endpoint: str) -> None:
    """A guard answering 409 in Chinese is still recognised by the job ID it names."""
    s3 = s3_client(moto_endpoint)
    message = "相同输入文件的任务 {job_id} 正在排队或运行中"
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        queue_s=30,
        run_s=60,
        guard_status=409,
        guard_code="Conflict",
        guard_message=message,
    ) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        key = stage.put("a.jsonl", b'{"custom_id":"1","body":{}}\n')
        assert stage.dropzone("run", "--once").returncode == 0
        [job_id] = stage.jobs_by_input()[key]
        stage.put("a.jsonl", b'{"custom_id":"2","body":{}}\n')
        assert stage.dropzone("run", "--once").returncode == 0
        assert sorted(r["state"] for r in stage.status()) == ["duplicate", "submitted"]
        assert {r["job_id"] for r in stage.status()} == {job_id}


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_throttling_and_faults_still_one_job_each(stage: Stage) -> None:
    """With 20% throttling, 10% 5xx and 20% lost answers, every file still gets exactly one job."""
    stage.emulator.set_faults(throttle_rate=0.2, fail_rate=0.1, lose_answer_rate=0.2)
    # Backoff doubles per failure: a file unlucky several times in a row needs minutes.
    stage.daemon["once_max_wait_s"] = 200
    keys = [stage.put(f"f{i}.jsonl") for i in range(20)]
    done = stage.dropzone("run", "--once", timeout=280)
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    assert {k: len(v) for k, v in stage.jobs_by_input().items()} == dict.fromkeys(keys, 1)
    rows = stage.status()
    assert {r["state"] for r in rows} == {"submitted"}
    assert {r["job_id"] for r in rows} == {j["Id"] for j in stage.jobs()}
    events = {e["event"] for e in log_events(done.stdout)}
    assert "job.retry" in events


@pytest.mark.slow
def test_rejected_request_ends_rejected_and_exit_1(tmp_path: Path, moto_endpoint: str) -> None:
    """A request the API refuses for good ends `rejected` with the reason; --once exits 1."""
    s3 = s3_client(moto_endpoint)
    with Emulator(ACCESS_KEY, SECRET_KEY, known_models=["doubao-pro-32k"]) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.watch["model"] = {"name": "no-such-model", "version": "1"}
        stage.put("a.jsonl")
        done = stage.dropzone("run", "--once")
        assert done.returncode == 1
        [row] = stage.status()
        assert row["state"] == "rejected"
        assert row["error"].startswith("NotFound.ModelReference.FoundationModel HTTP 404")
        assert stage.create_calls() == {f"{stage.bucket}/{row['key']}": 1}
        rejected = [e for e in log_events(done.stdout) if e["event"] == "job.rejected"]
        assert [e["code"] for e in rejected] == ["NotFound.ModelReference.FoundationModel"]


@pytest.mark.slow
def test_sigkill_mid_burst_loses_nothing_and_doubles_nothing(stage: Stage) -> None:
    """A daemon killed with SIGKILL mid-burst, then restarted: one job per file, none missing."""
    stage.emulator.set_faults(latency_ms=40)
    stage.daemon["concurrency"] = 4
    keys = [stage.put(f"burst-{i:03d}.jsonl") for i in range(40)]
    first = stage.spawn("run")
    wait_for(lambda: sum(stage.create_calls().values()) >= 10, what="the burst to start")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10 * load_scale())
    assert sum(stage.create_calls().values()) < len(keys)
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stderr
    assert {k: len(v) for k, v in stage.jobs_by_input().items()} == dict.fromkeys(keys, 1)
    assert {r["state"] for r in stage.status()} == {"submitted"}


def test_sigterm_drains_and_exits_0(stage: Stage) -> None:
    """SIGTERM stops the daemon within the drain deadline with exit code 0."""
    stage.put("a.jsonl")
    process = stage.spawn("run")
    wait_for(lambda: sum(stage.create_calls().values()) == 1, what="the submission")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30 * load_scale())
    assert process.returncode == 0, err
    events = [e["event"] for e in log_events(out)]
    assert events[0] == "daemon.started"
    assert "daemon.stopping" in events


@pytest.mark.slow
def test_secrets_never_printed_or_stored(stage: Stage) -> None:
    """The secret key appears in no output of any command and nowhere in the ledger file."""
    stage.put("a.jsonl")
    stage.emulator.set_faults(fail_rate=0.5)  # errors and retries get printed too
    outputs = [stage.dropzone("run", "--once"), stage.dropzone("status", "--json")]
    outputs.append(stage.dropzone("check", "--list"))
    for done in outputs:
        assert SECRET_KEY not in done.stdout + done.stderr
    for path in stage.ledger_path.parent.iterdir():
        assert SECRET_KEY.encode() not in path.read_bytes()


@pytest.mark.slow
def test_max_active_jobs_caps_the_queue(tmp_path: Path, moto_endpoint: str) -> None:
    """With max_active_jobs = 2, never more than two jobs are active; all files get theirs."""
    s3 = s3_client(moto_endpoint)
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=0.3, run_s=0.6) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.watch["max_active_jobs"] = 2
        stage.daemon["track_interval_s"] = 0.2
        keys = [stage.put(f"capped-{i}.jsonl") for i in range(6)]
        process = stage.spawn("run")
        peak = 0

        def all_submitted() -> bool:
            nonlocal peak
            jobs = stage.jobs()
            active = [j for j in jobs if j["Status"]["Phase"] in {"Queued", "Running"}]
            peak = max(peak, len(active))
            return len(jobs) == len(keys)

        try:
            wait_for(all_submitted, timeout=60, what="every file to get its job")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30 * load_scale())
        assert 1 <= peak <= 2
        assert {k: len(v) for k, v in stage.jobs_by_input().items()} == dict.fromkeys(keys, 1)


@pytest.mark.slow
def test_sighup_reloads_watches_and_refuses_a_bad_config(stage: Stage) -> None:
    """SIGHUP adds a new watch without a restart; a broken config is refused, the old one runs."""
    first = stage.put("before.jsonl")
    process = stage.spawn("run")
    try:
        wait_for(lambda: first in stage.jobs_by_input(), what="the first job")
        second_bucket = new_bucket(stage.s3)
        config = stage.write_config()
        extra = (
            '\n[[watch]]\nname = "second"\nbucket = "' + second_bucket + '"\nprefix = "in/"\n'
            'model = { name = "doubao-pro-32k", version = "240615" }\n'
            'on_start = "submit-existing"\nmin_age_s = 0\n'
        )
        config.write_text(config.read_text(encoding="utf-8") + extra, encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        stage.s3.put_object(Bucket=second_bucket, Key="in/new.jsonl", Body=b"{}")
        wait_for(lambda: "in/new.jsonl" in stage.jobs_by_input(), what="the new watch's job")
        config.write_text("this is [not toml", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        later = stage.put("after.jsonl")
        wait_for(lambda: later in stage.jobs_by_input(), what="a job after the refused reload")
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30 * load_scale())
    events = [e["event"] for e in log_events(out)]
    assert "config.reloaded" in events
    assert "config.reload_refused" in events
    assert process.returncode == 0


@pytest.mark.slow
def test_preflight_refuses_a_malformed_dataset_without_a_call(stage: Stage) -> None:
    """validate = true: a bad file ends `invalid` with line numbers, a report beside it, no call."""
    stage.watch.update({"validate": True, "report": True})
    good = stage.put("good.jsonl")
    bad = stage.put(
        "bad.jsonl", b'{"custom_id":"a","body":{}}\n{"custom_id":"a","body":{}}\nnot json\n'
    )
    done = stage.dropzone("run", "--once")
    assert done.returncode == 1
    assert stage.create_calls() == {f"{stage.bucket}/{good}": 1}
    states = {r["key"]: (r["state"], r["error"]) for r in stage.status()}
    assert states[good][0] == "submitted"
    assert states[bad] == (
        "invalid",
        'invalid: 2 problems, first: line 2: custom_id "a" already used on line 1',
    )
    report = json.loads(
        stage.s3.get_object(Bucket=stage.bucket, Key=bad + ".dropzone-error.json")["Body"].read()
    )
    assert [p["line"] for p in report["problems"]] == [2, 3]
    assert report["etag"] == next(r["etag"] for r in stage.status() if r["key"] == bad)
    invalid = [e for e in log_events(done.stdout) if e["event"] == "object.invalid"]
    assert [e["key"] for e in invalid] == [bad]
    again = stage.dropzone("run", "--once")
    assert again.returncode == 0
    assert sum(stage.create_calls().values()) == 1


def test_missing_local_folder_is_a_clear_failure(stage: Stage) -> None:
    """A local watch whose folder does not exist fails with one clear line, no traceback."""
    stage.watch.update({"local_dir": str(stage.tmp / "no-such-folder"), "local_mode": "mounted"})
    done = stage.dropzone("run", "--once")
    assert done.returncode in {1, 2}
    text = done.stdout + done.stderr
    assert "no-such-folder" in text
    assert "Traceback" not in text
