"""Submission throughput: pending ledger entries -> Create calls, against a bare signed loop.

    python bench/submit_throughput.py [--jobs 2000] [--concurrency 8] [--latency-ms 20]
                                      [--repeats 3] [--cap-qps 50] [--cap-calls 300]
                                      [--emulator subprocess|inprocess]

The Ark emulator adds ``--latency-ms`` to every request. Each measurement gets a fresh
emulator (its job book grows with every Create) and, for dropzone, a fresh on-disk ledger
holding ``--jobs`` pending entries (recorded by ``record_page``, as a poll records new objects).
Timed, ``--repeats`` times each, alternating:

- bare: ``--concurrency`` threads sharing one httpx.Client; each builds a Create body, signs it
  with ``dropzone.ark.signer.request_headers`` and POSTs it; rate = jobs / seconds;
- bare with HEAD: the same loop, each thread HEADing its object on S3 (boto3) first: what a
  bucket watch cost when it looked every object up again before its Create (for reference);
- dropzone, bucket watch: the daemon as ``dropzone run --once`` builds it
  (``daemon.build.build_submitter``: Submitter, RetryPolicy, ArkClient with the metrics observer,
  ``concurrency`` workers) running ``Daemon.run_once()`` from pending to submitted. A bucket
  watch HEADs an object on S3 (moto, in a child process) before its Create only when the
  listing that recorded it is over 30 s old; these entries were listed moments before;
- dropzone, no lookup: the same daemon with the watch's object lookup off (what a mounted
  folder watch uses): the Create path alone;
- dropzone, workers only: ``concurrency`` plain threads looping ``ledger.claim_due(1)`` +
  ``Submitter.submit`` (no lookup), without the daemon's ``run_once`` loop.

``max_requests_per_second`` is 100,000 for these. The goal: dropzone's rate / bare rate >= 0.9.

Then the QPS cap: the daemon (no lookup) with ``max_requests_per_second = --cap-qps`` submits
``--cap-calls`` entries; the client's call observer stamps when each Create was sent. The
achieved rate is (calls - 1) / (last send - first send); goal: within 5% of the cap (and never
above it by more than 5% in any one-second window).

``--emulator subprocess`` (the default) runs the emulator in a child process, like a remote
service with a core of its own; ``inprocess`` shares this process's GIL with dropzone.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from common import (
    BODY,
    CREDENTIALS,
    PREFIX,
    MotoS3,
    header,
    median,
    object_keys,
    quiet_logs,
    s3_client,
    start_emulator,
    table,
    tmp_root,
    verdict,
    write_config,
)

from dropzone import runtime
from dropzone.ark import signer
from dropzone.ark.models import API_VERSION
from dropzone.config import load_settings
from dropzone.daemon import Daemon
from dropzone.daemon.build import build_submitter, daemon_options
from dropzone.daemon.parts import WatchSet
from dropzone.jobs.submitter import Submitter
from dropzone.jobs.watch import Watch
from dropzone.ledger import Listed, Page, SqliteLedger, State
from dropzone.ops import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

    from dropzone.config import Settings

BUCKET = "bench-submit"
RATIO_GOAL = 0.9
CAP_TOLERANCE = 0.05
UNCAPPED = 100_000.0
ETAG = hashlib.md5(BODY, usedforsecurity=False).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- bare ---------------------------------------------------------------------------------


def _bare_body(number: int) -> bytes:
    key = f"{PREFIX}{number:07d}.jsonl"
    document = {
        "Name": f"bare-{number}",
        "ModelReference": {"FoundationModel": {"Name": "doubao-pro-32k", "ModelVersion": "240615"}},
        "InputFileTosLocation": {"BucketName": BUCKET, "ObjectKey": key},
        "OutputDirTosLocation": {
            "BucketName": BUCKET,
            "ObjectKey": f"batch-inference-job/output/{number:07d}/",
        },
        "ProjectName": "default",
        "CompletionWindow": "1d",
        "Tags": [{"Key": "dropzone-input", "Value": f"bare-{number}"}],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def bare_run(url: str, jobs: int, concurrency: int, s3: S3Client | None = None) -> float:
    """Seconds for ``jobs`` signed Creates from ``concurrency`` threads (each after a HEAD
    of its object on ``s3``, when given)."""
    host = urlsplit(url).netloc
    query = (("Action", "CreateBatchInferenceJob"), ("Version", API_VERSION))
    numbers = itertools.count()
    failures: list[str] = []
    with httpx.Client(timeout=30) as http:

        def work() -> None:
            while (number := next(numbers)) < jobs:
                if s3 is not None:
                    s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}{number:07d}.jsonl")
                body = _bare_body(number)
                headers = signer.request_headers(
                    CREDENTIALS,
                    host=host,
                    query=query,
                    body=body,
                    now=utc_now(),
                    region="cn-beijing",
                    service="ark",
                )
                response = http.post(f"{url}/", params=query, headers=headers, content=body)
                result = response.json().get("Result") or {}
                if response.status_code != 200 or not result.get("Id"):
                    failures.append(response.text[:200])

        started = time.perf_counter()
        _run_threads(work, concurrency)
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} bare Creates failed, e.g. {failures[0]}")
    return elapsed


def _run_threads(target: Callable[[], None], count: int) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- dropzone -----------------------------------------------------------------------------


def settings_for(
    folder: Path, ark_url: str, s3_endpoint: str, qps: float, workers: int
) -> Settings:
    config = write_config(
        folder / "dropzone.toml",
        ark={"endpoint": ark_url, "max_requests_per_second": qps, "timeout_s": 30},
        tos_endpoint=s3_endpoint,
        ledger=folder / "ledger.sqlite3",
        daemon={
            "concurrency": workers,
            "track_interval_s": 0,
            "listen": "",
            "once_max_wait_s": 600,
        },
        watch={
            "name": "chat",
            "bucket": BUCKET,
            "prefix": PREFIX,
            "model": {"name": "doubao-pro-32k", "version": "240615"},
            "min_age_s": 0,
        },
    )
    return load_settings(config, {})


def prefill(ledger: SqliteLedger, jobs: int) -> None:
    """``jobs`` pending entries, recorded page by page as a poll records new objects."""
    ledger.begin_watch("chat", BUCKET, PREFIX, utc_now())
    ledger.mark_baseline_done("chat")
    keys = object_keys(jobs)
    after: str | None = None
    for start in range(0, jobs, 1000):
        chunk = keys[start : start + 1000]
        last = start + len(chunk) >= jobs
        listed = [Listed(key, ETAG, len(BODY)) for key in chunk]
        page = Page(listed, after=after, through=None if last else chunk[-1])
        ledger.record_page(
            "chat", BUCKET, page, new_state=State.PENDING, on_change="resubmit", now=utc_now()
        )
        after = chunk[-1]


class Stage:
    """One dropzone measurement's world: a fresh ledger, an Ark client, the daemon."""

    def __init__(
        self, settings: Settings, s3: S3Client, jobs: int, observer: Callable[..., None]
    ) -> None:
        self.settings = settings
        self.ledger = SqliteLedger.open(settings.ledger.path)
        prefill(self.ledger, jobs)
        self.api = runtime.ark_client(settings, CREDENTIALS, observer=observer)
        self.s3 = s3
        self.run_once_s = 0.0

    def daemon(self, *, lookup: bool) -> Daemon:
        submitter = build_submitter(self.settings, ledger=self.ledger, api=self.api, s3=self.s3)
        if not lookup:
            rule = self.settings.watches[0]
            submitter.replace_watches({rule.name: Watch(rule)})
        # No watches: the entries are pending already, so no listing in the measurement.
        return Daemon(
            ledger=self.ledger,
            watches=WatchSet(),
            submitter=submitter,
            options=daemon_options(self.settings),
            clock=utc_now,
        )

    def submitted(self) -> int:
        return self.ledger.counts()[State.SUBMITTED]

    def last_submitted(self) -> datetime:
        """When the last entry was recorded ``submitted`` (the ledger's own stamp)."""
        return max(entry.updated_at for entry in self.ledger.in_state(State.SUBMITTED))

    def close(self) -> None:
        self.api.close()
        self.ledger.close()


def run_daemon(stage: Stage, *, lookup: bool) -> float:
    """Seconds from ``run_once()`` starting to the last entry recorded ``submitted``."""
    daemon = stage.daemon(lookup=lookup)
    started = utc_now()
    began = time.perf_counter()
    code = daemon.run_once()
    stage.run_once_s = time.perf_counter() - began
    if code != 0:
        raise RuntimeError(f"run_once ended with {code}: {daemon.tally.outcomes}")
    return (stage.last_submitted() - started).total_seconds()


def run_workers(stage: Stage, concurrency: int) -> float:
    rule = stage.settings.watches[0]
    submitter = Submitter(
        ledger=stage.ledger, api=stage.api, watches={rule.name: Watch(rule)}, clock=utc_now
    )

    def work() -> None:
        while claimed := stage.ledger.claim_due(1, utc_now()):
            submitter.submit(claimed[0])

    started = utc_now()
    _run_threads(work, concurrency)
    return (stage.last_submitted() - started).total_seconds()


# --- the measurements ---------------------------------------------------------------------

VARIANTS = ("bare", "bare-head", "dz-bucket", "dz-nolookup", "dz-workers")
DROPZONE = VARIANTS[2:]
LABELS = {
    "bare": "bare signed httpx loop",
    "bare-head": "bare loop, HEAD (boto3) + Create",
    "dz-bucket": "dropzone run_once, bucket watch (fresh listing)",
    "dz-nolookup": "dropzone run_once, no lookup (Create only)",
    "dz-workers": "dropzone workers only (claim + submit)",
}


def measure(
    variant: str, args: argparse.Namespace, moto: MotoS3, folder: Path
) -> tuple[float, float, float | None]:
    """Seconds for one run of ``variant`` on a fresh emulator (and ledger), the CPU seconds
    this process spent on it (the emulator and moto are other processes, unless
    ``--emulator inprocess``), and for the daemon, how long ``run_once`` took to return
    after its last submission."""
    lag: float | None = None
    with start_emulator(latency_ms=args.latency_ms, in_process=args.emulator == "inprocess") as ark:
        if variant == "bare":
            cpu_started = time.process_time()
            elapsed = bare_run(ark.url, args.jobs, args.concurrency)
        elif variant == "bare-head":
            head_s3 = s3_client(moto.endpoint)
            cpu_started = time.process_time()
            elapsed = bare_run(ark.url, args.jobs, args.concurrency, head_s3)
        else:
            settings = settings_for(folder, ark.url, moto.endpoint, UNCAPPED, args.concurrency)
            settings.ledger.path.unlink(missing_ok=True)
            stage = Stage(settings, s3_client(moto.endpoint), args.jobs, Metrics(["chat"]).api_call)
            cpu_started = time.process_time()
            try:
                if variant == "dz-workers":
                    elapsed = run_workers(stage, args.concurrency)
                else:
                    elapsed = run_daemon(stage, lookup=variant == "dz-bucket")
                    lag = stage.run_once_s - elapsed
                cpu_s = time.process_time() - cpu_started
                if stage.submitted() != args.jobs:
                    raise RuntimeError(f"{variant}: {stage.submitted()} submitted of {args.jobs}")
            finally:
                stage.close()
        if variant.startswith("bare"):
            cpu_s = time.process_time() - cpu_started
        calls = sum(ark.state()["create_calls"].values())
    if calls != args.jobs:
        raise RuntimeError(f"{variant}: the emulator received {calls} Creates, not {args.jobs}")
    return elapsed, cpu_s, lag


def throughput(args: argparse.Namespace, moto: MotoS3, folder: Path) -> None:
    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    lags: list[float] = []
    for repeat in range(args.repeats):
        order = VARIANTS if repeat % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            elapsed, cpu_s, lag = measure(variant, args, moto, folder)
            seconds[variant].append(elapsed)
            cpu[variant].append(cpu_s)
            if lag is not None:
                lags.append(lag)
            print(
                f"  run {repeat + 1} {variant:12} {args.jobs / seconds[variant][-1]:7.1f} jobs/s"
                f"  CPU {1000 * cpu_s / args.jobs:.2f} ms a job"
            )
            sys.stdout.flush()
    rates = {variant: args.jobs / median(values) for variant, values in seconds.items()}
    cpu_per_job = {variant: median(values) / args.jobs for variant, values in cpu.items()}
    bare = rates["bare"]
    rows: list[tuple[str, ...]] = [
        ("path", "median rate", "runs (jobs/s)", "vs bare", "CPU a job", "CPU vs bare")
    ]
    for variant in VARIANTS:
        runs = " ".join(f"{args.jobs / s:.0f}" for s in seconds[variant])
        rows.append(
            (
                LABELS[variant],
                f"{rates[variant]:.1f} jobs/s",
                runs,
                f"{rates[variant] / bare:.3f}x",
                f"{1000 * cpu_per_job[variant]:.2f} ms",
                f"{cpu_per_job[variant] / cpu_per_job['bare']:.3f}x",
            )
        )
    ideal = args.concurrency / (args.latency_ms / 1000)
    print()
    print(table(rows))
    print(
        f"(ceiling set by latency alone: {args.concurrency} / {args.latency_ms} ms = {ideal:.0f}/s)"
    )
    print(
        "(dropzone's time runs from run_once() to the last entry recorded submitted; run_once "
        f"itself returned {median(lags):.2f} s after that, median)"
    )
    for variant in DROPZONE:
        ratio = rates[variant] / bare
        ok = verdict(ratio >= RATIO_GOAL)
        print(f"ratio {variant:12} {ratio:.3f}x (goal >= {RATIO_GOAL}x): {ok}")
    like = rates["dz-bucket"] / rates["bare-head"]
    print(f"(dz-bucket against the bare loop that also HEADs: {like:.3f}x)")


def qps_cap(args: argparse.Namespace, moto: MotoS3, folder: Path) -> None:
    sent: list[float] = []
    lock = threading.Lock()

    def observe(action: str, outcome: str, seconds: float, detail: str = "") -> None:
        del detail  # only the send times matter here
        if action == "CreateBatchInferenceJob" and outcome == "200":
            with lock:
                sent.append(time.monotonic() - seconds)

    with start_emulator(latency_ms=args.latency_ms, in_process=args.emulator == "inprocess") as ark:
        settings = settings_for(folder, ark.url, moto.endpoint, args.cap_qps, args.concurrency)
        settings.ledger.path.unlink(missing_ok=True)
        stage = Stage(settings, s3_client(moto.endpoint), args.cap_calls, observe)
        try:
            elapsed = run_daemon(stage, lookup=False)
        finally:
            stage.close()
    sent.sort()
    achieved = (len(sent) - 1) / (sent[-1] - sent[0])
    worst = max(_window_count(sent, start) for start in sent)
    off = achieved / args.cap_qps - 1
    ok = abs(off) <= CAP_TOLERANCE and worst <= args.cap_qps * (1 + CAP_TOLERANCE)
    print()
    print(
        table(
            [
                ("figure", "value"),
                ("cap (max_requests_per_second)", f"{args.cap_qps:g}/s"),
                ("Create calls", f"{len(sent)}, the last recorded {elapsed:.2f} s after the start"),
                ("achieved rate, first to last send", f"{achieved:.2f}/s ({off:+.1%} of the cap)"),
                ("most sends in any 1-s window", f"{worst}"),
                ("QPS cap within 5%", verdict(ok)),
            ]
        )
    )


def _window_count(times: list[float], start: float) -> int:
    return sum(1 for moment in times if start <= moment < start + 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="new objects (2000)")
    parser.add_argument("--concurrency", type=int, default=8, help="threads / workers (8)")
    parser.add_argument("--latency-ms", type=int, default=20, help="emulator latency (20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (3)")
    parser.add_argument("--cap-qps", type=float, default=50.0, help="QPS cap to check (50)")
    parser.add_argument("--cap-calls", type=int, default=300, help="calls under the cap (300)")
    parser.add_argument(
        "--emulator", choices=("subprocess", "inprocess"), default="subprocess", help="where"
    )
    parser.add_argument("--skip-cap", action="store_true", help="only the throughput")
    args = parser.parse_args(argv)
    header("submission throughput", vars(args))
    quiet_logs()
    objects = max(args.jobs, args.cap_calls)
    with (
        MotoS3({BUCKET: objects}) as moto,
        tempfile.TemporaryDirectory(prefix="dropzone-bench-", dir=tmp_root()) as tmp,
    ):
        head = s3_client(moto.endpoint).head_object(Bucket=BUCKET, Key=object_keys(1)[0])
        if head["ETag"].strip('"') != ETAG:
            raise RuntimeError(f"moto's ETag {head['ETag']} is not the MD5 of the body")
        throughput(args, moto, Path(tmp))
        if not args.skip_cap:
            qps_cap(args, moto, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
