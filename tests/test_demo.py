"""`dropzone demo` tells its whole story, end to end, within a minute."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
def test_demo_reaches_completed_with_one_job(tmp_path: Path) -> None:
    """Detected, submitted, dropped again -> the existing job, phases up to Completed."""
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
