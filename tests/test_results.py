"""Results back to the user: the emulator writing a completed job's result file where Ark
does, and ``dropzone results KEY`` fetching it (moto on loopback, the real command line)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from dropzone.emulator import Emulator
from dropzone.emulator.inputs import s3_reader
from dropzone.emulator.jobs import Guard, JobBook, Timing
from dropzone.emulator.results import results_body, s3_writer
from dropzone.jobs.results import FolderResults, fetch_results
from tests.harness import ACCESS_KEY, SECRET_KEY, Stage, jsonl, new_bucket, s3_client, wait_for
from tests.test_local_daemon import Daemon

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_one_answer_per_request_line_in_its_order() -> None:
    body = results_body("bi-1", "doubao", b'{"custom_id": "a"}\n\n{"custom_id": "b"}\nnot json\n')
    answers = [json.loads(line) for line in body.decode().splitlines()]
    assert [a["custom_id"] for a in answers] == ["a", "b", None]
    assert [a["id"] for a in answers] == ["bi-1-1", "bi-1-3", "bi-1-4"]
    assert all(a["response"]["status_code"] == 200 for a in answers)
    assert results_body("bi-1", "m", b"\n") == b""


def test_a_job_s_results_are_due_once_when_it_completes() -> None:
    book = JobBook(Timing(1, 1, 1), Guard(), lambda: "abcde")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    body = {
        "ProjectName": "default",
        "Name": "n",
        "ModelReference": {"CustomModelId": "m"},
        "InputFileTosLocation": {"BucketName": "b", "ObjectKey": "in/a.jsonl"},
        "OutputDirTosLocation": {"BucketName": "b", "ObjectKey": "out/"},
    }
    book.create("owner", body, start)
    assert book.results_due(start + timedelta(seconds=1.5)) == []  # running
    (due,) = book.results_due(start + timedelta(seconds=2.5))
    assert book.results_due(start + timedelta(seconds=60)) == []
    assert due.spec.output.key == "out/"


@pytest.fixture
def writing_stage(tmp_path: Path, moto_endpoint: str) -> Iterator[Stage]:
    """A stage whose emulator reads the inputs from moto and writes the results back, its
    jobs done in under a second."""
    s3 = s3_client(moto_endpoint)
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        queue_s=0.2,
        run_s=0.3,
        read_input=s3_reader(moto_endpoint),
        write_output=s3_writer(moto_endpoint),
    ) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.daemon["track_interval_s"] = 0.2
        yield stage


def completed(stage: Stage) -> bool:
    return [job["Status"]["Phase"] for job in stage.jobs()] == ["Completed"]


def test_results_are_fetched_on_demand_into_a_folder(writing_stage: Stage) -> None:
    stage = writing_stage
    key = stage.put("team/a.jsonl", jsonl(3, tag="a"))
    first = stage.dropzone("run", "--once")
    assert first.returncode == 0, first.stderr
    wait_for(lambda: completed(stage), timeout=30, what="the job to complete")
    tracked = stage.dropzone("run", "--once")  # its tracking round records Completed
    assert tracked.returncode == 0, tracked.stderr
    (row,) = stage.status()
    assert row["phase"] == "Completed"

    into = stage.tmp / "fetched"
    done = stage.dropzone("results", key, "--to", str(into))
    assert done.returncode == 0, done.stderr
    job_id = row["job_id"]
    results = into / "output" / "results.jsonl"
    assert done.stdout.splitlines() == [f"{results}\t{results.stat().st_size}\tfetched"]
    answers = [json.loads(line) for line in results.read_text().splitlines()]
    assert [a["custom_id"] for a in answers] == ["a-0", "a-1", "a-2"]
    assert answers[0]["id"] == f"{job_id}-1"
    assert not [p for p in into.rglob("*") if p.name.endswith(".part")]
    again = stage.dropzone("results", key, "--to", str(into))
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith("\talready there\n")

    # The default folder: results/<stem>/ where the command runs.
    here = stage.tmp / "cwd"
    here.mkdir()
    default = stage.dropzone("results", key, cwd=here)
    assert default.returncode == 0, default.stderr
    assert (here / "results" / "a" / "output" / "results.jsonl").read_bytes() == (
        results.read_bytes()
    )


def test_a_key_without_a_job_is_one_clear_line(writing_stage: Stage) -> None:
    stage = writing_stage
    stage.put("a.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    missing = stage.dropzone("results", "no/such.jsonl")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "dropzone results: no/such.jsonl: no job on record for it in any watch; give the"
        " object key as `dropzone status` shows it"
    )
    wrong_watch = stage.dropzone("results", "x.jsonl", "--watch", "nope")
    assert wrong_watch.returncode == 2
    assert "--watch 'nope': no such watch" in wrong_watch.stderr


@pytest.mark.slow
def test_a_folder_watch_puts_the_results_beside_the_input_once(writing_stage: Stage) -> None:
    """A file dropped in the folder: once its job completes, results/<relpath_stem>/ holds
    its result file, whole; the watch does not take the results for an input; the fetch is
    recorded."""
    stage = writing_stage
    inbox = stage.watch_folder("upload")
    (inbox / "team").mkdir()
    (inbox / "team" / "a.jsonl").write_bytes(jsonl(2, tag="t"))
    results = inbox / "results" / "team" / "a" / "output" / "results.jsonl"
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        wait_for(results.is_file, timeout=60, what="the results beside the input")
        daemon.wait_event("results.fetched", what="the fetch logged")
        # A file dropped after the results: once it has its job, the watcher has seen the
        # results too, and would have recorded them had it taken them for an input.
        (inbox / "b.jsonl").write_bytes(jsonl(1))
        wait_for(lambda: len(stage.jobs()) == 2, timeout=60, what="the second file's job")
    finally:
        assert daemon.stop() == 0, daemon.output()
    answers = [json.loads(line) for line in results.read_text().splitlines()]
    assert [a["custom_id"] for a in answers] == ["t-0", "t-1"]
    assert not [p for p in inbox.rglob("*") if p.name.endswith(".part")]
    inputs = [f"{stage.prefix}team/a.jsonl", f"{stage.prefix}b.jsonl"]
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1 for key in inputs}
    assert sorted(row["key"] for row in stage.status()) == sorted(inputs)
    fetched = daemon.events("results.fetched", key=f"{stage.prefix}team/a.jsonl")
    assert [event["files"] for event in fetched] == [["output/results.jsonl"]]
    assert "Traceback" not in daemon.output()

    # Recorded: the Completed notice that fetched them is settled, so no restart fetches
    # them again.
    with sqlite3.connect(stage.ledger_path) as conn:
        rows = conn.execute(
            "SELECT n.event, n.outcome FROM notices n JOIN entries e ON e.id = n.entry_id"
            " WHERE e.key = ?",
            (inputs[0],),
        ).fetchall()
    assert rows == [("Completed", "delivered")]


@pytest.mark.parametrize(
    ("results_dir", "says"),
    [
        ("/srv/out/{stem}/", "must be a folder below local_dir"),
        ("../out/{stem}/", "must be a folder below local_dir"),
        ("{stem}/", "must start with a fixed folder"),
        ("results/{nope}/", "unknown field {nope}"),
    ],
)
def test_a_results_dir_that_cannot_work_is_a_clear_config_error(
    stage: Stage, results_dir: str, says: str
) -> None:
    stage.watch_folder("upload", results_dir=results_dir)
    done = stage.dropzone("check", "--offline")
    assert done.returncode == 2, done.stderr
    assert 'watch[0] (name "chat").results_dir' in done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_a_folder_standing_in_for_the_bucket_is_read_inside_it_only(tmp_path: Path) -> None:
    """The demo's results store: a job folder under ``root/bucket``, and nothing climbing
    out of it (an output folder with ``..`` in it fetches nothing)."""
    root = tmp_path / "tos"
    job = root / "b" / "out" / "bi-1" / "output"
    job.mkdir(parents=True)
    (job / "results.jsonl").write_bytes(b'{"a": 1}\n')
    (job / ".results.jsonl.part").write_bytes(b"half")  # being written: not listed
    (tmp_path / "secret.txt").write_text("not the bucket's", encoding="utf-8")
    store = FolderResults(root)
    fetched = fetch_results(store, "b", "out/bi-1/", tmp_path / "into")
    assert [(f.path.relative_to(tmp_path / "into").as_posix(), f.size) for f in fetched] == [
        ("output/results.jsonl", 9)
    ]
    above_the_bucket = "../" * 2  # spelled out, it reads as a path leaving this checkout
    assert fetch_results(store, "b", above_the_bucket, tmp_path / "escape") == []
    assert not (tmp_path / "escape").exists()
