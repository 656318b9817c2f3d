"""The event feeds of a running daemon: what triggers its watches besides their listings.

``feed = "http"`` is a route on the ops listener (``POST /events/tos``); ``feed = "kafka"`` a
consumer on a thread of its own. Each feed has an intake that sees the daemon's watches as
they are now (a reload changes them), looks objects up in their buckets and wakes the
submitters. confluent-kafka is imported only when a watch names the Kafka feed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dropzone import runtime
from dropzone.events import http_feed, kafka_client
from dropzone.events.intake import EventIntake
from dropzone.events.kafka_feed import KafkaFeed
from dropzone.runtime import utc_now
from dropzone.sources.tos import TosBucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from dropzone.config import Settings, WatchRule
    from dropzone.daemon.loop import Daemon
    from dropzone.ops import Metrics
    from dropzone.ops.http import PostRoute
    from dropzone.sources.base import StoredObject

_STOP_JOIN_S = 10.0


@dataclass
class Feeds:
    """The routes to serve and the threads to stop."""

    posts: dict[str, PostRoute] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    consumers: list[KafkaFeed] = field(default_factory=list)

    def problems(self) -> tuple[str, ...]:
        """What keeps a feed from delivering now (/healthz's ``degraded``)."""
        return tuple(found for feed in self.consumers if (found := feed.problem()))

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(_STOP_JOIN_S)


def start_feeds(settings: Settings, daemon: Daemon, s3: S3Client, metrics: Metrics) -> Feeds:
    feeds = Feeds()
    named = {rule.feed for rule in settings.watches if rule.feed is not None}

    def intake(feed: str) -> EventIntake:
        def lookup(rule: WatchRule, key: str) -> StoredObject | None:
            return TosBucket(s3, rule.bucket).head(key)

        made = EventIntake(
            feed=feed,
            rules=lambda: [watch.rule for watch in daemon.watches.buckets],
            lookup=lookup,
            ledger=daemon.ledger,
            clock=utc_now,
            wake=daemon.work.wake.notify,
            observer=metrics,
        )
        feeds.threads.append(made.keep(feeds.stop_event))
        return made

    events = settings.events
    # What can be refused (a secret file, librdkafka's options) before any thread starts.
    secret = None
    if "http" in named and events.http_secret_file is not None:
        secret = runtime.read_secret(events.http_secret_file, "[events] http_secret_file")
    told: list[KafkaFeed] = []  # the consumer's error_cb tells the feed, made after it

    def broker_said(error: Any) -> None:  # noqa: ANN401 - a KafkaError
        told[0].broker_said(error, from_callback=True)

    consumer = None
    if "kafka" in named and events.kafka_topic is not None:
        consumer = kafka_client.make_consumer(events, broker_said)
    if secret is not None:
        feeds.posts[http_feed.PATH] = http_feed.HttpFeed(intake("http"), secret.encode("utf-8"))
    if consumer is not None and events.kafka_topic is not None:
        kafka = KafkaFeed(
            intake("kafka"),
            consumer,
            events.kafka_topic,
            rewind=kafka_client.rewind_to,
            observer=metrics,
        )
        told.append(kafka)
        feeds.consumers.append(kafka)
        feeds.threads.append(kafka.start(feeds.stop_event))
    return feeds
