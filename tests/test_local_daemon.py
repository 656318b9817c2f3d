"""Local-folder watches end to end: real folders, the real command line, loopback stand-ins.

Each test writes files into a real temporary folder while `dropzone run` runs in a child
process (or runs `dropzone run --once`); the daemon uploads to, or looks objects up in, a moto
S3 server on loopback and submits to the in-process Ark emulator. Nothing sleeps "long enough":
every wait is a condition with a deadline. The only pauses are the pacing of a slow writer.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from tests.harness import (
    Stage,
    jsonl,
    load_scale,
    log_events,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path
    from typing import IO

MiB = 1024 * 1024
# A slow writer's pace: far below the settle time, so a pause between two chunks is never
# mistaken for the end of the file (the slow-write tests use settle_s = SLOW_SETTLE_S).
CHUNK_PAUSE_S = 0.05
SLOW_SETTLE_S = 1.0


class Daemon:
    """A `dropzone run` child process; its JSON log lines are collected as they are written."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._lock = threading.Lock()
        assert process.stdout is not None
        assert process.stderr is not None
        # Both pipes are drained all along, so a chatty daemon can never block on a full one.
        self._readers = [
            threading.Thread(target=self._drain, args=(process.stdout, self._lines), daemon=True),
            threading.Thread(target=self._drain, args=(process.stderr, self._errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._lock:
                into.append(line)

    def log(self) -> list[dict[str, Any]]:
        """Every JSON log line so far, in the order written."""
        with self._lock:
            text = "".join(self._lines)
        return list(log_events(text))

    def events(self, name: str, **fields: object) -> list[dict[str, Any]]:
        return [
            e
            for e in self.log()
            if e["event"] == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def saw(self, name: str, **fields: object) -> bool:
        return bool(self.events(name, **fields))

    def wait_ready(self) -> None:
        """Until `daemon.ready`: the folder watch started (what was there is recorded) and the
        first round of the main loop ran."""
        self.wait_event("daemon.ready", what="the daemon to be ready")

    def wait_event(self, name: str, *, what: str, **fields: object) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"dropzone run exited early: {self.output()}")
            return self.saw(name, **fields)

        wait_for(seen, timeout=30, what=what)

    def output(self) -> str:
        with self._lock:
            return "".join(self._errors) + "".join(self._lines)[-4000:]

    def stop(self) -> int:
        """SIGTERM, then wait for the exit and the last log lines; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30 * load_scale())
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10 * load_scale())
            raise
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code


@contextmanager
def running(stage: Stage) -> Iterator[Daemon]:
    """`dropzone run` for the length of the block, ready (first scan done) when it is entered."""
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        yield daemon
    except BaseException:
        daemon.stop()
        raise
    code = daemon.stop()
    assert code == 0, daemon.output()
    assert daemon.saw("daemon.stopping")


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def once_each(stage: Stage, *keys: str) -> dict[str, int]:
    """The emulator's Create-call count per input when each of ``keys`` was submitted once."""
    return {f"{stage.bucket}/{key}": 1 for key in keys}


def has_job(stage: Stage, key: str) -> Callable[[], bool]:
    return lambda: key in stage.jobs_by_input()


def rows_by_key(stage: Stage) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in stage.status():
        rows.setdefault(row["key"], []).append(row)
    return rows


def run_once(stage: Stage) -> subprocess.CompletedProcess[str]:
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    return done


def object_body(stage: Stage, key: str) -> bytes:
    return stage.s3.get_object(Bucket=stage.bucket, Key=key)["Body"].read()


def bucket_keys(stage: Stage) -> list[str]:
    listing = stage.s3.list_objects_v2(Bucket=stage.bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def write_slowly(path: Path, body: bytes, *, chunks: int, during: Callable[[], None]) -> None:
    """Write ``body`` in ``chunks`` pieces into one open file, flushing and pausing between them.

    ``during`` runs after each flushed chunk, while the file is incomplete and still open.
    """
    step = -(-len(body) // chunks)
    with path.open("wb") as stream:
        for start in range(0, len(body), step):
            stream.write(body[start : start + step])
            stream.flush()
            os.fsync(stream.fileno())
            during()
            time.sleep(CHUNK_PAUSE_S)  # the writer's pace, not a wait for the daemon


def big_jsonl(size: int, tag: str = "big") -> bytes:
    """A valid JSONL body of at least ``size`` bytes (about 1 KiB a line)."""
    lines: list[bytes] = []
    total = i = 0
    while total < size:
        line = (
            json.dumps(
                {
                    "custom_id": f"{tag}-{i}",
                    "body": {"messages": [{"role": "user", "content": "x" * 960}]},
                }
            ).encode()
            + b"\n"
        )
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


# --- every mode: once, and only when complete ------------------------------------------------


@pytest.mark.parametrize("mode", ["upload", "synced", "mounted"])
@pytest.mark.slow
def test_slow_write_is_submitted_once_when_complete(stage: Stage, mode: str) -> None:
    """A file written in many flushed chunks over more than a second, while `dropzone run` runs,
    gets no Create call while it is open and exactly one after, for its full content.

    upload: dropzone uploads the complete file (the object holds every byte). synced: the test
    plays the sync tool and copies a half-written snapshot mid-write (not taken: it is not the
    finished file), then the finished file. mounted: the file is the object; nothing is uploaded.
    """
    folder = stage.watch_folder(mode, settle_s=SLOW_SETTLE_S)
    body = big_jsonl(96 * 1024, tag=mode)
    relpath = "slow/growing.jsonl"
    key = stage.prefix + relpath
    (folder / "slow").mkdir()
    with running(stage) as daemon:
        written = 0

        def still_nothing() -> None:
            nonlocal written
            written += 1
            assert stage.create_calls() == {}, "submitted while the file was still open"
            if mode == "synced" and written == 12:
                stage.put(relpath, (folder / relpath).read_bytes())

        started = time.monotonic()
        write_slowly(folder / relpath, body, chunks=24, during=still_nothing)
        assert time.monotonic() - started >= 1.0
        if mode == "synced":
            stage.put(relpath, body)
        wait_for(has_job(stage, key), what=f"the job for the {mode} file")
    assert stage.create_calls() == once_each(stage, key)
    [row] = rows_by_key(stage)[key]
    assert (row["state"], row["size"]) == ("submitted", len(body))
    assert row["etag"] == md5(body)
    if mode == "mounted":
        assert bucket_keys(stage) == []
    else:
        assert object_body(stage, key) == body
    assert daemon.events("object.detected", key=key)[0]["size"] == len(body)


# --- upload mode -----------------------------------------------------------------------------


@pytest.mark.slow
def test_atomic_rename_gives_one_job_and_none_for_the_part_file(stage: Stage) -> None:
    """`x.jsonl.part` written and closed is ignored (not uploaded, not recorded); renamed to
    `x.jsonl` it gives exactly one job, for `x.jsonl`."""
    folder = stage.watch_folder("upload")
    body = jsonl(3, tag="renamed")
    key = stage.prefix + "x.jsonl"
    marker = stage.prefix + "marker.jsonl"
    with running(stage):
        (folder / "x.jsonl.part").write_bytes(body)
        # A later file's job shows the watcher went past the closed .part file.
        (folder / "marker.jsonl").write_bytes(jsonl(1, tag="marker"))
        wait_for(has_job(stage, marker), what="the marker's job")
        assert stage.create_calls() == once_each(stage, marker)
        (folder / "x.jsonl.part").rename(folder / "x.jsonl")
        wait_for(has_job(stage, key), what="the renamed file's job")
    assert stage.create_calls() == once_each(stage, marker, key)
    assert bucket_keys(stage) == sorted([marker, key])
    assert sorted(rows_by_key(stage)) == sorted([marker, key])
    assert object_body(stage, key) == body


@pytest.mark.slow
def test_nested_folders_give_posix_keys_and_derived_output(stage: Stage) -> None:
    """A file n folders deep has key prefix + POSIX relpath and the design's output folder
    (the prefix's parent + output/ + relpath without .jsonl); hidden folders, files outside the
    pattern and temporary names are neither uploaded nor submitted."""
    folder = stage.watch_folder("upload")
    relpaths = ["team-a/deep/er/nested.jsonl", "team-b/中文 数据集.jsonl", "top.jsonl"]
    with running(stage):
        for relpath in relpaths:
            path = folder.joinpath(*relpath.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jsonl(2, tag=relpath))
        (folder / ".cache").mkdir()
        (folder / ".cache" / "hidden.jsonl").write_bytes(jsonl())
        (folder / "team-a" / "notes.txt").write_bytes(b"not a dataset")
        (folder / "team-a" / "draft.jsonl.tmp").write_bytes(jsonl())
        keys = [stage.prefix + relpath for relpath in relpaths]
        wait_for(lambda: all(has_job(stage, k)() for k in keys), what="a job for each file")
    assert stage.create_calls() == once_each(stage, *keys)
    jobs = {job["InputFileTosLocation"]["ObjectKey"]: job for job in stage.jobs()}
    assert jobs[stage.prefix + "team-a/deep/er/nested.jsonl"]["OutputDirTosLocation"] == {
        "BucketName": stage.bucket,
        "ObjectKey": "batch-inference-job/output/team-a/deep/er/nested/",
    }
    outputs = {key: rows[0]["output_dir"] for key, rows in rows_by_key(stage).items()}
    assert outputs == {
        stage.prefix
        + "team-a/deep/er/nested.jsonl": "batch-inference-job/output/team-a/deep/er/nested/",
        stage.prefix + "team-b/中文 数据集.jsonl": "batch-inference-job/output/team-b/中文 数据集/",
        stage.prefix + "top.jsonl": "batch-inference-job/output/top/",
    }
    assert bucket_keys(stage) == sorted(keys)


@pytest.mark.slow
def test_catch_up_after_restart_with_submit_existing(stage: Stage) -> None:
    """submit-existing: files there at the first start are submitted; files dropped while the
    daemon is down are submitted at the next start (`run --once`); none of them twice."""
    folder = stage.watch_folder("upload", settle_s=0.5, on_start="submit-existing")
    (folder / "team").mkdir()
    first = [stage.prefix + rel for rel in ("a.jsonl", "team/b.jsonl")]
    (folder / "a.jsonl").write_bytes(jsonl(2, tag="a"))
    (folder / "team" / "b.jsonl").write_bytes(jsonl(2, tag="b"))
    with running(stage):
        wait_for(lambda: all(has_job(stage, k)() for k in first), what="the first files' jobs")
    assert stage.create_calls() == once_each(stage, *first)
    # Dropped while the daemon is down, one of them in a new folder.
    (folder / "c.jsonl").write_bytes(jsonl(2, tag="c"))
    (folder / "later").mkdir()
    (folder / "later" / "d.jsonl").write_bytes(jsonl(2, tag="d"))
    later = [stage.prefix + rel for rel in ("c.jsonl", "later/d.jsonl")]
    run_once(stage)
    assert stage.create_calls() == once_each(stage, *first, *later)
    assert {row["state"] for row in stage.status()} == {"submitted"}


@pytest.mark.slow
def test_skip_existing_records_baseline_then_submits_later_files(stage: Stage) -> None:
    """skip-existing: files there at the first start become `baseline` (one summary log line,
    even though they count only after settling), a file dropped while running and one dropped
    while the daemon is down are submitted, each once."""
    folder = stage.watch_folder("upload", settle_s=0.5, on_start="skip-existing")
    (folder / "old").mkdir()
    old = [stage.prefix + rel for rel in ("old-1.jsonl", "old/old-2.jsonl")]
    (folder / "old-1.jsonl").write_bytes(jsonl(2, tag="old-1"))
    (folder / "old" / "old-2.jsonl").write_bytes(jsonl(2, tag="old-2"))
    live = stage.prefix + "live.jsonl"
    with running(stage) as daemon:
        assert [e["count"] for e in daemon.events("object.baseline")] == [2]
        (folder / "live.jsonl").write_bytes(jsonl(2, tag="live"))
        wait_for(has_job(stage, live), what="the job of the file dropped while running")
    assert stage.create_calls() == once_each(stage, live)
    (folder / "down.jsonl").write_bytes(jsonl(2, tag="down"))
    down = stage.prefix + "down.jsonl"
    run_once(stage)
    assert stage.create_calls() == once_each(stage, live, down)
    states = {key: rows[0]["state"] for key, rows in rows_by_key(stage).items()}
    assert states == {**dict.fromkeys(old, "baseline"), live: "submitted", down: "submitted"}


@pytest.mark.slow
def test_upload_is_verified_and_never_repeated(stage: Stage) -> None:
    """The uploaded objects' content has the files' MD5 (a single-part upload and a multipart
    one); a second run uploads nothing (one object version, LastModified unchanged) and makes
    no second Create call."""
    stage.s3.put_bucket_versioning(
        Bucket=stage.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    folder = stage.watch_folder("upload")
    bodies = {"small.jsonl": jsonl(5, tag="small"), "big.jsonl": big_jsonl(9 * MiB)}
    for relpath, body in bodies.items():
        (folder / relpath).write_bytes(body)
    keys = {stage.prefix + relpath: body for relpath, body in bodies.items()}
    run_once(stage)
    assert stage.create_calls() == once_each(stage, *keys)
    rows = {key: rows[0] for key, rows in rows_by_key(stage).items()}
    first_seen: dict[str, Any] = {}
    for key, body in keys.items():
        head = stage.s3.head_object(Bucket=stage.bucket, Key=key)
        assert md5(object_body(stage, key)) == md5(body)
        assert head["ContentLength"] == len(body) == rows[key]["size"]
        assert head["ETag"].strip('"') == rows[key]["etag"]
        first_seen[key] = head["LastModified"]
    small, big = stage.prefix + "small.jsonl", stage.prefix + "big.jsonl"
    assert rows[small]["etag"] == md5(keys[small])
    assert rows[big]["etag"].endswith("-2")  # went multipart: verified by size and content

    run_once(stage)
    assert stage.create_calls() == once_each(stage, *keys)
    versions = stage.s3.list_object_versions(Bucket=stage.bucket)["Versions"]
    assert sorted(v["Key"] for v in versions) == sorted(keys)
    for key in keys:
        assert stage.s3.head_object(Bucket=stage.bucket, Key=key)["LastModified"] == first_seen[key]


# --- synced and mounted modes ----------------------------------------------------------------


@pytest.mark.slow
def test_synced_file_waits_for_its_object(stage: Stage) -> None:
    """synced: a file that is complete locally but whose object is not in the bucket (only an
    older version is) is `waiting` in status and gets no Create call, past sync_timeout_s (one
    warning); once the sync tool puts the object, it is submitted once. dropzone never uploads
    (the bucket holds only the two versions the test put), and a restart adds no job."""
    stage.s3.put_bucket_versioning(
        Bucket=stage.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    folder = stage.watch_folder("synced", sync_timeout_s=0.5)
    key = stage.put("a.jsonl", jsonl(1, tag="older"))
    body = jsonl(4, tag="newer")
    with running(stage) as daemon:
        (folder / "a.jsonl").write_bytes(body)
        daemon.wait_event("object.detected", key=key, state="waiting", what="a waiting entry")
        daemon.wait_event("object.sync_late", key=key, what="the sync-late warning")
        assert stage.create_calls() == {}
        [row] = stage.status()
        assert (row["key"], row["state"], row["job_id"]) == (key, "waiting", None)
        stage.put("a.jsonl", body)  # what the sync tool does
        wait_for(has_job(stage, key), what="the job once the object arrived")
    assert stage.create_calls() == once_each(stage, key)
    [row] = stage.status()
    assert (row["state"], row["etag"], row["size"]) == ("submitted", md5(body), len(body))
    assert len(daemon.events("object.sync_late", key=key)) == 1
    assert object_body(stage, key) == body
    # After a restart, the file and its object are found again, and known.
    run_once(stage)
    assert stage.create_calls() == once_each(stage, key)
    assert len(stage.s3.list_object_versions(Bucket=stage.bucket)["Versions"]) == 2


@pytest.mark.slow
def test_synced_file_replaced_before_its_sync_is_submitted_once(stage: Stage) -> None:
    """synced: a file rewritten before its first version reached the bucket gives one job, for
    the version that arrived; the version that never will ends `rejected` as superseded, and
    the daemon keeps running."""
    folder = stage.watch_folder("synced")
    key = stage.prefix + "b.jsonl"
    first, second = jsonl(2, tag="first"), jsonl(3, tag="second")
    with running(stage) as daemon:
        for body in (first, second):
            (folder / "b.jsonl").write_bytes(body)
            daemon.wait_event(
                "object.detected", etag=md5(body), state="waiting", what="a waiting version"
            )
        stage.put("b.jsonl", second)
        wait_for(has_job(stage, key), what="the job of the version that arrived")
        daemon.wait_event("job.rejected", etag=md5(first), what="the first version set aside")
    assert stage.create_calls() == once_each(stage, key)
    by_etag = {row["etag"]: row for row in stage.status()}
    assert by_etag[md5(second)]["state"] == "submitted"
    assert by_etag[md5(first)]["state"] == "rejected"
    assert "superseded" in by_etag[md5(first)]["error"]


@pytest.mark.slow
def test_mounted_folder_one_job_per_file_without_s3(stage: Stage) -> None:
    """mounted: the file is the object. Files there at start and files dropped while running
    (seen by polling) each get one job with the file's MD5 as ETag; nothing is uploaded, and
    a restart adds no job."""
    folder = stage.watch_folder("mounted")
    (folder / "team").mkdir()
    bodies = {
        "a.jsonl": jsonl(2, tag="a"),
        "team/b.jsonl": jsonl(3, tag="b"),
    }
    for relpath, body in bodies.items():
        folder.joinpath(*relpath.split("/")).write_bytes(body)
    with running(stage):
        for relpath, body in {
            "c.jsonl": jsonl(4, tag="c"),
            "new/d.jsonl": jsonl(5, tag="d"),
        }.items():
            path = folder.joinpath(*relpath.split("/"))
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(body)
            bodies[relpath] = body
        keys = [stage.prefix + relpath for relpath in bodies]
        wait_for(lambda: all(has_job(stage, k)() for k in keys), what="a job for each file")
    assert stage.create_calls() == once_each(stage, *keys)
    etags: Mapping[str, str] = {row["key"]: row["etag"] for row in stage.status()}
    assert etags == {stage.prefix + rel: md5(body) for rel, body in bodies.items()}
    assert bucket_keys(stage) == []
    # After a restart, the files are found again, and known.
    run_once(stage)
    assert stage.create_calls() == once_each(stage, *keys)
