"""Memory: peak RSS of the real daemon with a large ledger against a small one.

    python bench/memory.py [--entries 1000000] [--small 1000] [--modes daemon,once,status]

For each size N (``--small``, then ``--entries``) the benchmark builds a ledger of N entries
and a bucket listing of the same N objects, then runs the real command line in a child process
and reads that process's peak RSS from ``os.wait4`` (``ru_maxrss`` of that child alone).

The ledger: created and migrated by ``SqliteLedger.open``, its watch begun and its baseline
marked done through the same API; then the N entries are inserted with direct SQL
(``executemany``, one transaction; ``record_page`` would take minutes for a million). Each
entry is ``submitted`` with a job ID; 99% are ``Completed``, the newest 1% ``Running``, so job
tracking has work (capped by the product at 5,000 entries a round).

The listing: a synthetic S3 endpoint in this process (ListObjectsV2 and HEAD over computed
objects, one per entry, same keys and ETags; see ``common.SyntheticListing``): moto can
neither hold nor list a million objects in reasonable time. The Ark emulator (in this process)
answers the tracking calls.

Modes (each a child process):

- ``daemon``: ``dropzone run`` with metrics on 127.0.0.1:0 and ``track_interval_s = 1``; once
  its first poll has completed (every page merged into the ledger), it runs ``--settle-s``
  more seconds (tracking rounds, ops ticks with ledger counts), then SIGTERM;
- ``once``: ``dropzone run --once`` (a poll of the whole listing, reconciliation, exit);
- ``status``: ``dropzone status --json`` (every entry streamed out, to /dev/null).

Goal: the daemon's peak RSS with the large ledger is at most 1.25x the small one's, and under
150 MB (MiB here).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from common import (
    BODY,
    PREFIX,
    SyntheticListing,
    child_env,
    header,
    start_emulator,
    synthetic_etag,
    table,
    tmp_root,
    verdict,
    write_config,
)

from dropzone.ledger import SqliteLedger

if TYPE_CHECKING:
    from collections.abc import Iterator

BUCKET = "bench-memory"
RATIO_GOAL = 1.25
LIMIT_MIB = 150.0
MODES = ("daemon", "once", "status")
_INSERT = (
    "INSERT INTO entries (watch, bucket, key, etag, size, state, attempts, job_id, phase,"
    " output_dir, input_tag, requests_total, requests_completed, requests_failed,"
    " first_seen_at, updated_at, claimed_at) VALUES (?, ?, ?, ?, ?, 'submitted', 1, ?, ?, ?, ?,"
    " 10, ?, 0, ?, ?, ?)"
)


def _rows(count: int, stamp: str) -> Iterator[tuple[object, ...]]:
    running_from = count - max(1, count // 100)
    for number in range(count):
        running = number >= running_from
        yield (
            "chat",
            BUCKET,
            f"{PREFIX}{number:07d}.jsonl",
            synthetic_etag(number),
            len(BODY),
            f"bi-20260101000000-{number:07d}",
            "Running" if running else "Completed",
            f"batch-inference-job/output/{number:07d}/",
            synthetic_etag(-number),
            5 if running else 10,
            stamp,
            stamp,
            stamp,
        )


def build_ledger(path: Path, count: int) -> float:
    """The ledger file of ``count`` submitted entries; returns the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    with SqliteLedger.open(path) as ledger:
        ledger.begin_watch("chat", BUCKET, PREFIX, now)
        ledger.mark_baseline_done("chat")
    stamp = now.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a bulk build; the file is checked below
        conn.execute("BEGIN")
        conn.executemany(_INSERT, _rows(count, stamp))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        found = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        conn.close()
    if found != count:
        raise RuntimeError(f"the ledger holds {found} entries, not {count}")
    return time.perf_counter() - started


class Child:
    """A dropzone child process whose output is read (and kept short) on a thread."""

    def __init__(self, args: list[str], config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dropzone", *args, "--log-format", "json"],
            env=child_env(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = 0
        self.events: list[dict[str, object]] = []
        self._seen = threading.Condition()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._seen:
                self.lines += 1
                if line.startswith('{"') and '"event"' in line:
                    event = json.loads(line)
                    if event.get("level") != "info" or event.get("event") in {
                        "poll.completed",
                        "daemon.ready",
                    }:
                        self.events.append(event)
                self._seen.notify_all()

    def wait_for(self, name: str, timeout: float) -> bool:
        with self._seen:
            return self._seen.wait_for(
                lambda: any(e.get("event") == name for e in self.events), timeout
            )

    def finish(self) -> tuple[int, float]:
        """Reap the child: its exit code and its peak RSS in MiB (its own, from wait4)."""
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self._reader.join()
        return self.process.returncode, usage.ru_maxrss / 1024

    def problems(self) -> list[str]:
        return [
            f"{e.get('event')}: {e.get('error', '')}"
            for e in self.events
            if e.get("level") in {"warning", "error"}
        ]


def run_mode(mode: str, config: Path, settle_s: float) -> tuple[float, float, str]:
    """(peak RSS MiB, seconds, note) of one child process in ``mode``."""
    started = time.perf_counter()
    if mode == "daemon":
        # The ledger already holds every object: the poll finds nothing new and says so at debug.
        child = Child(["run", "--log-level", "debug"], config)
        if not child.wait_for("poll.completed", 1800):
            child.process.kill()
            child.finish()
            raise RuntimeError("the daemon never completed a poll: " + "; ".join(child.problems()))
        poll = next(e for e in child.events if e.get("event") == "poll.completed")
        time.sleep(settle_s)
        child.process.send_signal(signal.SIGTERM)
        note = f"poll of {poll.get('objects')} objects took {poll.get('duration_s')} s"
    elif mode == "once":
        child = Child(["run", "--once"], config)
        note = ""
    else:
        child = Child(["status", "--json"], config)
        note = ""
    code, rss = child.finish()
    elapsed = time.perf_counter() - started
    if mode == "status":
        note = f"{child.lines} lines"
    if code != 0:
        raise RuntimeError(f"{mode} exited {code}: " + "; ".join(child.problems()))
    return rss, elapsed, note


def measure(size: int, modes: list[str], settle_s: float, folder: Path) -> dict[str, float]:
    ledger = folder / f"ledger-{size}.sqlite3"
    built_s = build_ledger(ledger, size)
    mib = ledger.stat().st_size / 1024**2
    print(f"ledger of {size:,} entries: {mib:.0f} MiB, built in {built_s:.1f} s")
    peaks: dict[str, float] = {}
    with (
        SyntheticListing(BUCKET, size) as listing,
        start_emulator(latency_ms=0, in_process=True) as ark,
    ):
        config = write_config(
            folder / f"dropzone-{size}.toml",
            ark={"endpoint": ark.url, "max_requests_per_second": 1000},
            tos_endpoint=listing.endpoint,
            ledger=ledger,
            daemon={
                "poll_interval_s": 3600,
                "track_interval_s": 1,
                "listen": "127.0.0.1:0",
                "once_max_wait_s": 60,
            },
            watch={
                "name": "chat",
                "bucket": BUCKET,
                "prefix": PREFIX,
                "model": {"name": "doubao-pro-32k", "version": "240615"},
                "min_age_s": 0,
            },
        )
        for mode in modes:
            rss, seconds, note = run_mode(mode, config, settle_s)
            peaks[mode] = rss
            print(
                f"  {mode:7} {size:>9,} entries: peak RSS {rss:6.1f} MiB  ({seconds:.1f} s) {note}"
            )
            sys.stdout.flush()
    return peaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="large ledger (1000000)")
    parser.add_argument("--small", type=int, default=1000, help="small ledger (1000)")
    parser.add_argument("--modes", default="daemon,once,status", help="daemon,once,status")
    parser.add_argument("--settle-s", type=float, default=5.0, help="daemon after its poll (5)")
    args = parser.parse_args(argv)
    modes = [mode for mode in args.modes.split(",") if mode]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes: {', '.join(unknown)}")
    header("memory", vars(args))
    with tempfile.TemporaryDirectory(prefix="dropzone-bench-", dir=tmp_root()) as tmp:
        small = measure(args.small, modes, args.settle_s, Path(tmp))
        large = measure(args.entries, modes, args.settle_s, Path(tmp))
    rows: list[tuple[str, ...]] = [
        ("process", f"{args.small:,} entries", f"{args.entries:,} entries", "ratio"),
        *(
            (
                mode,
                f"{small[mode]:.1f} MiB",
                f"{large[mode]:.1f} MiB",
                f"{large[mode] / small[mode]:.3f}x",
            )
            for mode in modes
        ),
    ]
    print()
    print(table(rows))
    if "daemon" in modes:
        ratio = large["daemon"] / small["daemon"]
        ok = ratio <= RATIO_GOAL and large["daemon"] < LIMIT_MIB
        print(
            f"daemon: {ratio:.3f}x (goal <= {RATIO_GOAL}x) and {large['daemon']:.1f} MiB "
            f"(goal < {LIMIT_MIB:.0f}): {verdict(ok)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
