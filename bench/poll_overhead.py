"""Poll overhead: one dropzone poll cycle against a bare boto3 listing of the same prefix.

    python bench/poll_overhead.py [--objects 20000] [--repeats 7] [--diff-keys 1000000]
                                  [--servers moto,synthetic]

Part 1. An S3 server on 127.0.0.1 (port 0) holds ``--objects`` objects under one prefix. A real
on-disk SQLite ledger is filled by a first poll (``skip-existing``: every object becomes
``baseline``); from then on every object is already known. After a warm-up, each repeat
times, side by side and in rotating order:

- bare: a boto3 ``list_objects_v2`` paginator (1,000 keys a page) reading every page, on a
  plain ``boto3.client("s3")`` (the baseline: what a hand-written lister would use);
- like for like: the same paginator on plain boto3 given the timestamp parser dropzone's
  client uses (``datetime.fromisoformat`` instead of dateutil) and nothing else;
- dropzone: ``BucketWatch.poll()`` over ``TosBucket.pages`` and the ledger (the daemon's poll).

Two servers, in turn: ``moto`` (the issue's setup: ThreadedMotoServer, in a child process)
and ``synthetic`` (``common.SyntheticListing``, a minimal endpoint that computes its pages).
moto is slow and noisy (it sorts the whole bucket for every page: about 0.4 s a page at
20,000 objects), so the same poll costs far less in relative terms there; the synthetic server
answers in a few ms, so dropzone's share is at its largest there.

The figures: the medians, their ratio, and the median of the paired ratios (each poll against
the bare run beside it: robust to the drift of a shared machine). The verdict uses the paired
ratio against plain boto3 (goal: 1.10x or less); the ratio against the like-for-like listing
is printed too. Each one's CPU is the calling thread's (``time.thread_time``: botocore lists
on it, and the synthetic server's threads are not counted); the CPU verdict is the paired
like-for-like ratio (issue 17: 1.10x or less).
dropzone's own work is timed apart: a poll over pages listed beforehand (no network at all).

Part 2. In-process ledger, ``--diff-keys`` keys on a real ledger file, 1,000 keys a page:
the first listing (``record_page`` inserting every key as ``baseline``; goal: 100,000 keys/s
or more), then the steady-state diff (``record_page`` over pages of known keys; goal: 400,000
keys/s or more at 1,000,000 keys). Only the ``Page(...)`` and ``record_page`` calls are timed;
making the keys is not. Each rate is also given per CPU second of the calling thread, which a
busy machine does not distort as it does wall time; the verdicts use wall time. ``--busy N``
starts N CPU burners for the whole run: the busy machine the figures must hold on too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common import (
    PREFIX,
    MotoS3,
    SyntheticListing,
    bare_s3_client,
    cpu_burners,
    header,
    median,
    quiet_logs,
    s3_client,
    synthetic_etag,
    table,
    tmp_root,
    verdict,
    watch_rule,
)

from dropzone.ledger import Listed, Page, SqliteLedger, State
from dropzone.sources.s3_parsing import fast_timestamp
from dropzone.sources.tos import TosBucket
from dropzone.watches.bucket import BucketWatch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mypy_boto3_s3 import S3Client

    from dropzone.sources.base import ListingPage

BUCKET = "bench-poll"
POLL_GOAL = 1.10
CPU_GOAL = 1.10  # issue 17: a poll's CPU against the like-for-like paginate
SERVERS = {
    "moto": "moto's S3 server (ThreadedMotoServer, 127.0.0.1, port 0, a child process)",
    "synthetic": "a minimal S3 listing endpoint over computed objects (this process): "
    "a fast server, so dropzone's share of the time is at its largest",
}
DIFF_GOAL = 400_000.0
FIRST_LISTING_GOAL = 100_000.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def bare_listing(client: S3Client, bucket: str) -> tuple[float, float, int]:
    """(wall s, CPU s of this thread, objects): the listing runs on the calling thread, so
    its CPU is the thread's, whatever a server in this process spends meanwhile."""
    started, cpu = time.perf_counter(), time.thread_time()
    count = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(
        Bucket=bucket, Prefix=PREFIX, PaginationConfig={"PageSize": 1000}
    ):
        count += len(page.get("Contents", ()))
    return time.perf_counter() - started, time.thread_time() - cpu, count


def timed_poll(poller: BucketWatch) -> tuple[float, float, int]:
    started, cpu = time.perf_counter(), time.thread_time()
    result = poller.poll()
    elapsed, spent = time.perf_counter() - started, time.thread_time() - cpu
    if result.new or result.baseline:
        raise RuntimeError(f"a poll of known objects recorded something: {result}")
    return elapsed, spent, result.objects


def s3_server(kind: str, objects: int) -> MotoS3 | SyntheticListing:
    if kind == "moto":
        return MotoS3({BUCKET: objects})
    return SyntheticListing(BUCKET, objects)


def poll_overhead(kind: str, objects: int, repeats: int, folder: Path) -> None:
    started = time.perf_counter()
    print()
    print(f"-- {kind}: {SERVERS[kind]}")
    with s3_server(kind, objects) as server:
        print(f"server up with {objects} objects in {time.perf_counter() - started:.1f} s")
        # The baseline: boto3 as a hand-written lister would use it. Beside it, for the
        # like-for-like figure, the same with dropzone's timestamp parser (no dateutil).
        clients = {
            "bare": bare_s3_client(server.endpoint),
            "tuned": bare_s3_client(server.endpoint, fast_timestamp),
        }
        bucket = TosBucket(s3_client(server.endpoint), BUCKET)
        rule = watch_rule(bucket=BUCKET, on_start="skip-existing")
        with SqliteLedger.open(folder / f"poll-{kind}.sqlite3") as ledger:
            poller = BucketWatch(rule, bucket.pages, ledger, utc_now)
            started = time.perf_counter()
            first = poller.poll()
            first_s = time.perf_counter() - started
            print(f"first poll (records {first.baseline} as baseline): {first_s:.2f} s")
            # Warm-up: connections, caches, the ledger's pages.
            for client in clients.values():
                bare_listing(client, BUCKET)
            timed_poll(poller)
            times: dict[str, list[float]] = {"bare": [], "tuned": [], "dz": []}
            cpus: dict[str, list[float]] = {"bare": [], "tuned": [], "dz": []}
            for repeat in range(repeats):
                order = list(times)[repeat % 3 :] + list(times)[: repeat % 3]
                for which in order:
                    if which == "dz":
                        seconds, cpu, count = timed_poll(poller)
                    else:
                        seconds, cpu, count = bare_listing(clients[which], BUCKET)
                    times[which].append(seconds)
                    cpus[which].append(cpu)
                    if count != objects:
                        raise RuntimeError(f"{which} listed {count} objects, not {objects}")
                print(
                    f"  repeat {repeat + 1}: bare {times['bare'][-1]:.3f} s, "
                    f"like for like {times['tuned'][-1]:.3f} s, "
                    f"dropzone {times['dz'][-1]:.3f} s"
                )
                sys.stdout.flush()
            listed = list(bucket.pages(PREFIX))
            offline = BucketWatch(rule, _replay(listed), ledger, utc_now)
            timed_poll(offline)
            offline_s = median([timed_poll(offline)[0] for _ in range(max(3, repeats))])
    bare, tuned, dz = (median(times[which]) for which in ("bare", "tuned", "dz"))
    ratio = dz / bare
    paired = median([d / b for d, b in zip(times["dz"], times["bare"], strict=True)])
    like = median([d / t for d, t in zip(times["dz"], times["tuned"], strict=True)])
    cpu_like = median([d / t for d, t in zip(cpus["dz"], cpus["tuned"], strict=True)])
    cpu_medians = ", ".join(
        f"{label} {median(cpus[which]):.3f} s"
        for which, label in (("bare", "bare"), ("tuned", "like for like"), ("dz", "dropzone"))
    )
    cpu_bare = median([d / t for d, t in zip(cpus["dz"], cpus["bare"], strict=True)])
    print()
    print(
        table(
            [
                ("figure", "value"),
                ("bare boto3 listing, median", f"{bare:.3f} s  ({objects / bare:,.0f} objects/s)"),
                (
                    "same, boto3 with dropzone's timestamp parser, median",
                    f"{tuned:.3f} s  ({objects / tuned:,.0f} objects/s)",
                ),
                ("dropzone poll, median", f"{dz:.3f} s  ({objects / dz:,.0f} objects/s)"),
                ("ratio of the medians", f"{ratio:.3f}x"),
                ("median of paired ratios", f"{paired:.3f}x  (each poll / the bare run beside it)"),
                (
                    "like for like",
                    f"{like:.3f}x  (each poll / the like-for-like listing beside it)",
                ),
                (
                    "CPU (this thread), medians",
                    cpu_medians,
                ),
                ("CPU, paired, against the bare listing", f"{cpu_bare:.3f}x"),
                (
                    "CPU, paired, like for like",
                    f"{cpu_like:.3f}x (goal <= {CPU_GOAL:.2f}x): {verdict(cpu_like <= CPU_GOAL)}",
                ),
                (
                    "dropzone's own work (pages listed beforehand)",
                    (
                        f"{offline_s:.3f} s  ({offline_s / len(listed) * 1000:.2f} ms a page, "
                        f"{offline_s / bare:.1%} of the bare listing)"
                    ),
                ),
                (
                    f"poll overhead ({kind})",
                    f"{paired:.3f}x (goal <= {POLL_GOAL:.2f}x): {verdict(paired <= POLL_GOAL)}",
                ),
            ]
        )
    )


def _replay(pages: list[ListingPage]) -> Callable[[str], Iterator[ListingPage]]:
    def replay(prefix: str) -> Iterator[ListingPage]:
        del prefix
        return iter(pages)

    return replay


def _page_items(start: int, size: int) -> list[Listed]:
    return [
        Listed(f"{PREFIX}{number:07d}.jsonl", synthetic_etag(number), 100)
        for number in range(start, start + size)
    ]


def _record_all(
    ledger: SqliteLedger, keys: int, page_size: int, state: State
) -> tuple[float, float, int]:
    """``record_page`` over every page; returns the seconds inside the calls, their CPU
    seconds and the count of versions they recorded."""
    spent = cpu = 0.0
    recorded = 0
    after: str | None = None
    for start in range(0, keys, page_size):
        listed = _page_items(start, min(page_size, keys - start))
        last = start + len(listed) >= keys
        began, began_cpu = time.perf_counter(), time.thread_time()
        page = Page(listed, after=after, through=None if last else listed[-1].key)
        created = ledger.record_page(
            "chat", "bench-diff", page, new_state=state, on_change="resubmit", now=utc_now()
        )
        spent += time.perf_counter() - began
        cpu += time.thread_time() - began_cpu
        recorded += created.count
        after = listed[-1].key
    return spent, cpu, recorded


def ledger_diff(keys: int, page_size: int, folder: Path) -> None:
    path = folder / "diff.sqlite3"
    with SqliteLedger.open(path) as ledger:
        ledger.begin_watch("chat", "bench-diff", PREFIX, utc_now())
        insert_s, insert_cpu_s, inserted = _record_all(ledger, keys, page_size, State.BASELINE)
        if inserted != keys:
            raise RuntimeError(f"the first listing recorded {inserted} entries, not {keys}")
        ledger.mark_baseline_done("chat")
        known_s, known_cpu_s, recorded = _record_all(ledger, keys, page_size, State.PENDING)
        if recorded:
            raise RuntimeError(f"a listing of known keys recorded {recorded} entries")
    size_mib = path.stat().st_size / 1024**2
    rate, insert_rate = keys / known_s, keys / insert_s
    print()
    print(
        table(
            [
                ("figure", "value"),
                ("ledger file", f"{size_mib:.0f} MiB, {keys:,} entries"),
                (
                    "first listing (inserts)",
                    f"{insert_s:.2f} s, {insert_cpu_s:.2f} s CPU",
                ),
                (
                    "first listing rate",
                    (
                        f"{insert_rate:,.0f} keys/s, {keys / insert_cpu_s:,.0f} keys/CPU s"
                        f"  (goal >= {FIRST_LISTING_GOAL:,.0f})"
                    ),
                ),
                ("first listing", verdict(insert_rate >= FIRST_LISTING_GOAL)),
                (
                    "known keys (record_page)",
                    (
                        f"{known_s:.2f} s, {known_cpu_s:.2f} s CPU"
                        f"  ({known_s / (keys / page_size) * 1000:.2f} ms a page)"
                    ),
                ),
                (
                    "diff rate",
                    (
                        f"{rate:,.0f} keys/s, {keys / known_cpu_s:,.0f} keys/CPU s"
                        f"  (goal >= {DIFF_GOAL:,.0f})"
                    ),
                ),
                ("ledger diff", verdict(rate >= DIFF_GOAL)),
            ]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000, help="objects listed (20000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each (7)")
    parser.add_argument("--diff-keys", type=int, default=1_000_000, help="ledger keys (1000000)")
    parser.add_argument("--page-size", type=int, default=1000, help="diff page size (1000)")
    parser.add_argument(
        "--servers", default="moto,synthetic", help="S3 servers to list: moto,synthetic"
    )
    parser.add_argument("--skip-poll", action="store_true", help="only the ledger diff")
    parser.add_argument("--skip-diff", action="store_true", help="only the poll")
    parser.add_argument("--busy", type=int, default=0, help="CPU burners to run alongside")
    args = parser.parse_args(argv)
    header("poll overhead", vars(args))
    quiet_logs()
    with (
        cpu_burners(args.busy),
        tempfile.TemporaryDirectory(prefix="dropzone-bench-", dir=tmp_root()) as tmp,
    ):
        for kind in [] if args.skip_poll else args.servers.split(","):
            poll_overhead(kind, args.objects, args.repeats, Path(tmp))
        if not args.skip_diff:
            ledger_diff(args.diff_keys, args.page_size, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
