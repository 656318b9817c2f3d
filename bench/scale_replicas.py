"""Scale with replicas: submissions by N daemons on one PostgreSQL ledger, and the store's costs.

    python bench/scale_replicas.py [--parts replicas,poll,claims] [--files 300]
                                   [--latency-ms 100] [--known 100000] [--claims 5000]

The PostgreSQL server is a throwaway cluster (``tests/postgres_server.py``), started here.

Part ``replicas``. The Ark emulator in a child process (a core of its own, like a remote
service) adds ``--latency-ms`` (100) to every call; jobs stay queued, so the guard never
answers. For N = 1, 2, 3: a new database, N ``dropzone run`` processes on it (``concurrency``
4 each, a QPS cap far above what they reach), all live before the files come; then
``--files`` objects are put into the bucket at once, and the time from the first job to the
last is measured by watching the emulator's jobs (every 50 ms). The rate is files / that
time. The bar: N replicas reach at least 0.8 x N x one replica's rate (one replica's rate is
bounded by its workers and the latency: replicas add up until the cap or the CPU stops them).

Part ``poll``. What a poll of ``--known`` (100,000) objects the ledger knows already costs in the
store: ``record_page`` over pages of 1,000 known keys (the poll's ledger side; the listing
itself is the same bytes from S3 whatever the store), on an SQLite file and on PostgreSQL.
The bar: PostgreSQL costs at most 1.5 x SQLite.

Part ``claims``. The store alone: 8 threads sharing one ledger (the daemon's shape) claim
``--claims`` pending entries one by one (``claim_due(1)``, each a transaction), on SQLite and on
PostgreSQL; claims per second.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
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


def _config(path: Path, *, emulator: str, s3: str, url: str, bucket: str) -> Path:
    document = {
        "ark": {"endpoint": emulator, "max_requests_per_second": 10_000, "timeout_s": 30},
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


def replica_rate(
    replicas: int, files: int, postgres: PostgresServer, s3: str, latency_ms: int, work: Path
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
            work / f"n{replicas}.toml", emulator=emulator.url, s3=s3, url=url, bucket=bucket
        )
        PostgresLedger.open(url).close()  # the tables, before the daemons race to make them
        daemons: list[subprocess.Popen[bytes]] = []
        try:
            for number in range(replicas):
                log = (work / f"n{replicas}-{number}.log").open("wb")
                daemons.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "dropzone", "run"],
                        env=child_env(config),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait(lambda: _live_nodes(url) == replicas, 60, f"{replicas} live nodes")
            for number in range(files):
                client.put_object(Bucket=bucket, Key=f"{PREFIX}f{number:05d}.jsonl", Body=b"{}\n")
            # The jobs' CreateTime has whole seconds: the emulator is watched instead.
            first = last = None
            deadline = time.monotonic() + 600
            while last is None and time.monotonic() < deadline:
                made = len(emulator.state()["jobs"])
                now = time.monotonic()
                if made and first is None:
                    first = now
                if made >= files:
                    last = now
                time.sleep(0.05)
            if first is None or last is None:
                raise RuntimeError("timed out waiting for every file's job")
        finally:
            for daemon in daemons:
                daemon.terminate()
            for daemon in daemons:
                daemon.wait(60)
    return (files - 1) / max(1e-6, last - first)


def _fill(ledger: Ledger, known: int) -> list[Page]:
    pages = []
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


def poll_seconds(ledger: Ledger, pages: Sequence[Page], repeats: int = 5) -> float:
    """The median time of merging every page once more (nothing new: reads only)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for page in pages:
            ledger.record_page(
                "chat", "bucket", page, new_state=State.PENDING, on_change="resubmit", now=NOW
            )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


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
            if "poll" in parts:
                with SqliteLedger.open(work / "poll.sqlite3") as lite:
                    pages = _fill(lite, args.known)
                    lite_s = poll_seconds(lite, pages)
                with PostgresLedger.open(postgres.new_database()) as pg:
                    _fill(pg, args.known)
                    pg_s = poll_seconds(pg, pages)
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
