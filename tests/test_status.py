"""`dropzone status` for a person (a table on a real pseudo-terminal) and for scripts (the
tab-separated lines and JSON, unchanged), and the log level: setting, option, quiet polls."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from dropzone.commands.status_view import age_text, presence, summary
from dropzone.ledger import Listed, SqliteLedger, State
from tests.harness import jsonl, log_events

if TYPE_CHECKING:
    from pathlib import Path

    from tests.harness import Stage

COLUMNS = 160


def on_terminal(stage: Stage, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the command with a pseudo-terminal of COLUMNS columns as its stdout."""
    master, slave = os.openpty()
    termios.tcsetwinsize(slave, (40, COLUMNS))
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "dropzone", *args],
            env=stage.env(),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal closed, the child is done
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        assert process.stderr is not None
        process.stderr.close()
    # The terminal turns each "\n" into "\r\n".
    return code, b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


@pytest.fixture
def mixed(stage: Stage) -> dict[str, str]:
    """A ledger with two submitted keys, one of them since deleted, the other replaced by a
    version that ended `duplicate` (its first job is still active)."""
    kept = stage.put("kept.jsonl", jsonl(2, "v1"))
    deleted = stage.put("deleted.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    stage.s3.delete_object(Bucket=stage.bucket, Key=deleted)
    stage.put("kept.jsonl", jsonl(3, "v2"))
    again = stage.dropzone("run", "--once")
    assert again.returncode == 0, again.stderr + again.stdout[-2000:]
    return {"kept": kept, "deleted": deleted}


@pytest.mark.slow
def test_status_on_a_terminal_is_a_table_with_a_summary(
    stage: Stage, mixed: dict[str, str]
) -> None:
    """Under a pseudo-terminal: a header of the seven columns, one aligned row per entry with
    its job and age, deleted and replaced versions marked, and a line of counts by state."""
    code, text = on_terminal(stage, "status")
    assert code == 0, text
    header, *rows, last = text.rstrip("\n").split("\n")
    assert header.split() == ["WATCH", "KEY", "STATE", "JOB", "PHASE", "AGE", "ERROR"]
    assert len(rows) == 3
    assert last == "3 entries: 2 submitted, 1 duplicate; 2 deleted or replaced"
    starts = [header.index(name) for name in ("KEY", "STATE", "JOB", "PHASE", "AGE")]
    for row in rows:
        assert "\t" not in row
        assert len(row) <= COLUMNS
        # Every cell starts under its heading: the columns are aligned.
        assert all(row[start - 2 : start] == "  " and row[start] != " " for start in starts), row
    deleted_row = next(row for row in rows if mixed["deleted"] in row)
    assert f"{mixed['deleted']} (deleted)" in deleted_row
    assert " submitted " in deleted_row
    kept_rows = [row for row in rows if mixed["kept"] in row]
    assert sorted("(replaced)" in row for row in kept_rows) == [False, True]
    assert sorted(row[starts[1] :].split()[0] for row in kept_rows) == ["duplicate", "submitted"]
    jobs = {job["Id"] for job in stage.jobs()}
    assert {row[starts[2] :].split()[0] for row in rows} == jobs  # the duplicate names kept's job
    assert {row[starts[3] :].split()[0] for row in rows} == {"-"}  # tracking is off here
    assert {row[starts[4] :].split()[0][-1] for row in rows} <= {"s", "m"}

    code, filtered = on_terminal(stage, "status", "--state", "duplicate")
    assert code == 0
    assert filtered.rstrip("\n").split("\n")[-1] == "1 entry: 1 duplicate"


@pytest.mark.slow
def test_status_piped_or_json_is_unchanged_for_scripts(stage: Stage, mixed: dict[str, str]) -> None:
    """Not a terminal: the tab-separated lines scripts read (no header, no summary); with
    --json, JSON lines even on a terminal, now also saying which versions are gone."""
    piped = stage.dropzone("status")
    assert piped.returncode == 0
    lines = piped.stdout.splitlines()
    assert len(lines) == 3
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 5 for f in fields)
    assert sorted(f[4] for f in fields) == sorted(
        f"tos://{stage.bucket}/{key}" for key in (mixed["kept"], mixed["kept"], mixed["deleted"])
    )
    assert sorted(f[1] for f in fields) == ["duplicate", "submitted", "submitted"]

    code, text = on_terminal(stage, "status", "--json")
    assert code == 0
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 3
    gone = {(r["key"], r["state"]) for r in records if r["gone_since"] is not None}
    assert gone == {(mixed["deleted"], "submitted"), (mixed["kept"], "submitted")}
    assert {r["awaits_job"] for r in records} == {False}


@pytest.mark.slow
def test_a_long_error_is_cut_to_the_terminal_and_kept_in_full_in_json(stage: Stage) -> None:
    """A rejected entry's error fills the rest of the line and no more; `--json` has it all."""
    key = stage.put("x.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    message = "a refusal that goes on " * 20
    now = datetime.now(UTC)
    with SqliteLedger.open(stage.ledger_path) as ledger:
        entry, _ = ledger.add_object("chat", stage.bucket, key, "other", 1, State.PENDING, now)
        ledger.claim_one(entry.id, now)
        ledger.record_rejected(entry.id, message, now)
    code, text = on_terminal(stage, "status", "--state", "rejected")
    assert code == 0
    (row,) = text.splitlines()[1:-1]
    assert len(row) == COLUMNS
    assert row.endswith("…")
    assert key in row
    (record,) = [r for r in stage.status() if r["state"] == "rejected"]
    assert record["error"] == message


def test_age_text_uses_the_largest_whole_unit() -> None:
    """Ages read at a glance: seconds, minutes, hours, days, never negative."""
    assert [age_text(s) for s in (-3, 0, 59.9, 60, 3599, 3600, 86_399, 86_400 * 12)] == [
        "0s",
        "0s",
        "59s",
        "1m",
        "59m",
        "1h",
        "23h",
        "12d",
    ]


def test_presence_tells_deleted_from_replaced(tmp_path: Path) -> None:
    """A version no longer listed is "(deleted)" when no version of its key is listed, and
    "(replaced)" when another is; the summary counts states and the gone versions."""
    now = datetime(2024, 5, 1, tzinfo=UTC)
    with SqliteLedger.open(tmp_path / "l.sqlite3") as ledger:
        from dropzone.ledger import Listed, Page  # noqa: PLC0415 - only this test builds pages

        def listing(*items: tuple[str, str], at: int) -> None:
            page = Page([Listed(key, etag, 1) for key, etag in items])
            ledger.record_page(
                "w",
                "b",
                page,
                new_state=State.PENDING,
                on_change="resubmit",
                now=now + timedelta(seconds=at),
            )

        listing(("a", "1"), ("b", "1"), at=0)
        listing(("a", "2"), at=1)
        marks = {(e.key, e.etag): note for e, note in presence(list(ledger.entries()))}
        entries = list(ledger.entries())
    assert marks == {("a", "1"): "(replaced)", ("a", "2"): None, ("b", "1"): "(deleted)"}
    assert summary(entries, 2) == "3 entries: 3 pending; 2 deleted or replaced"
    assert summary([], 0) == "no entries"


def _run_once_events(stage: Stage, *args: str) -> list[dict[str, object]]:
    done = stage.dropzone("run", "--once", *args)
    assert done.returncode == 0, done.stderr + done.stdout[-2000:]
    return list(log_events(done.stdout))


@pytest.mark.slow
def test_a_poll_that_found_nothing_logs_at_debug(stage: Stage) -> None:
    """poll.completed is info when a poll found something, debug when it found nothing new:
    an idle daemon at the default level says nothing per poll; --log-level debug shows it."""
    stage.put("a.jsonl")
    found = [e for e in _run_once_events(stage) if e["event"] == "poll.completed"]
    assert [(e["level"], e["new"]) for e in found] == [("info", 1)]
    assert not [e for e in _run_once_events(stage) if e["event"] == "poll.completed"]
    quiet = [
        e for e in _run_once_events(stage, "--log-level", "debug") if e["event"] == "poll.completed"
    ]
    assert [(e["level"], e["new"]) for e in quiet] == [("debug", 0)]


@pytest.mark.slow
def test_log_level_setting_and_option(stage: Stage) -> None:
    """[daemon] log_level sets the level for the commands reading the file; --log-level
    wins over it; a level that is not one of the four is refused by either, naming it."""
    stage.daemon["log_level"] = "debug"
    events = _run_once_events(stage)
    assert "debug" in {e["level"] for e in events}
    warned = _run_once_events(stage, "--log-level", "warning")
    assert warned == []  # nothing went wrong, and info lines (daemon.started) are below it
    shown = _run_once_events(stage, "--log-level", "info")
    assert "daemon.started" in {e["event"] for e in shown}
    assert "debug" not in {e["level"] for e in shown}

    bad_option = stage.dropzone("status", "--log-level", "loud")
    assert bad_option.returncode == 2
    assert "--log-level" in bad_option.stderr
    assert "Traceback" not in bad_option.stderr
    stage.daemon["log_level"] = "loud"
    bad_setting = stage.dropzone("status")
    assert bad_setting.returncode == 2
    assert "daemon.log_level" in bad_setting.stderr
    assert "'debug', 'info', 'warning' or 'error'" in bad_setting.stderr


def test_status_nodes_shows_each_lease_its_roles_and_the_attempts_of_gone_nodes(
    stage: Stage,
) -> None:
    """status --nodes beside the daemons (it takes no lock, and clears no lease): a live node
    with its roles and attempt, a lapsed one, and an attempt held by a node without a lease."""
    now = datetime.now(UTC)
    stage.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    with SqliteLedger.open(stage.ledger_path) as ledger:
        ledger.add_objects(
            "chat",
            stage.bucket,
            [(Listed(f"{stage.prefix}{n}.jsonl", "e", 1), State.PENDING, None) for n in "abc"],
            now,
        )
        ledger.heartbeat("web-1-7-aa", "web-1", 3600, now)
        ledger.heartbeat("web-2-8-bb", "web-2", -60, now)
        assert ledger.hold_role("list:chat", "web-1-7-aa", now)
        assert ledger.hold_role("track", "web-1-7-aa", now)
        assert ledger.claim_due(1, now, node="web-1-7-aa")
        assert ledger.claim_due(2, now, node="web-9-9-cc")
    done = stage.dropzone("status", "--nodes")
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [line[0] for line in lines] == ["web-1-7-aa", "web-2-8-bb", "web-9-9-cc (gone)"]
    live, lapsed, gone = lines
    assert live[1] == "web-1"
    assert re.fullmatch(r"lease \d+\.\d s left", live[2]), live
    assert live[3:] == ["1 in flight", "list:chat, track"]
    assert re.fullmatch(r"lease lapsed \d+\.\d s ago", lapsed[2]), lapsed
    assert lapsed[3:] == ["0 in flight", "-"]
    assert gone[1:] == ["2 in flight: taken over by the next node to look"]
    as_json = stage.dropzone("status", "--nodes", "--json")
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["node"], r["live"], r["claims"], r["roles"]) for r in records] == [
        ("web-1-7-aa", True, 1, ["list:chat", "track"]),
        ("web-2-8-bb", False, 0, []),
        ("web-9-9-cc", False, 2, []),
    ]
    assert 3500 < records[0]["lease_remaining_s"] <= 3600
    with SqliteLedger.open(stage.ledger_path, lock=False) as ledger:
        assert len(ledger.nodes()) == 2  # the reads left the leases as they were


def test_status_nodes_on_a_ledger_without_nodes_says_so(stage: Stage) -> None:
    stage.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    SqliteLedger.open(stage.ledger_path).close()
    done = stage.dropzone("status", "--nodes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["no nodes: no daemon runs on this ledger"]
    as_json = stage.dropzone("status", "--nodes", "--json")
    assert (as_json.returncode, as_json.stdout) == (0, "")
