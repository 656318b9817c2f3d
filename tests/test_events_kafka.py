"""A bucket watch triggered by TOS notifications from a Kafka topic (a real broker on
loopback, the real daemon): offsets committed only after the ledger recorded, a restart
mid-stream losing and doubling nothing, dropped and duplicated events still one job each."""

from __future__ import annotations

import random
import signal
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.harness import free_port, wait_for
from tests.kafka_broker import KafkaBroker
from tests.test_events_http import notification
from tests.test_local_daemon import Daemon
from tests.test_postgres_ledger import on_postgres

if TYPE_CHECKING:
    from tests.harness import Stage
    from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow


def feed_from_kafka(stage: Stage, kafka: KafkaBroker, *, reconcile_interval_s: float) -> str:
    """The stage's watch fed by a new topic of its own; returns the topic."""
    topic = kafka.new_topic()
    stage.events = {
        "kafka_bootstrap_servers": kafka.bootstrap,
        "kafka_topic": topic,
        "kafka_group_id": f"dropzone-{stage.bucket}",
    }
    stage.watch.update(feed="kafka", reconcile_interval_s=reconcile_interval_s, min_age_s=0)
    stage.daemon.update(listen=f"127.0.0.1:{free_port()}", poll_interval_s=0.3)
    return topic


def events_total(stage: Stage, outcome: str) -> float:
    port = stage.daemon["listen"].rpartition(":")[2]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    line = f'dropzone_events_total{{feed="kafka",outcome="{outcome}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].rpartition(" ")[2]) if found else 0.0


def test_a_message_makes_the_job_and_is_not_read_again_after_a_restart(
    stage: Stage, kafka: KafkaBroker
) -> None:
    topic = feed_from_kafka(stage, kafka, reconcile_interval_s=3600)
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        first_key = stage.put("a.jsonl")
        kafka.produce(topic, [notification(stage.bucket, first_key)])
        wait_for(lambda: len(stage.jobs()) == 1, timeout=60, what="the message's job")
        wait_for(lambda: events_total(stage, "recorded") == 1, timeout=30, what="the count")
    finally:
        assert daemon.stop() == 0, daemon.output()
    # Its offset was committed: the next daemon of the group starts after it.
    again = Daemon(stage.spawn("run"))
    try:
        again.wait_ready()
        second_key = stage.put("b.jsonl")
        kafka.produce(topic, [notification(stage.bucket, second_key)])
        wait_for(lambda: len(stage.jobs()) == 2, timeout=60, what="the second message's job")
        wait_for(lambda: events_total(stage, "recorded") == 1, timeout=30, what="its count")
        assert events_total(stage, "known") == 0, "the first message was read again"
    finally:
        assert again.stop() == 0, again.output()
    assert stage.create_calls() == {
        f"{stage.bucket}/{first_key}": 1,
        f"{stage.bucket}/{second_key}": 1,
    }
    for each in (daemon, again):
        assert "Traceback" not in each.output()


def test_a_daemon_killed_mid_stream_loses_nothing_and_doubles_nothing(
    stage: Stage, kafka: KafkaBroker
) -> None:
    topic = feed_from_kafka(stage, kafka, reconcile_interval_s=3600)
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        keys = [stage.put(f"f{number:02d}.jsonl") for number in range(30)]
        kafka.produce(topic, [notification(stage.bucket, key) for key in keys])
        wait_for(lambda: len(stage.jobs()) >= 5, timeout=60, what="the first jobs")
    finally:
        daemon.process.send_signal(signal.SIGKILL)
        assert daemon.stop() == -signal.SIGKILL
    assert len(stage.jobs()) < len(keys), "killed before the stream was through"
    restarted = Daemon(stage.spawn("run"))
    try:
        restarted.wait_ready()
        wait_for(lambda: len(stage.jobs()) == len(keys), timeout=120, what="every file's job")
    finally:
        assert restarted.stop() == 0, restarted.output()
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1 for key in keys}
    assert "Traceback" not in restarted.output()


def test_dropped_and_duplicated_events_still_give_one_job_each(
    stage: Stage, kafka: KafkaBroker
) -> None:
    """10% of the events never sent (the reconcile listing finds those files), 10% sent
    twice, the rest shuffled: every file exactly one job."""
    topic = feed_from_kafka(stage, kafka, reconcile_interval_s=3)
    daemon = Daemon(stage.spawn("run"))
    try:
        daemon.wait_ready()
        keys = [stage.put(f"f{number:02d}.jsonl") for number in range(40)]
        rng = random.Random(15)
        dropped = set(rng.sample(keys, 4))
        sent = [key for key in keys if key not in dropped]
        sent += rng.sample(sent, 4)
        rng.shuffle(sent)
        kafka.produce(topic, [notification(stage.bucket, key) for key in sent])
        wait_for(lambda: len(stage.jobs()) == len(keys), timeout=120, what="every file's job")
        wait_for(lambda: events_total(stage, "known") >= 1, timeout=30, what="a duplicate seen")
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1 for key in keys}
    by_event = {e["key"] for e in daemon.events("object.detected") if e.get("by") == "event"}
    by_listing = {e["key"] for e in daemon.events("object.detected") if "by" not in e}
    assert dropped <= by_listing
    assert by_event | by_listing == set(keys)


def test_a_broker_that_goes_away_degrades_health_until_it_answers_again(stage: Stage) -> None:
    """The broker stopped: /healthz stays 200 and names the feed under ``degraded`` (the
    reconcile listing goes on); a broker on the same address again: the feed recovers. The
    consumer's lag is measured meanwhile."""
    broker = KafkaBroker()
    broker.start()
    try:
        feed_from_kafka(stage, broker, reconcile_interval_s=3600)
        port = stage.daemon["listen"].rpartition(":")[2]
        health = f"http://127.0.0.1:{port}/healthz"
        daemon = Daemon(stage.spawn("run"))
        try:
            daemon.wait_ready()
            wait_for(lambda: "dropzone_event_consumer_lag{" in metrics(port), 60, "the lag")
            broker.stop()
            wait_for(lambda: bool(feed_problems(health)), 60, "the feed down in /healthz")
            assert httpx.get(health, timeout=30).status_code == 200
            broker = KafkaBroker(port=broker.port)
            broker.start()
            wait_for(lambda: not feed_problems(health), timeout=60, what="the feed back")
        finally:
            assert daemon.stop() == 0, daemon.output()
        assert daemon.saw("event.feed_failed")
        assert daemon.saw("event.feed_recovered")
        assert "Traceback" not in daemon.output()
    finally:
        broker.stop()


def test_replicas_on_postgresql_share_the_partitions_and_each_file_has_one_job(
    stage: Stage, kafka: KafkaBroker, postgres: PostgresServer
) -> None:
    """Two daemons on one PostgreSQL ledger, one consumer group: each reads a partition of
    its own, each records the files its partition tells of, and each file has one job."""
    topic = feed_from_kafka(stage, kafka, reconcile_interval_s=3600)
    stage.daemon.update(listen="")  # two daemons on one host: no ops port to share
    on_postgres(stage, postgres, "dz_kafka_pair")
    daemons = [Daemon(stage.spawn("run")), Daemon(stage.spawn("run"))]
    try:
        for daemon in daemons:
            daemon.wait_ready()
        wait_for(
            lambda: (
                sorted(p for d in daemons for p in assigned(d)) == [0, 1]
                and all(assigned(d) for d in daemons)
            ),
            timeout=90,
            what="a partition for each replica",
        )
        keys = [stage.put(f"f{number:02d}.jsonl") for number in range(20)]
        kafka.produce(topic, [notification(stage.bucket, key) for key in keys])
        wait_for(lambda: len(stage.jobs()) == len(keys), timeout=120, what="every file's job")
    finally:
        codes = [daemon.stop() for daemon in daemons]
    assert codes == [0, 0], [daemon.output() for daemon in daemons]
    assert stage.create_calls() == {f"{stage.bucket}/{key}": 1 for key in keys}
    recorded = [
        {e["key"] for e in daemon.events("object.detected") if e.get("by") == "event"}
        for daemon in daemons
    ]
    assert all(recorded), "one replica recorded nothing from its partition"
    assert recorded[0] | recorded[1] == set(keys)
    assert not recorded[0] & recorded[1], "a message was read by both replicas"
    for daemon in daemons:
        assert "Traceback" not in daemon.output()


def assigned(daemon: Daemon) -> list[int]:
    """The partitions a daemon reads now, by its last assignment or revocation logged."""
    names = ("event.partitions_assigned", "event.partitions_revoked")
    told = [e for e in daemon.log() if e["event"] in names]
    if not told:
        return []
    last = told[-1]
    return list(last["partitions"]) if last["event"] == "event.partitions_assigned" else []


def test_check_asks_the_brokers_for_the_topic(stage: Stage, kafka: KafkaBroker) -> None:
    """Found; not there; no broker at all: one line each, exit 1 for the two that fail."""
    topic = feed_from_kafka(stage, kafka, reconcile_interval_s=3600)
    found = stage.dropzone("check")
    line = kafka_line(found.stderr)
    assert line == f"kafka feed: ok: topic {topic!r} found at {kafka.bootstrap} (2 partitions)"
    stage.events["kafka_topic"] = "no-such-topic"
    missing = stage.dropzone("check")
    assert missing.returncode == 1
    assert kafka_line(missing.stderr).startswith("kafka feed: FAILED: the brokers at ")
    assert "topic 'no-such-topic' is not there" in missing.stderr
    stage.events["kafka_bootstrap_servers"] = f"127.0.0.1:{free_port()}"
    unreachable = stage.dropzone("check")
    assert unreachable.returncode == 1
    assert kafka_line(unreachable.stderr).startswith("kafka feed: FAILED: no broker at 127.0.0.1:")
    assert "check [events] kafka_bootstrap_servers" in unreachable.stderr
    for done in (found, missing, unreachable):
        assert "Traceback" not in done.stderr


def kafka_line(stderr: str) -> str:
    (line,) = [row for row in stderr.splitlines() if row.startswith("kafka feed: ")]
    return line


def metrics(port: str) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text


def feed_problems(health: str) -> list[str]:
    degraded: list[str] = httpx.get(health, timeout=30).json()["degraded"]
    return [line for line in degraded if line.startswith("kafka feed: ")]
