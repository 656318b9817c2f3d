"""Scale with replicas: submissions by N daemons on one PostgreSQL ledger, and the store's costs.

    python bench/scale_replicas.py [--parts replicas,poll,claims] [--files 300]
                                   [--latency-ms 100] [--cap-qps 50] [--known 100000]
                                   [--claims 5000]

The PostgreSQL server is a throwaway cluster (``tests/postgres_server.py``), started here.

Part ``replicas``. The Ark emulator in a child process (a core of its own, like a remote
service) adds ``--latency-ms`` (100) to every call; jobs stay queued, so the guard never
answers. For N = 1, 2, 3: a new database, N ``dropzone run`` processes on it (``concurrency``
4 each, a QPS cap far above what they reach) start on a bucket already holding ``--files``
objects, which the first listing takes as the baseline; once every replica is live,
``dropzone backfill`` makes them all due at once, and the time from the first job to the
last is measured by watching the emulator's jobs (every 50 ms, from before the backfill).
The rate is files / that time. The bar: N replicas reach at least 0.8 x N x one replica's
rate (one replica's rate is bounded by its workers and the latency: replicas add up until the
cap or the CPU stops them). Then 3 replicas again with ``max_requests_per_second =
--cap-qps`` (50): the live nodes split the cap, so together they stay within 5% of it.

Part ``poll``. What a poll of ``--known`` (100,000) objects the ledger knows already costs in the
store: ``record_page`` over pages of 1,000 known keys (the poll's ledger side; the listing
itself is the same bytes from S3 whatever the store), on an SQLite file and on PostgreSQL,
after ``ANALYZE`` on both and ``VACUUM`` on PostgreSQL (a ledger that has held them a while),
the two in turn, 9 rounds after one to warm up; the median of each.
The bar: PostgreSQL costs at most 1.5 x SQLite.

Part ``claims``. The store alone: 8 threads sharing one ledger (the daemon's shape) claim
``--claims`` pending entries one by one (``claim_due(1)``, each a transaction), on SQLite and on
PostgreSQL; claims per second.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import psycopg
import tomli_w
from common import (
    ACCESS_KEY,
    MODEL,
    PREFIX,
    SECRET_KEY,
    MotoS3,
    child_env,
    header,
    start_emulator,
    table,
    verdict,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dropzone.ledger import Ledger, Listed, Page, SqliteLedger, State
from dropzone.ledger.postgres import PostgresLedger
from tests.postgres_server import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

NOW = datetime(2026, 1, 1, tzinfo=UTC)
UNCAPPED = 10_000.0
CAP_TOLERANCE = 0.05


def _config(path: Path, *, emulator: str, s3: str, url: str, bucket: str, qps: float) -> Path:
    document = {
        "ark": {"endpoint": emulator, "max_requests_per_second": qps, "timeout_s": 30},
        "tos": {"endpoint": s3, "region": "us-east-1", "addressing_style": "path"},
        "ledger": {"url": url},
        "daemon": {"poll_interval_s": 0.5, "track_interval_s": 0, "concurrency": 4, "listen": ""},
        "watch": [
            {"name": "chat", "bucket": bucket, "prefix": PREFIX, "model": MODEL, "min_age_s": 0}
        ],
    }
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def _live_nodes(url: str) -> int:
    with PostgresLedger.open(url, create=False) as ledger:
        return sum(lease.live for lease in ledger.nodes())


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _baseline(url: str) -> int:
    with PostgresLedger.open(url, create=False) as ledger:
        return ledger.counts().get(State.BASELINE, 0)


def replica_rate(
    replicas: int,
    files: int,
    postgres: PostgresServer,
    s3: str,
    latency_ms: int,
    work: Path,
    qps: float = UNCAPPED,
) -> float:
    """Files per second from the first job to the last, with ``replicas`` daemons."""
    url = postgres.new_database()
    bucket = f"scale-{replicas}-{int(time.time() * 1000)}"
    client = boto3.client(
        "s3",
        endpoint_url=s3,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=bucket)
    with start_emulator(latency_ms=latency_ms, in_process=False) as emulator:
        config = _config(
            work / f"n{replicas}-{qps:g}.toml",
            emulator=emulator.url,
            s3=s3,
            url=url,
            bucket=bucket,
            qps=qps,
        )
        # Every file is there before the daemons: the first listing takes them as the
        # baseline, and one backfill makes them all due at once, for every replica alike
        # (files put while the replicas run would come no faster than moto takes them).
        with ThreadPoolExecutor(16) as pool:
            put = partial(client.put_object, Bucket=bucket, Body=b"{}\n")
            list(pool.map(lambda n: put(Key=f"{PREFIX}f{n:05d}.jsonl"), range(files)))
        PostgresLedger.open(url).close()  # the tables, before the daemons race to make them
        daemons: list[subprocess.Popen[bytes]] = []
        seen: list[float] = []  # when the first job was made, then when the last was

        def watch_jobs() -> None:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                made = len(emulator.state()["jobs"])
                if made and not seen:
                    seen.append(time.monotonic())
                if made >= files:
                    seen.append(time.monotonic())
                    return
                time.sleep(0.05)

        try:
            for number in range(replicas):
                log = (work / f"n{replicas}-{qps:g}-{number}.log").open("wb")
                daemons.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "dropzone", "run"],
                        env=child_env(config),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait(lambda: _live_nodes(url) == replicas, 60, f"{replicas} live nodes")
            _wait(lambda: _baseline(url) == files, 60, "every file in the baseline")
            if replicas > 1:  # each has counted the others, and shares the cap with them
                logs = [work / f"n{replicas}-{qps:g}-{n}.log" for n in range(replicas)]
                counted = f'"live_nodes": {replicas}'.encode()
                _wait(lambda: all(counted in log.read_bytes() for log in logs), 60, "the count")
            # The jobs' CreateTime has whole seconds: the emulator is watched instead, from
            # before the backfill, so that the first job's time is not taken late.
            watching = threading.Thread(target=watch_jobs, daemon=True)
            watching.start()
            subprocess.run(
                [sys.executable, "-m", "dropzone", "backfill"],
                env=child_env(config),
                check=True,
                capture_output=True,
            )
            watching.join(600)
            if len(seen) < 2:
                raise RuntimeError("timed out waiting for every file's job")
        finally:
            for daemon in daemons:
                daemon.terminate()
            for daemon in daemons:
                daemon.wait(60)
    first, last = seen
    return (files - 1) / max(1e-6, last - first)


def _fill(ledger: Ledger, known: int) -> list[Page]:
    pages: list[Page] = []
    for start in range(0, known, 1000):
        listed = [
            Listed(f"{PREFIX}k{n:07d}", f"e{n}", 1) for n in range(start, min(known, start + 1000))
        ]
        after = None if start == 0 else pages[-1].through
        pages.append(Page(listed, after, listed[-1].key))
    ledger.begin_watch("chat", "bucket", PREFIX, NOW)
    for page in pages:
        ledger.record_page(
            "chat", "bucket", page, new_state=State.BASELINE, on_change="resubmit", now=NOW
        )
    return pages


def _settle(sqlite_path: Path, pg_url: str) -> None:
    """Each store as a ledger that has held its objects a while: its statistics gathered,
    and on PostgreSQL vacuumed (autovacuum does so within a minute of a large insert; left to
    itself it would run during some rounds and not others)."""
    with sqlite3.connect(sqlite_path) as lite:
        lite.execute("ANALYZE")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE entries")


def poll_seconds(ledger: Ledger, pages: Sequence[Page]) -> float:
    """The time of merging every page once more (nothing new: reads only)."""
    started = time.perf_counter()
    for page in pages:
        ledger.record_page(
            "chat", "bucket", page, new_state=State.PENDING, on_change="resubmit", now=NOW
        )
    return time.perf_counter() - started


def poll_medians(lite: Ledger, pg: Ledger, pages: Sequence[Page], rounds: int = 9) -> list[float]:
    """The median poll time of each store, the two taken in turn (a first round each to warm
    up, not counted): a busy spell of the machine falls on both, not on one."""
    times: list[list[float]] = [[], []]
    for round_number in range(rounds + 1):
        for index, ledger in enumerate((lite, pg)):
            seconds = poll_seconds(ledger, pages)
            if round_number:
                times[index].append(seconds)
    return [statistics.median(each) for each in times]


def claim_rate(ledger: Ledger, count: int, workers: int = 8) -> float:
    ledger.add_objects(
        "chat",
        "bucket",
        [(Listed(f"c{n:06d}", "e", 1), State.PENDING, None) for n in range(count)],
        NOW,
    )
    claimed = [0] * workers
    start = threading.Barrier(workers + 1)

    def work(index: int) -> None:
        start.wait()
        while ledger.claim_due(1, NOW, node=f"w{index}"):
            claimed[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if sum(claimed) != count:
        raise RuntimeError(f"claimed {sum(claimed)} of {count}")
    return count / seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--parts", default="replicas,poll,claims")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--cap-qps", type=float, default=50.0)
    parser.add_argument("--known", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=5000)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    header("scale with replicas", vars(args))
    ok = True
    postgres = PostgresServer()
    postgres.start()
    try:
        with tempfile.TemporaryDirectory(prefix="dropzone-scale-") as folder:
            work = Path(folder)
            if "replicas" in parts:
                with MotoS3({}) as moto:
                    rates = {
                        n: replica_rate(
                            n, args.files, postgres, moto.endpoint, args.latency_ms, work
                        )
                        for n in (1, 2, 3)
                    }
                    capped = replica_rate(
                        3, args.files, postgres, moto.endpoint, args.latency_ms, work, args.cap_qps
                    )
                rows = [("replicas", "files/s", "x one", "bar (0.8 x N)", "")]
                for n, rate in rates.items():
                    passed = rate >= 0.8 * n * rates[1]
                    ok = ok and passed
                    rows.append(
                        (
                            str(n),
                            f"{rate:.1f}",
                            f"{rate / rates[1]:.2f}",
                            f"{0.8 * n:.1f}",
                            verdict(passed),
                        )
                    )
                print(table(rows))
                held = capped <= args.cap_qps * (1 + CAP_TOLERANCE)
                ok = ok and held
                print(
                    f"3 replicas, max_requests_per_second = {args.cap_qps:g} (split by live"
                    f" nodes): {capped:.1f} files/s, the cap held within 5%: {verdict(held)}"
                )
            if "poll" in parts:
                pg_url = postgres.new_database()
                with (
                    SqliteLedger.open(work / "poll.sqlite3") as lite,
                    PostgresLedger.open(pg_url) as pg,
                ):
                    pages = _fill(lite, args.known)
                    _fill(pg, args.known)
                    _settle(work / "poll.sqlite3", pg_url)
                    lite_s, pg_s = poll_medians(lite, pg, pages)
                passed = pg_s <= 1.5 * lite_s
                ok = ok and passed
                print(
                    table(
                        [
                            ("store", f"poll of {args.known} known (s)", "x SQLite", ""),
                            ("sqlite", f"{lite_s:.3f}", "1.00", ""),
                            (
                                "postgresql",
                                f"{pg_s:.3f}",
                                f"{pg_s / lite_s:.2f}",
                                verdict(passed) + " (bar 1.5)",
                            ),
                        ]
                    )
                )
            if "claims" in parts:
                with SqliteLedger.open(work / "claims.sqlite3") as lite:
                    lite_rate = claim_rate(lite, args.claims)
                with PostgresLedger.open(postgres.new_database()) as pg:
                    pg_rate = claim_rate(pg, args.claims)
                print(
                    table(
                        [
                            ("store", "claims/s (8 workers)"),
                            ("sqlite", f"{lite_rate:.0f}"),
                            ("postgresql", f"{pg_rate:.0f}"),
                        ]
                    )
                )
    finally:
        postgres.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
