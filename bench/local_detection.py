"""Local detection latency: a file closed in a watched folder -> its Create call answered.

    python bench/local_detection.py [--files 200] [--mode upload|mounted]
                                    [--poll-interval-s 30] [--gap-s 0.25] [--jitter-s 0.25]

A real daemon (``python -m dropzone run``, a child process) watches a local folder with
``settle_s = 0``; everything else is the product's defaults (4 workers, a 5/s API cap, job
tracking every 60 s). In this process: the Ark emulator (no added latency); in another, moto's
S3 server (``upload`` mode's bucket).

- ``upload`` (the default): inotify reports the close; the daemon uploads the file to moto
  (HEAD, PUT, HEAD to verify), records the entry, wakes a worker, which HEADs the object and
  sends the Create.
- ``mounted``: the folder stands for a bucket mount; dropzone polls it (watchdog's polling
  observer and rescans, every ``--poll-interval-s``) and sends the Create with no S3 call.

Files are dropped one at a time (write + close); the next one goes ``--gap-s`` plus a random
0 to ``--jitter-s`` after the previous job was seen: the API cap never holds a Create back (at
5/s it spaces calls 200 ms apart), and drops do not fall into step with a polling cycle.

The method: the latency of a file is the timestamp of the daemon's ``job.submitted`` log line
for its key (structlog's UTC wall clock, microseconds) minus the wall clock read in this
process right after ``close()``. Both read the same system clock. ``job.submitted`` is logged
once the Create has been answered and the outcome committed to the ledger, so the figure is an
upper bound on "Create received by the emulator" (by one answer and one SQLite commit, a few
ms). Nothing polls the emulator meanwhile, so the measurement adds no load to the daemon's
path; the emulator's Create counts are checked at the end (exactly one per file).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from common import (
    BODY,
    PREFIX,
    MotoS3,
    header,
    percentile,
    quiet_logs,
    spawn_daemon,
    start_emulator,
    table,
    tmp_root,
    verdict,
    write_config,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

BUCKET = "bench-local"
P50_GOAL_MS = 100.0
P99_GOAL_MS = 500.0


class LogWatcher:
    """Reads the daemon's JSON log lines; remembers when each key's job was submitted."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._cond = threading.Condition()
        self.submitted: dict[str, float] = {}
        self.events: set[str] = set()
        self.problems: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            name = str(event.get("event"))
            with self._cond:
                self.events.add(name)
                if name == "job.submitted":
                    stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
                    self.submitted[event["key"]] = stamp
                elif event.get("level") in {"warning", "error"}:
                    self.problems.append(line.strip())
                self._cond.notify_all()

    def wait_event(self, name: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: name in self.events, timeout)

    def wait_submitted(self, key: str, timeout: float) -> float | None:
        with self._cond:
            self._cond.wait_for(lambda: key in self.submitted, timeout)
            return self.submitted.get(key)


def drop(folder: Path, name: str) -> float:
    """Write and close one file; returns the wall clock right after the close."""
    with (folder / name).open("wb") as file:
        file.write(BODY)
    return time.time()


def run(args: argparse.Namespace, s3_endpoint: str, tmp: Path) -> list[float]:
    inbox = tmp / "inbox"
    inbox.mkdir()
    with start_emulator(latency_ms=0, in_process=True) as ark:
        config = write_config(
            tmp / "dropzone.toml",
            ark={"endpoint": ark.url, "max_requests_per_second": args.qps},
            tos_endpoint=s3_endpoint,
            ledger=tmp / "ledger.sqlite3",
            daemon={"poll_interval_s": args.poll_interval_s, "listen": ""},
            watch={
                "name": "inbox",
                "bucket": BUCKET,
                "prefix": PREFIX,
                "model": {"name": "doubao-pro-32k", "version": "240615"},
                "local_dir": str(inbox),
                "local_mode": args.mode,
                "settle_s": 0,
            },
        )
        daemon = spawn_daemon(config)
        assert daemon.stdout is not None
        logs = LogWatcher(daemon.stdout)
        try:
            if not logs.wait_event("daemon.ready", 60):
                raise RuntimeError("the daemon did not become ready: " + "; ".join(logs.problems))
            latencies = _drop_all(args, inbox, logs)
            calls = ark.state()["create_calls"]
        finally:
            daemon.terminate()
            daemon.wait(30)
    expected = args.files + args.warmup
    if len(calls) != expected or set(calls.values()) != {1}:
        raise RuntimeError(f"expected one Create for each of {expected} files, got {calls}")
    return latencies


def _drop_all(args: argparse.Namespace, inbox: Path, logs: LogWatcher) -> list[float]:
    latencies: list[float] = []
    rng = random.Random(20261126)  # spacing, not cryptography
    for number in range(args.warmup + args.files):
        name = f"drop-{number:05d}.jsonl"
        closed = drop(inbox, name)
        seen = logs.wait_submitted(PREFIX + name, timeout=max(60.0, 3 * args.poll_interval_s))
        if seen is None:
            raise RuntimeError(f"no job for {name}: " + "; ".join(logs.problems[-3:]))
        if number >= args.warmup:
            latencies.append((seen - closed) * 1000)
        time.sleep(args.gap_s + rng.random() * args.jitter_s)
    return latencies


def report(args: argparse.Namespace, latencies: Sequence[float]) -> None:
    p50, p90, p99 = (percentile(latencies, q) for q in (50, 90, 99))
    ok = p50 <= P50_GOAL_MS and p99 <= P99_GOAL_MS
    print()
    print(
        table(
            [
                ("figure", "value"),
                ("mode", f"{args.mode} (settle_s = 0, poll_interval_s = {args.poll_interval_s:g})"),
                ("files", f"{len(latencies)} (after {args.warmup} warm-up)"),
                ("min", f"{min(latencies):.1f} ms"),
                ("p50", f"{p50:.1f} ms  (goal <= {P50_GOAL_MS:.0f})"),
                ("p90", f"{p90:.1f} ms"),
                ("p99", f"{p99:.1f} ms  (goal <= {P99_GOAL_MS:.0f})"),
                ("max", f"{max(latencies):.1f} ms"),
                ("local detection", verdict(ok)),
            ]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="files measured (200)")
    parser.add_argument("--warmup", type=int, default=3, help="files before measuring (3)")
    parser.add_argument("--mode", choices=("upload", "mounted"), default="upload")
    parser.add_argument("--poll-interval-s", type=float, default=30.0, help="rescans (30)")
    parser.add_argument("--gap-s", type=float, default=0.25, help="pause between files (0.25)")
    parser.add_argument(
        "--jitter-s", type=float, default=0.25, help="random extra pause, 0 to this (0.25)"
    )
    parser.add_argument("--qps", type=float, default=5.0, help="max_requests_per_second (5)")
    args = parser.parse_args(argv)
    header("local detection latency", vars(args))
    quiet_logs()
    with (
        MotoS3({BUCKET: 0}) as moto,
        tempfile.TemporaryDirectory(prefix="dropzone-bench-", dir=tmp_root()) as tmp,
    ):
        latencies = run(args, moto.endpoint, Path(tmp))
    report(args, latencies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
