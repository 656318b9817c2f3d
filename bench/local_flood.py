"""A flood of files into a watched folder: how fast they all reach the ledger.

    python bench/local_flood.py [--files 50000] [--mode mounted|upload] [--max-active-jobs N]
                                [--goal-per-s 2000]

A real daemon (``python -m dropzone run``, a child process) watches a local folder with
``settle_s = 0.5``; the Ark emulator runs in this process with jobs that stay Queued for an hour
(the guard never fires), at the product's default API cap (5 calls/s), so almost every file
is still `pending` when it is counted: what is measured is ingestion, not submission. Once the
daemon says it is ready, ``--files`` small files are written into the folder as fast as this
process can (past the kernel's inotify queue, 16,384 events by default, at 50,000), and the
ledger is read (read-only, every 0.25 s) until it holds an entry for every file.

The figure: files / seconds from the first write to the moment the last entry was seen. The
bar (issue 12): at least 2,000 files/s, with ``--max-active-jobs 1`` as without.

``--mode mounted`` (the default) records each file as its own object, no S3 call; ``upload``
puts each into moto first, so it measures moto as much as dropzone.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import (
    PREFIX,
    MotoS3,
    header,
    spawn_daemon,
    start_emulator,
    table,
    verdict,
    write_config,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Sequence

BUCKET = "bench-flood"
BODY = b'{"custom_id": "r1", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
READY_TIMEOUT_S = 120.0


def ledger_count(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def wait_ready(process: subprocess.Popen[str]) -> list[str]:
    """Read the daemon's log until `daemon.ready`; returns the lines read."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    for line in process.stdout:
        lines.append(line)
        if '"daemon.ready"' in line:
            return lines
        if time.monotonic() > deadline:
            break
    raise RuntimeError("the daemon did not get ready:\n" + "".join(lines[-20:]))


def drain(process: subprocess.Popen[str], into: list[str]) -> threading.Thread:
    def read() -> None:
        assert process.stdout is not None
        into.extend(process.stdout)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def flood(args: argparse.Namespace, tmp: Path, s3_endpoint: str) -> dict[str, float]:
    inbox = tmp / "inbox"
    inbox.mkdir()
    ledger = tmp / "ledger.sqlite3"
    watch: dict[str, object] = {
        "name": "flood",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "model": {"name": "doubao-pro-32k", "version": "240615"},
        "local_dir": str(inbox),
        "local_mode": args.mode,
        # Long enough that a file caught by a rescan half-written is not taken as a version.
        "settle_s": 0.5,
        "on_start": "submit-existing",
    }
    if args.max_active_jobs is not None:
        watch["max_active_jobs"] = args.max_active_jobs
    with start_emulator(latency_ms=0, in_process=True) as ark:
        config = write_config(
            tmp / "dropzone.toml",
            ark={"endpoint": ark.url},
            tos_endpoint=s3_endpoint,
            ledger=ledger,
            daemon={"poll_interval_s": args.poll_interval_s, "listen": ""},
            watch=watch,
        )
        daemon = spawn_daemon(config)
        lines: list[str] = []
        try:
            lines += wait_ready(daemon)
            reader = drain(daemon, lines)
            started = time.monotonic()
            for number in range(args.files):
                (inbox / f"f{number:06d}.jsonl").write_bytes(BODY)
            written_s = time.monotonic() - started
            deadline = started + args.timeout_s
            count = 0
            while time.monotonic() < deadline:
                count = ledger_count(ledger)
                if count >= args.files:
                    break
                time.sleep(0.25)
            elapsed = time.monotonic() - started
        finally:
            daemon.terminate()
            daemon.wait(120)
        reader.join(10)
    problems = [line for line in lines if '"level": "error"' in line or "Traceback" in line]
    overflows = sum('"local.events_overflowed"' in line for line in lines)
    return {
        "recorded": count,
        "written_s": written_s,
        "elapsed_s": elapsed,
        "per_s": count / elapsed if elapsed else 0.0,
        "errors": len(problems),
        "overflow_lines": overflows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--mode", choices=("mounted", "upload"), default="mounted")
    parser.add_argument("--max-active-jobs", type=int, default=None)
    parser.add_argument("--poll-interval-s", type=float, default=30.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--goal-per-s", type=float, default=2000.0)
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args(argv)
    header("local flood", vars(args))
    with tempfile.TemporaryDirectory(prefix="dropzone-flood-") as tmp, MotoS3({BUCKET: 0}) as moto:
        result = flood(args, Path(tmp), moto.endpoint)
    complete = result["recorded"] >= args.files
    ok = complete and result["per_s"] >= args.goal_per_s and result["errors"] == 0
    print(
        table(
            [
                ("files", "recorded", "written in", "all in ledger after", "files/s", "verdict"),
                (
                    str(args.files),
                    str(int(result["recorded"])),
                    f"{result['written_s']:.1f} s",
                    f"{result['elapsed_s']:.1f} s",
                    f"{result['per_s']:.0f}",
                    verdict(ok),
                ),
            ]
        )
    )
    print(f"error lines {int(result['errors'])}, overflow lines {int(result['overflow_lines'])}")
    if args.json_path is not None:
        args.json_path.write_text(json.dumps({**vars(args), **result}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
