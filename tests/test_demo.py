"""`dropzone demo` tells its whole story, end to end, within a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from dropzone.commands.demo import BUCKET, PREFIX, inbox_reader

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
def test_demo_reaches_completed_with_one_job(tmp_path: Path) -> None:
    """Detected, submitted, dropped again -> the existing job, phases up to Completed, the
    results back beside the file."""
    done = subprocess.run(
        [sys.executable, "-m", "dropzone", "demo", "--quick", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "local Ark emulator (a stand-in, no cloud)" in lines[0]
    story = [line.split("] ", 1)[1].split()[0] for line in lines if line.startswith("[")]
    assert story.index("submitted") < story.index("duplicate")
    phases = [line.rsplit(": ", 1)[1] for line in lines if "] phase" in line]
    assert phases == ["Queued", "Running", "Completed"]
    assert any("holds 1 job for 2 drops" in line for line in lines)
    [submitted] = [line for line in lines if "] submitted" in line]
    job_id = submitted.split("-> job ")[1].split(",")[0]
    [duplicate] = [line for line in lines if "] duplicate" in line]
    assert duplicate.endswith(f"existing job {job_id}")
    assert (tmp_path / "dropzone.log").read_text(encoding="utf-8").count('"job.duplicate"') == 1
    # The results come back beside the dropped file, one answer per request.
    assert story[-2:] == ["results", "the"], story  # then: the emulator holds 1 job
    back = tmp_path / "inbox" / "results" / "chat-sample" / "output" / "results.jsonl"
    answers = [json.loads(line) for line in back.read_text(encoding="utf-8").splitlines()]
    assert [a["custom_id"] for a in answers] == [f"request-{n}" for n in range(1, 6)]
    assert (tmp_path / "tos" / BUCKET / "output" / "chat-sample" / job_id).is_dir()


def test_the_demo_emulator_reads_inputs_from_the_inbox(tmp_path: Path) -> None:
    """The inbox is the watch's bucket prefix, so job counts are the dropped file's own lines."""
    (tmp_path / "nested").mkdir()
    (tmp_path / "a.jsonl").write_bytes(b"1\n2\n")
    (tmp_path / "nested" / "b.jsonl").write_bytes(b"1\n")
    read = inbox_reader(tmp_path)
    assert read(BUCKET, f"{PREFIX}a.jsonl") == b"1\n2\n"
    assert read(BUCKET, f"{PREFIX}nested/b.jsonl") == b"1\n"
    assert read(BUCKET, "elsewhere/a.jsonl") is None
    assert read("another-bucket", f"{PREFIX}a.jsonl") is None
    assert read(BUCKET, f"{PREFIX}../a.jsonl") is None
