"""The ledger's own failures under a running daemon: its file removed or replaced, a full disk."""

from __future__ import annotations

import shutil
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest

from dropzone.ledger import SqliteLedger
from dropzone.ops_daemon import ledger_writable
from tests.harness import load_scale, log_events, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.harness import Stage


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
