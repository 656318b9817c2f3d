"""The emulator reads a job's input as the platform does: RequestCounts follow the file's
request lines, a missing input fails the job, and without a reader there are no counts."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

import httpx
import pytest

from dropzone.emulator import Emulator
from dropzone.emulator.cli import emulator_from
from dropzone.emulator.inputs import InputReader, count_requests, folder_reader, s3_reader
from dropzone.emulator.options import configure_parser
from dropzone.testing import FakeClock
from tests.emulator_fixtures import ACCESS_KEY, SECRET_KEY, Caller
from tests.harness import new_bucket, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BUCKET = "bucket"  # the bucket create_body names


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _serve(read_input: InputReader | None, clock: FakeClock) -> Emulator:
    return Emulator(
        ACCESS_KEY, SECRET_KEY, queue_s=2, run_s=10, seed=3, clock=clock, read_input=read_input
    )


def _lines(count: int) -> bytes:
    return b"".join(b'{"custom_id": "r%d"}\n' % number for number in range(count))


@pytest.mark.parametrize("count", [1, 5])
def test_request_counts_follow_the_input_file(
    tmp_path: Path, clock: FakeClock, http: httpx.Client, count: int
) -> None:
    """A 1- or 5-line file reports that many requests, queued, running and done."""
    (tmp_path / BUCKET / "in").mkdir(parents=True)
    (tmp_path / BUCKET / "in" / "a.jsonl").write_bytes(_lines(count))
    with _serve(folder_reader(tmp_path), clock) as ark:
        caller = Caller(http, ark.url, clock)
        job_id = caller.create()
        assert caller.get(job_id)["RequestCounts"] == {"Total": count, "Completed": 0, "Failed": 0}
        clock.advance(12)
        done = caller.get(job_id)
    assert done["Status"]["Phase"] == "Completed"
    assert done["RequestCounts"] == {"Total": count, "Completed": count, "Failed": 0}


def test_a_missing_input_fails_the_job_when_it_leaves_the_queue(
    tmp_path: Path, clock: FakeClock, http: httpx.Client
) -> None:
    with _serve(folder_reader(tmp_path), clock) as ark:
        caller = Caller(http, ark.url, clock)
        job_id = caller.create("in/absent.jsonl")
        queued = caller.get(job_id)
        clock.advance(2)
        failed = caller.get(job_id)
    assert queued["Status"]["Phase"] == "Queued"
    assert "RequestCounts" not in queued
    assert failed["Status"]["Phase"] == "Failed"
    assert failed["Status"]["Message"] == "The input file bucket/in/absent.jsonl is missing."


def test_without_a_reader_jobs_have_no_request_counts(clock: FakeClock, http: httpx.Client) -> None:
    """The emulator cannot know the count, so it says nothing rather than a made-up 10."""
    with _serve(None, clock) as ark:
        caller = Caller(http, ark.url, clock)
        job_id = caller.create()
        clock.advance(12)
        done = caller.get(job_id)
    assert done["Status"]["Phase"] == "Completed"
    assert "RequestCounts" not in done


def test_request_lines_are_the_lines_that_are_not_blank() -> None:
    assert count_requests(b"") == 0
    assert count_requests(b'{"a": 1}') == 1
    assert count_requests(b'{"a": 1}\r\n\n  \n{"b": 2}\n') == 2


def test_the_folder_reader_keeps_to_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / BUCKET).mkdir(parents=True)
    (root / BUCKET / "a.jsonl").write_bytes(b"x\n")
    (tmp_path / "secret.jsonl").write_bytes(b"not yours\n")
    read = folder_reader(root)
    assert read(BUCKET, "a.jsonl") == b"x\n"
    assert read(BUCKET, "b.jsonl") is None
    climbing = f"{os.pardir}/{os.pardir}/secret.jsonl"  # up out of the store
    assert read(BUCKET, climbing) is None
    assert read(BUCKET, "") is None  # the bucket itself is a folder, not an object


def test_the_s3_reader_reads_objects_from_an_endpoint(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    s3 = s3_client(moto_endpoint)
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="dataset/a.jsonl", Body=_lines(3))
    read = s3_reader(moto_endpoint)
    assert read(bucket, "dataset/a.jsonl") == _lines(3)
    assert read(bucket, "dataset/none.jsonl") is None
    assert read("no-such-bucket-here", "a.jsonl") is None


def test_the_command_reads_inputs_from_a_folder_or_an_endpoint(
    tmp_path: Path, http: httpx.Client
) -> None:
    """--inputs-dir and --inputs-s3 choose the reader; they cannot both be given."""
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    (tmp_path / BUCKET / "in").mkdir(parents=True)
    (tmp_path / BUCKET / "in" / "a.jsonl").write_bytes(_lines(4))
    keys = ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
    args = parser.parse_args(["--port", "0", "--inputs-dir", str(tmp_path), *keys])
    with emulator_from(args) as ark:
        caller = Caller(http, ark.url)
        assert caller.get(caller.create())["RequestCounts"]["Total"] == 4
    assert parser.parse_args(["--inputs-s3", "http://127.0.0.1:9"]).inputs_s3 == (
        "http://127.0.0.1:9"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--inputs-dir", str(tmp_path), "--inputs-s3", "http://127.0.0.1:9"])
