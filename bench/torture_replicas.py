"""Torture with replicas: three daemons on one PostgreSQL ledger, one job per file whatever dies.

    python bench/torture_replicas.py [--files 300] [--events 60] [--replicas 3] [--seed N]
                                     [--pg-restarts 3] [--workdir DIR] [--json FILE]

The world: a throwaway PostgreSQL cluster (``tests/postgres_server.py``: ``initdb`` and
``pg_ctl``, as the ``postgres`` user when run as root), a moto S3 server on loopback, and the
Ark emulator in this process. The emulator loses 10% of the answers to Creates that made a job,
answers 5% of calls 429 and 5% 500, adds 20 ms to each call, and accepts a signature for 10 s
(``signature_validity_s`` in the config says the same), so that an attempt taken over from a
stalled node may be sent again within the run. Jobs are short (0.1 s queued, 0.2 s running):
a job has ended long before any wrong second Create, so the platform's guard cannot hide one.

Three ``dropzone run`` processes share the ledger (``lease_ttl_s = 3``) and two bucket watches
(one with ``max_active_jobs``). Files are put in bursts while, every 0.5 to 2 s, one of these
happens: a daemon is SIGKILLed (and started again 0 to 2 s later); a daemon is SIGSTOPped past
its lease (4 to 6 s) and then SIGCONTed; every connection of one daemon's is ended with
``pg_terminate_backend`` (each daemon has its own ``application_name``); the PostgreSQL server
is restarted (``--pg-restarts`` times in the run).

The end: faults off, every daemon running, until the ledger has nothing waiting, pending or
submitting; then the checks, from the emulator's inspection endpoint and ``dropzone status
--json``: every file has exactly one job, no other input has one, and the ledger has one entry
per file, submitted, with that job. Exit 0, or 1 with each violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import psycopg
import tomli_w
from torture import (
    ACCESS_KEY,
    MODEL,
    SECRET_KEY,
    child_env,
    dropzone_command,
    inspection_state,
    jsonl_body,
    ledger_rows,
    log_events,
    relpath_for,
    start_moto,
    violations,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import header

from dropzone.emulator import Emulator
from tests.postgres_server import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Sequence

LEASE_TTL_S = 3.0
SIGNATURE_VALIDITY_S = 10.0
EVENTS = ("kill", "stop", "cut")
EVENT_WEIGHTS = (0.4, 0.3, 0.3)


@dataclass
class Options:
    files: int = 300
    events: int = 60
    replicas: int = 3
    pg_restarts: int = 3
    seed: int = 1
    settle_timeout_s: float = 300.0


@dataclass
class Report:
    options: dict[str, Any]
    workdir: str
    files: int = 0
    events: dict[str, int] = field(default_factory=dict)
    create_calls: int = 0
    jobs: int = 0
    lost_answers: int = 0
    settled_s: float = 0.0
    log_events: dict[str, int] = field(default_factory=dict)
    tracebacks: int = 0
    problems: list[str] = field(default_factory=list)


class Replica:
    """One ``dropzone run`` and its log; started again after a kill under a new log."""

    def __init__(self, number: int, config: Path, logs: Path) -> None:
        self.number = number
        self.name = f"dz-{number}"
        self._config = config
        self._logs = logs
        self._lives = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def start(self) -> None:
        self._lives += 1
        log = (self._logs / f"{self.name}-life{self._lives:03d}.log").open("wb")
        # libpq names each connection after it: pg_terminate_backend finds this daemon's.
        env = {**child_env(), "PGAPPNAME": self.name}
        self.process = subprocess.Popen(
            dropzone_command(self._config, "run"), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop_gently(self) -> None:
        if self.stopped:
            self.signal(signal.SIGCONT)
            self.stopped = False
        self.signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


class World:
    def __init__(self, workdir: Path, options: Options, stack: ExitStack) -> None:
        self.workdir = workdir
        self.options = options
        self.postgres = PostgresServer()
        self.postgres.start()
        stack.callback(self.postgres.stop)
        self.url = self.postgres.new_database()
        self.s3_endpoint = start_moto(stack)
        self.emulator = stack.enter_context(
            Emulator(
                ACCESS_KEY,
                SECRET_KEY,
                queue_s=0.1,
                run_s=0.2,
                fail_rate=0.05,
                throttle_rate=0.05,
                lose_answer_rate=0.1,
                latency_ms=20,
                seed=options.seed,
                signature_validity_s=SIGNATURE_VALIDITY_S,
            )
        )
        self.s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        self.bucket = f"replicas-{options.seed}-{os.getpid()}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.config = self._write_config()

    def _write_config(self) -> Path:
        watch = {
            "bucket": self.bucket,
            "model": MODEL,
            "on_start": "submit-existing",
            "min_age_s": 0,
        }
        document = {
            "ark": {
                "endpoint": self.emulator.url,
                "max_requests_per_second": 300,
                "timeout_s": 2,
                "signature_validity_s": SIGNATURE_VALIDITY_S,
            },
            "tos": {
                "endpoint": self.s3_endpoint,
                "region": "us-east-1",
                "addressing_style": "path",
            },
            "ledger": {"url": self.url, "lease_ttl_s": LEASE_TTL_S},
            "daemon": {
                "poll_interval_s": 0.3,
                "track_interval_s": 0.5,
                "concurrency": 4,
                "listen": "",
            },
            "watch": [
                {**watch, "name": "plain", "prefix": "plain/"},
                {**watch, "name": "capped", "prefix": "capped/", "max_active_jobs": 8},
            ],
        }
        path = self.workdir / "dropzone.toml"
        path.write_text(tomli_w.dumps(document), encoding="utf-8")
        return path

    def put(self, number: int) -> str:
        prefix = "plain/" if number % 2 == 0 else "capped/"
        key = prefix + relpath_for(number)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=jsonl_body(f"r{number}", 2))
        return f"{self.bucket}/{key}"

    def unsettled(self) -> tuple[int, int]:
        """(entries, entries still waiting, pending or submitting) in the ledger, now."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE state IN"
                " ('waiting', 'pending', 'submitting')) FROM entries"
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def cut(self, replica: Replica) -> None:
        self.postgres.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE application_name = '{replica.name}'"
        )


def feed(world: World, files: int, rng: random.Random, until: float, out: list[str]) -> None:
    """Put the files in bursts spread over the chaos."""
    bursts = sorted(rng.uniform(0, 1) for _ in range(max(1, files // 20)))
    started = time.monotonic()
    span = max(1.0, until - started)
    per_burst = [files // len(bursts)] * len(bursts)
    per_burst[-1] += files - sum(per_burst)
    number = 0
    for at, count in zip(bursts, per_burst, strict=True):
        time.sleep(max(0.0, started + at * span - time.monotonic()))
        for _ in range(count):
            out.append(world.put(number))
            number += 1


def chaos(
    world: World, replicas: Sequence[Replica], options: Options, rng: random.Random
) -> Counter[str]:
    """The events, one every 0.5 to 2 s; the PostgreSQL restarts spread among them."""
    happened: Counter[str] = Counter()
    restarts = set(rng.sample(range(options.events), min(options.pg_restarts, options.events)))
    for number in range(options.events):
        time.sleep(rng.uniform(0.5, 2.0))
        if number in restarts:
            world.postgres.restart()
            happened["pg_restart"] += 1
            continue
        replica = rng.choice(replicas)
        event = rng.choices(EVENTS, weights=EVENT_WEIGHTS)[0]
        if event == "kill":
            replica.kill()
            time.sleep(rng.uniform(0.0, 2.0))
            replica.start()
        elif event == "stop" and not replica.stopped:
            replica.signal(signal.SIGSTOP)
            replica.stopped = True
            threading.Timer(LEASE_TTL_S + rng.uniform(1.0, 3.0), _resume, args=(replica,)).start()
        else:
            world.cut(replica)
            event = "cut"
        happened[event] += 1
    return happened


def _resume(replica: Replica) -> None:
    replica.signal(signal.SIGCONT)
    replica.stopped = False


def settle(world: World, expected: int, timeout_s: float) -> None:
    """Until every file has an entry and none is unsettled, or the time-out (the checks then
    say what is stuck)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            entries, unsettled = world.unsettled()
        except psycopg.Error:
            entries, unsettled = 0, 1  # the server is still coming back
        if entries >= expected and unsettled == 0:
            return
        time.sleep(0.5)


def torture(options: Options, workdir: Path) -> Report:
    rng = random.Random(options.seed)
    report = Report(options=asdict(options), workdir=str(workdir))
    with ExitStack() as stack:
        world = World(workdir, options, stack)
        replicas = [Replica(n, world.config, world.logs) for n in range(options.replicas)]
        for replica in replicas:
            replica.start()
            stack.callback(replica.kill)
        expected: list[str] = []
        chaos_span = options.events * 1.25
        feeder = threading.Thread(
            target=feed, args=(world, options.files, rng, time.monotonic() + chaos_span, expected)
        )
        feeder.start()
        report.events = dict(chaos(world, replicas, options, random.Random(options.seed + 1)))
        feeder.join()
        chaos_ended = time.monotonic()
        time.sleep(LEASE_TTL_S + 4)  # every SIGSTOP's timer has fired
        for replica in replicas:
            _resume(replica)
            if replica.process is None or replica.process.poll() is not None:
                replica.start()
        world.emulator.set_faults(fail_rate=0.0, throttle_rate=0.0, lose_answer_rate=0.0)
        settle(world, len(expected), options.settle_timeout_s)
        report.settled_s = round(time.monotonic() - chaos_ended, 1)
        for replica in replicas:
            replica.stop_gently()
        state = inspection_state(world.emulator)
        rows = ledger_rows(world.config)
        report.files = len(expected)
        report.jobs = len(state["jobs"])
        report.create_calls = sum(state.get("create_calls", {}).values())
        report.lost_answers = int(state.get("lost_answers", 0))
        report.problems = violations(expected, state, rows)
    counts: Counter[str] = Counter()
    for _, event in log_events(workdir / "logs"):
        counts[str(event.get("event"))] += 1
    wanted = ("job.", "claim.", "node.", "ledger.", "worker.", "poll.failed")
    report.log_events = {k: v for k, v in sorted(counts.items()) if k.startswith(wanted)}
    report.tracebacks = sum(
        path.read_text(encoding="utf-8", errors="replace").count("Traceback")
        for path in (workdir / "logs").glob("*.log")
    )
    if report.tracebacks:
        report.problems.append(f"{report.tracebacks} tracebacks in the daemons' logs")
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=defaults.files)
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--replicas", type=int, default=defaults.replicas)
    parser.add_argument("--pg-restarts", type=int, default=defaults.pg_restarts)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--settle-timeout-s", type=float, default=defaults.settle_timeout_s)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="write the report here too")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    header("crash torture with replicas", {"files": args.files, "replicas": args.replicas})
    options = Options(
        files=args.files,
        events=args.events,
        replicas=args.replicas,
        pg_restarts=args.pg_restarts,
        seed=args.seed,
        settle_timeout_s=args.settle_timeout_s,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dropzone-replicas-"))
    report = torture(options, workdir)
    events = ", ".join(f"{name} {n}" for name, n in sorted(report.events.items()))
    print(
        f"replicas {options.replicas}, files {report.files}, events: {events};"
        f" Create calls {report.create_calls}, jobs {report.jobs},"
        f" lost answers {report.lost_answers}, settled {report.settled_s} s after the chaos"
    )
    print("log events: " + ", ".join(f"{k} {v}" for k, v in report.log_events.items()))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    if report.problems:
        print(f"FAIL: {len(report.problems)} problems (logs in {workdir}/logs):")
        for problem in report.problems[:50]:
            print(f"  {problem}")
        return 1
    print("OK: every file has exactly one job, none is missing, and the ledger agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
