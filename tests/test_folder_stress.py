"""Local folders under stress: an inotify overflow, a file the store refuses, one it cannot read.

Seen: past the kernel's inotify queue the lost files waited for the next periodic rescan (30 s
by default); a file whose upload the store refused (a newline in its name) and an unreadable
one each gave a traceback at every rescan and no ledger entry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from dropzone.config import WatchRule
from dropzone.ledger import SqliteLedger, State
from dropzone.sources.local.files import stat_file
from dropzone.sources.local.overflow import OVERFLOW_MESSAGE, WATCHDOG_LOGGER
from dropzone.sources.local.watch import FolderWatcher
from dropzone.sources.tos import TosBucket
from dropzone.watches.folder import FolderWatch
from tests.harness import jsonl, log_events, new_bucket, s3_client, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from dropzone.sources.local.files import LocalFile
    from tests.harness import Stage


def test_an_inotify_overflow_rescans_at_once_and_is_told_once(tmp_path: Path) -> None:
    """watchdog only logs the kernel's overflow: the watcher hears it there, rescans now
    (not at its hourly rescan) and says so in one line however many overflows follow."""
    reported: list[str] = []
    watcher = FolderWatcher(
        tmp_path,
        ignore=(),
        settle_s=0,
        polling=True,
        events=False,  # nothing but rescans: only the overflow can make it look again
        poll_interval_s=3600,
        on_ready=lambda file: reported.append(file.relpath),
    )
    with capture_logs() as logs:
        watcher.start()
        try:
            watcher.rescan_now().wait(10)
            (tmp_path / "lost.jsonl").write_bytes(jsonl())
            for _ in range(3):
                logging.getLogger(WATCHDOG_LOGGER).warning(
                    "%s; filesystem events were lost", OVERFLOW_MESSAGE
                )
            wait_for(lambda: "lost.jsonl" in reported, timeout=10, what="the rescan")
        finally:
            watcher.stop()
    told = [entry for entry in logs if entry["event"] == "local.events_overflowed"]
    assert len(told) == 1
    assert told[0]["log_level"] == "warning"


def test_an_upload_the_store_refuses_is_one_line_and_a_rejected_entry(stage: Stage) -> None:
    """A newline in a file's name: the store refuses the key. The entry is `rejected` with
    the store's answer, told once; later runs neither retry it nor say it again."""
    folder = stage.watch_folder("upload")
    (folder / "bad\nname.jsonl").write_bytes(jsonl())
    (folder / "good.jsonl").write_bytes(jsonl())
    first = stage.dropzone("run", "--once")
    assert "Traceback" not in first.stdout + first.stderr
    entries = {entry["key"]: entry for entry in stage.status()}
    bad = entries[stage.prefix + "bad\nname.jsonl"]
    assert bad["state"] == "rejected"
    assert "the store refused the upload" in bad["error"]
    assert entries[stage.prefix + "good.jsonl"]["state"] == "submitted"
    told = [e for e in log_events(first.stdout) if e["event"] == "job.rejected"]
    assert [event["key"] for event in told] == [stage.prefix + "bad\nname.jsonl"]
    again = stage.dropzone("run", "--once")
    assert not [e for e in log_events(again.stdout) if e["event"] == "job.rejected"]
    assert len(stage.status()) == 2
    assert len(stage.jobs()) == 1


@pytest.mark.parametrize("mode", ["mounted", "upload"])
def test_a_file_that_cannot_be_read_is_a_rejected_entry_and_a_gone_one_is_not(
    tmp_path: Path, moto_endpoint: str, mode: str
) -> None:
    """A path that stats as a file and then fails to read (here it became a folder, a real
    EISDIR: as root no permission bit stops a read) ends `rejected` saying why; a file deleted
    between the sighting and the read is no entry at all."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "odd.jsonl").write_bytes(jsonl())
    (folder / "gone.jsonl").write_bytes(jsonl())
    root = folder.resolve()
    seen: dict[str, LocalFile] = {}
    for name in ("odd.jsonl", "gone.jsonl"):
        found = stat_file(folder / name, name, root)
        assert found is not None
        seen[name] = found
    (folder / "odd.jsonl").unlink()
    (folder / "odd.jsonl").mkdir()
    (folder / "gone.jsonl").unlink()
    s3 = s3_client(moto_endpoint)
    bucket = new_bucket(s3)
    rule = WatchRule.model_validate(
        {
            "name": "chat",
            "bucket": bucket,
            "prefix": "in/",
            "model": {"name": "doubao-pro-32k", "version": "240615"},
            "local_dir": str(folder),
            "local_mode": mode,
            "on_start": "submit-existing",
        }
    )
    with SqliteLedger.open(tmp_path / "ledger.sqlite3", lock=False) as ledger:
        ledger.begin_watch("chat", bucket, "in/", datetime.now(UTC))
        ledger.mark_baseline_done("chat")
        watch = FolderWatch(
            rule=rule,
            ledger=ledger,
            bucket=TosBucket(s3, bucket),
            clock=lambda: datetime.now(UTC),
            poll_interval_s=60,
            on_new=lambda: None,
        )
        with capture_logs() as logs:
            watch.files_ready(list(seen.values()))
            watch.files_ready(list(seen.values()))  # seen again: nothing new to say
        entries = list(ledger.entries())
    assert [(entry.key, entry.state) for entry in entries] == [("in/odd.jsonl", State.REJECTED)]
    assert entries[0].error is not None
    assert "cannot be read" in entries[0].error
    assert [entry["event"] for entry in logs] == ["job.rejected"]
