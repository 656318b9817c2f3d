"""A daemon and the commands on a PostgreSQL ledger: the real command line, a real server.

What the store itself promises is the contract suite's (tests/ledger_contract/, run on
PostgreSQL too); this is what a user configures and sees: ``[ledger] url`` with its password
from a file, replicas sharing one ledger, the commands that read it, and ``check``.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg.rows import dict_row

from dropzone.emulator import Emulator
from dropzone.ledger import SqliteLedger, State, pg_schema
from dropzone.ledger.copy import copy_ledger
from dropzone.ledger.notices import EVENTS
from dropzone.ledger.postgres import PostgresLedger
from dropzone.runtime import utc_now
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
from tests.test_local_daemon import Daemon

if TYPE_CHECKING:
    from pathlib import Path

    from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

PASSWORD = "pg-secret-never-logged"


def on_postgres(stage: Stage, postgres: PostgresServer, role: str) -> None:
    url = postgres.role_with_password(role, PASSWORD)
    secret = stage.tmp / "ledger-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    stage.ledger = {"url": url, "password_file": str(secret)}


def test_a_daemon_on_postgresql_submits_each_file_once(
    stage: Stage, postgres: PostgresServer
) -> None:
    """run --once on a PostgreSQL ledger: each file one job, status reads it back, a second
    run adds nothing; the password never reaches a log line, an error or the output."""
    on_postgres(stage, postgres, "dz_once")
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
    on_postgres(stage, postgres, "dz_wrong")
    (stage.tmp / "ledger-password").write_text("not-it", encoding="utf-8")
    done = stage.dropzone("run", "--once")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"postgresql://127.0.0.1:{postgres.port}/dz_wrong" in line
    assert "password authentication failed" in line
    assert "not-it" not in line
    assert PASSWORD not in line


def test_two_daemons_share_a_postgresql_ledger(stage: Stage, postgres: PostgresServer) -> None:
    """Two replicas on one ledger: both are live nodes, one lists the watch, both submit, and
    each file has one job; a short command (retry) works beside them; a clean stop gives the
    lease and the roles up."""
    on_postgres(stage, postgres, "dz_pair")
    keys = [stage.put(f"f{number}.jsonl") for number in range(6)]
    daemons = [stage.spawn("run"), stage.spawn("run")]
    try:
        with PostgresLedger.open(stage.ledger["url"], password=PASSWORD) as ledger:
            wait_for(
                lambda: sum(lease.live for lease in ledger.nodes()) == 2,
                timeout=30,
                what="two live nodes",
            )
            wait_for(lambda: len(stage.jobs()) == len(keys), timeout=60, what="every file's job")
            nodes = {lease.id for lease in ledger.nodes()}
            listers = {holder for role, holder in ledger.roles().items() if role == "list:chat"}
            assert len(listers) == 1
            assert listers <= nodes
            retried = stage.dropzone("retry", "--state", "rejected")
            assert retried.returncode == 0, retried.stderr
            outs = []
            for daemon in daemons:
                daemon.terminate()
                outs.append(daemon.communicate(timeout=30 * load_scale())[0])
            assert [daemon.returncode for daemon in daemons] == [0, 0]
            assert ledger.nodes() == []
            assert ledger.roles() == {}
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate()
    assert stage.create_calls() == {f"{stage.bucket}/{k}": 1 for k in keys}
    started = [e for out in outs for e in log_events(out) if e["event"] == "daemon.started"]
    assert len({e["node"] for e in started}) == 2


def test_commands_on_an_empty_database_say_there_is_no_ledger(
    stage: Stage, postgres: PostgresServer
) -> None:
    """status and retry on a database nothing has run with: what is missing and where, no
    table created; check says the first run makes it."""
    on_postgres(stage, postgres, "dz_empty")
    status = stage.dropzone("status")
    assert status.returncode == 1
    where = f"postgresql://127.0.0.1:{postgres.port}/dz_empty"
    assert status.stderr.startswith(f"no ledger at postgresql://dz_empty@127.0.0.1:{postgres.port}")
    retried = stage.dropzone("retry", "--state", "rejected")
    assert retried.returncode == 2
    assert f"no ledger in {where}" in retried.stderr
    checked = stage.dropzone("check", "--offline")
    assert f"ledger {where}: ok: answers; no ledger yet" in checked.stderr


def test_the_migration_to_this_version_is_one_transaction(postgres: PostgresServer) -> None:
    """A replica reading beside the one migrating (a first start, a rolling update) never
    sees a version between: a failing step leaves the database as it was, with no table."""
    broken = (*pg_schema.MIGRATIONS, ("NOT SQL",))
    with psycopg.connect(postgres.new_database(), row_factory=dict_row) as conn:
        with pytest.raises(psycopg.errors.SyntaxError):
            pg_schema.migrate(conn, broken)
        assert pg_schema.schema_version(conn) == 0
        tables = conn.execute(
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        assert tables == {"n": 0}
        pg_schema.migrate(conn)
        assert pg_schema.schema_version(conn) == pg_schema.SCHEMA_VERSION


def test_an_sqlite_ledger_copied_to_postgresql_goes_on(
    stage: Stage, postgres: PostgresServer
) -> None:
    """ledger copy: every entry with its id and state; the daemon on the copy submits nothing
    again, and a new file gets an id after the copied ones; a second copy is refused."""
    keys = [stage.put(name) for name in ("a.jsonl", "b.jsonl")]
    first = stage.dropzone("run", "--once")
    assert first.returncode == 0, first.stderr
    with SqliteLedger.open(stage.ledger_path, lock=False) as sqlite:
        # An entry forgotten since: its id is never given again, on the copy either.
        gone, _ = sqlite.add_object(
            "chat", stage.bucket, "elsewhere/x.jsonl", "e", 1, State.BASELINE, utc_now()
        )
        assert sqlite.forget("chat", ["elsewhere/x.jsonl"]) == 1
        before = {entry.key: entry for entry in sqlite.entries()}
    url = postgres.role_with_password("dz_copy", PASSWORD)
    secret = stage.tmp / "ledger-password"
    secret.write_text(PASSWORD, encoding="utf-8")
    copied = stage.dropzone("ledger", "copy", "--to", url, "--password-file", str(secret))
    assert copied.returncode == 0, copied.stderr
    assert "copied 1 watch(es) and 2 entries" in copied.stderr
    again = stage.dropzone("ledger", "copy", "--to", url, "--password-file", str(secret))
    assert again.returncode == 2
    assert "already holds 2 entries of 1 watch(es): copy into an empty one" in again.stderr

    stage.ledger = {"url": url, "password_file": str(secret)}
    migrated = stage.dropzone("ledger", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "schema up to date" in migrated.stderr
    with PostgresLedger.open(url, password=PASSWORD) as copy:
        assert {entry.key: entry for entry in copy.entries()} == before
    new = stage.put("c.jsonl")
    on_copy = stage.dropzone("run", "--once")
    assert on_copy.returncode == 0, on_copy.stderr
    assert stage.create_calls() == {f"{stage.bucket}/{k}": 1 for k in [*keys, new]}
    with PostgresLedger.open(url, password=PASSWORD) as copy:
        (added,) = copy.find("chat", stage.bucket, new)
    assert added.id > gone.id > max(entry.id for entry in before.values())
    for done in (copied, again, migrated, on_copy):
        assert PASSWORD not in done.stdout + done.stderr


def test_a_copy_takes_the_outbox_along(tmp_path: Path, postgres: PostgresServer) -> None:
    """A notice delivered stays delivered on the copy, one not yet is due there, under the
    same delivery ID."""
    now = utc_now()
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as source:
        source.announce({"chat": frozenset(EVENTS)})
        for key in ("a.jsonl", "b.jsonl"):
            entry, _ = source.add_object("chat", "bucket", key, "e1", 1, State.PENDING, now)
            claimed = source.claim_one(entry.id, now)
            assert claimed is not None
            source.record_rejected(entry.id, "denied", now)
        delivered, pending = source.notices_due(now)
        assert source.settle_notice(delivered.id, "delivered", now)
        with PostgresLedger.open(postgres.new_database()) as target:
            copy_ledger(source, target)
            (due,) = target.notices_due(now)
            assert target.notices_pending() == (1, pending.happened_at)
    assert (due.delivery_id, due.body, due.tries) == (pending.delivery_id, pending.body, 0)


def test_a_daemon_whose_connections_are_cut_goes_on(stage: Stage, postgres: PostgresServer) -> None:
    """Every connection of the daemon's ended by the server (a failover, pg_terminate_backend):
    a clear log line at most, no traceback, and the next file is submitted once."""
    on_postgres(stage, postgres, "dz_cut")
    stage.put("before.jsonl")
    daemon = stage.spawn("run")
    try:
        wait_for(lambda: len(stage.jobs()) == 1, timeout=30, what="the first file's job")
        postgres.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = 'dz_cut' AND pid <> pg_backend_pid()"
        )
        after = stage.put("after.jsonl")
        wait_for(lambda: len(stage.jobs()) == 2, timeout=60, what="the file put after the cut")
        daemon.terminate()
        out, err = daemon.communicate(timeout=30 * load_scale())
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, out + err
    assert "Traceback" not in out + err
    assert stage.create_calls()[f"{stage.bucket}/{after}"] == 1


def test_a_node_stalled_mid_create_wakes_to_find_its_attempt_taken_over(
    tmp_path: Path, moto_endpoint: str, postgres: PostgresServer
) -> None:
    """A node stopped (SIGSTOP) as its Create reaches the platform, held past its lease: the
    other node takes the attempt over and finds the job by its tag; woken (SIGCONT), the
    stalled node's write of the answer is refused (claim.lost), it learns that its lease
    lapsed, and the file has one job, recorded once."""
    stalled: list[int] = []

    def stall_the_sender() -> None:
        if len(stalled) == 1:
            os.kill(stalled[0], signal.SIGSTOP)
            stalled.append(stalled[0])

    s3 = s3_client(moto_endpoint)
    with Emulator(
        ACCESS_KEY, SECRET_KEY, queue_s=30, run_s=60, on_create_received=stall_the_sender
    ) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        on_postgres(stage, postgres, "dz_stall")
        stage.ledger["lease_ttl_s"] = 3
        first = Daemon(stage.spawn("run"))
        second: Daemon | None = None
        try:
            first.wait_ready()
            stalled.append(first.process.pid)
            key = stage.put("a.jsonl")
            wait_for(lambda: len(stalled) == 2, timeout=30, what="the Create, and the stall")
            second = Daemon(stage.spawn("run"))
            second.wait_event("claim.taken_over", what="the stalled node's attempt taken over")
            wait_for(
                lambda: [r["state"] for r in stage.status()] == ["submitted"],
                what="the job found by its tag",
            )
            [row] = stage.status()
            assert row["claimed_by"] in (None, stage_node(second))
            first.process.send_signal(signal.SIGCONT)
            first.wait_event("claim.lost", what="the woken node's write refused")
            first.wait_event("node.lease_lapsed", what="the woken node told its lease lapsed")
        finally:
            if first.process.poll() is None:
                first.process.send_signal(signal.SIGCONT)
            codes = [first.stop()] + ([second.stop()] if second is not None else [])
        assert codes == [0, 0], first.output()
        assert stage.create_calls() == {f"{stage.bucket}/{key}": 1}
        [row] = stage.status()
        assert row["state"] == "submitted"
        assert row["job_id"] == stage.jobs()[0]["Id"]
        assert second is not None
        [taken] = second.events("claim.taken_over")
        assert taken["from_node"] == stage_node(first)
        assert taken["owner_may_live"] is True
        for daemon in (first, second):
            assert "Traceback" not in daemon.output()


def stage_node(daemon: Daemon) -> str:
    """The node id a daemon logged when it started."""
    [started] = daemon.events("daemon.started")
    node: str = started["node"]
    return node
