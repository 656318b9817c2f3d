"""A daemon and the commands on a PostgreSQL ledger: the real command line, a real server.

What the store itself promises is the contract suite's (tests/ledger_contract/, run on
PostgreSQL too); this is what a user configures and sees: ``[ledger] url`` with its password
from a file, one daemon per ledger, the commands that read it, and ``check``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.harness import load_scale, log_events, wait_for

if TYPE_CHECKING:
    from tests.harness import Stage
    from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

PASSWORD = "pg-secret-never-logged"


def _on_postgres(stage: Stage, postgres: PostgresServer, role: str) -> None:
    url = postgres.role_with_password(role, PASSWORD)
    secret = stage.tmp / "ledger-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    stage.ledger = {"url": url, "password_file": str(secret)}


def test_a_daemon_on_postgresql_submits_each_file_once(
    stage: Stage, postgres: PostgresServer
) -> None:
    """run --once on a PostgreSQL ledger: each file one job, status reads it back, a second
    run adds nothing; the password never reaches a log line, an error or the output."""
    _on_postgres(stage, postgres, "dz_once")
    keys = [stage.put(name) for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    first = stage.dropzone("run", "--once")
    assert first.returncode == 0, first.stderr + first.stdout
    assert stage.create_calls() == {f"{stage.bucket}/{k}": 1 for k in keys}
    rows = stage.status()
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert {r["state"] for r in rows} == {"submitted"}
    again = stage.dropzone("run", "--once")
    assert again.returncode == 0, again.stderr
    assert stage.create_calls() == {f"{stage.bucket}/{k}": 1 for k in keys}
    checked = stage.dropzone("check", "--offline")
    ledger_line = [line for line in checked.stderr.splitlines() if line.startswith("ledger ")]
    assert ledger_line == [
        f"ledger postgresql://127.0.0.1:{postgres.port}/dz_once: ok: answers (3 entries)"
    ], checked.stderr
    for done in (first, again, checked):
        assert PASSWORD not in done.stdout + done.stderr


def test_a_wrong_password_is_one_clear_line(stage: Stage, postgres: PostgresServer) -> None:
    """A password file with the wrong password: exit 2, one line naming the database and
    what the server said, neither password shown."""
    _on_postgres(stage, postgres, "dz_wrong")
    (stage.tmp / "ledger-password").write_text("not-it", encoding="utf-8")
    done = stage.dropzone("run", "--once")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"postgresql://127.0.0.1:{postgres.port}/dz_wrong" in line
    assert "password authentication failed" in line
    assert "not-it" not in line
    assert PASSWORD not in line


def test_one_daemon_per_postgresql_ledger(stage: Stage, postgres: PostgresServer) -> None:
    """While a daemon runs on the ledger, a second refuses to start, naming it; a short
    command (retry) still works beside the first."""
    _on_postgres(stage, postgres, "dz_lock")
    stage.put("a.jsonl")
    first = stage.spawn("run")
    try:
        wait_for(lambda: len(stage.jobs()) == 1, timeout=30, what="the first daemon's job")
        second = stage.dropzone("run", "--once")
        assert second.returncode == 2, second.stderr
        assert "another dropzone daemon is using the ledger at postgresql://" in second.stderr
        retried = stage.dropzone("retry", "--state", "rejected")
        assert retried.returncode == 0, retried.stderr
    finally:
        first.terminate()
        out, _ = first.communicate(timeout=30 * load_scale())
    assert first.returncode == 0
    assert [e["event"] for e in log_events(out)].count("job.submitted") == 1


def test_commands_on_an_empty_database_say_there_is_no_ledger(
    stage: Stage, postgres: PostgresServer
) -> None:
    """status and retry on a database nothing has run with: what is missing and where, no
    table created; check says the first run makes it."""
    _on_postgres(stage, postgres, "dz_empty")
    status = stage.dropzone("status")
    assert status.returncode == 1
    where = f"postgresql://127.0.0.1:{postgres.port}/dz_empty"
    assert status.stderr.startswith(f"no ledger at postgresql://dz_empty@127.0.0.1:{postgres.port}")
    retried = stage.dropzone("retry", "--state", "rejected")
    assert retried.returncode == 2
    assert f"no ledger in {where}" in retried.stderr
    checked = stage.dropzone("check", "--offline")
    assert f"ledger {where}: ok: answers; no ledger yet" in checked.stderr
