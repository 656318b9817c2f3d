"""The ledger's own failures under a running daemon: its file removed or replaced, a full disk."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

from dropzone.commands.probes import Finding, ledger_finding
from dropzone.emulator import Emulator
from dropzone.ledger import SqliteLedger
from dropzone.ops.events import ledger_writable
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
from tests.test_hostile import fill, tiny_filesystem
from tests.test_local_daemon import Daemon

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _finish(process: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """The daemon's output once it has exited by itself; SIGKILLed (and the test failed) if
    it is still running after ``timeout`` seconds."""
    try:
        return process.communicate(timeout=timeout * load_scale())
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the daemon went on running:\n{err[-2000:]}{out[-3000:]}")


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_ledger_removed_or_replaced_under_a_running_daemon_stops_it(
    stage: Stage, how: str
) -> None:
    """The ledger file removed (or replaced by a copy) while `dropzone run` runs: what the
    daemon would write next is lost to the next start, so it stops, exit 1, with one error line
    naming the file and what became of it."""
    stage.put("a.jsonl")
    process = stage.spawn("run")
    try:
        wait_for(lambda: sum(stage.create_calls().values()) == 1, what="the submission")
        if how == "removed":
            stage.ledger_path.unlink()
        else:
            copy = stage.ledger_path.with_name("copy.sqlite3")
            shutil.copyfile(stage.ledger_path, copy)
            copy.replace(stage.ledger_path)
    except BaseException:
        process.kill()
        process.communicate()
        raise
    out, err = _finish(process)
    assert process.returncode == 1, err + out[-3000:]
    assert "Traceback" not in err + out
    [line] = [e for e in log_events(out) if e["event"] == "ledger.displaced"]
    assert line["level"] == "error"
    assert line["error"] == f"{stage.ledger_path} was {how} while the ledger was open"
    assert "restart" in line["hint"]


def test_health_sees_a_ledger_removed_at_once(tmp_path: Path) -> None:
    """/healthz's ledger check fails as soon as the ledger's file is gone from its path (not
    only at the daemon's next poll): a missing file is no writable ledger."""
    path = tmp_path / "ledger.sqlite3"
    with SqliteLedger.open(path) as ledger:
        writable = ledger_writable(path, ledger.displaced)
        assert writable()
        path.unlink()
        assert not writable()


def test_an_outcome_unrecorded_for_a_full_disk_is_recorded_once_space_is_back(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """The disk fills while a Create is under way: its job is made, but the outcome cannot be
    written and the entry stays `submitting`. Once space is back, the running daemon records
    it (no restart), and the file still has exactly one job."""
    s3 = s3_client(moto_endpoint)
    filler: list[Path] = []
    with tiny_filesystem(tmp_path / "state", "8m") as state:

        def fill_once() -> None:
            if not filler:
                filler.append(fill(state))

        with Emulator(
            ACCESS_KEY, SECRET_KEY, queue_s=30, run_s=60, on_create_received=fill_once
        ) as ark:
            stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
            key = stage.put("a.jsonl")
            daemon = Daemon(stage.spawn("run"))
            try:
                daemon.wait_event("ledger.failed", what="the outcome's write to fail")
                assert "full" in daemon.events("ledger.failed")[0]["error"]
                assert [r["state"] for r in stage.status()] == ["submitting"]
                filler[0].unlink()
                wait_for(
                    lambda: [r["state"] for r in stage.status()] == ["submitted"],
                    what="the outcome to be recorded once space is back",
                )
            finally:
                code = daemon.stop()
            assert code == 0, daemon.output()
            assert stage.create_calls() == {f"{stage.bucket}/{key}": 1}
            [row] = stage.status()
            assert row["job_id"] == stage.jobs()[0]["Id"]


@contextmanager
def read_only_view(folder: Path, view: Path) -> Iterator[Path]:
    """``folder`` seen read-only at ``view`` (a read-only bind mount: even root cannot write
    there); skips the test when it cannot be mounted."""
    view.mkdir()
    done = subprocess.run(["mount", "--bind", str(folder), str(view)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot bind-mount a folder (root needed)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_status_reads_a_ledger_in_a_read_only_folder(stage: Stage, tmp_path: Path) -> None:
    """A ledger where nothing may be written (a read-only mount, as for a copy handed to
    someone, or a file and folder without write permission): `dropzone status` still reads it,
    although SQLite cannot make the shared-memory file it reads a write-ahead log with."""
    key = stage.put("a.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    with read_only_view(stage.ledger_path.parent, tmp_path / "view") as view:
        done = stage.dropzone(
            "status", "--json", env={"DROPZONE_LEDGER__PATH": str(view / "ledger.sqlite3")}
        )
    assert done.returncode == 0, done.stderr
    [row] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (row["key"], row["state"]) == (key, "submitted")


@pytest.mark.parametrize(
    "where", ["under a file", "a folder name too long", "a file name too long"]
)
def test_check_tries_to_create_a_missing_ledger(stage: Stage, tmp_path: Path, where: str) -> None:
    """A ledger not there yet: `dropzone check` makes its folders and file as the daemon would
    (and removes them again), so a path that cannot be made is FAILED with the reason, not
    "not there yet" for the daemon to fail on later."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    path = {
        "under a file": blocker / "ledger.sqlite3",
        "a folder name too long": tmp_path / ("x" * 300) / "ledger.sqlite3",
        "a file name too long": tmp_path / "state" / ("x" * 300),
    }[where]
    stage.write_config()
    before = sorted(tmp_path.rglob("*"))
    done = stage.dropzone("check", "--offline", env={"DROPZONE_LEDGER__PATH": str(path)})
    found = [line for line in done.stderr.splitlines() if line.startswith(f"ledger {path}: ")]
    assert len(found) == 1, done.stderr
    verdict = found[0].removeprefix(f"ledger {path}: ")
    assert verdict.startswith("FAILED: "), verdict
    assert ("not a folder" if where == "under a file" else "File name too long") in verdict
    assert done.returncode == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_checks_side_by_side_both_find_a_missing_ledger_creatable(tmp_path: Path) -> None:
    """Two `check`s at once (the suite runs them so; a daemon may be starting too): each makes
    the missing folders, and one finding the other's folder already made said "cannot create
    ...: File exists". Eight at once, twenty rounds, the ledger in missing folders and
    straight beside the config: every finding ok, nothing left behind."""
    for round_number in range(20):
        folders = ("state", "deeper") if round_number % 2 else ()
        path = tmp_path.joinpath(*folders, "ledger.sqlite3")
        start = threading.Barrier(8)

        def find(where: Path = path, barrier: threading.Barrier = start) -> Finding:
            barrier.wait()
            return ledger_finding(where)

        with ThreadPoolExecutor(8) as pool:
            findings = list(pool.map(lambda _: find(), range(8)))
        assert [f.detail for f in findings if not f.ok] == []
        assert list(tmp_path.iterdir()) == []
