"""The Kafka feed's parts that need no broker: which of librdkafka's complaints take the feed
for down, and options librdkafka refuses stopping the start with one line that names them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from confluent_kafka import KafkaError

from dropzone.config import EventsSettings
from dropzone.events import kafka_client
from dropzone.events.kafka_feed import degrades
from dropzone.runtime import UsageError
from tests.harness import free_port

if TYPE_CHECKING:
    from tests.harness import Stage


@pytest.mark.parametrize(
    ("error", "down"),
    [
        (KafkaError(KafkaError._ALL_BROKERS_DOWN), True),
        (KafkaError(KafkaError._AUTHENTICATION), True),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), True),
        (KafkaError(KafkaError._TRANSPORT, fatal=True), True),
        # One connection dropped: librdkafka reconnects, and says _ALL_BROKERS_DOWN if not.
        (KafkaError(KafkaError._TRANSPORT), False),
        (KafkaError(KafkaError._TIMED_OUT), False),
        ("RuntimeError: not a KafkaError at all", True),
    ],
)
def test_only_what_stops_delivery_takes_the_feed_for_down(error: object, down: bool) -> None:
    assert degrades(error) is down


def test_options_librdkafka_refuses_are_a_usage_error_naming_them() -> None:
    events = EventsSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_topic="tos-events",
        kafka_options={"security.protocol": "carrier-pigeon"},
    )
    with pytest.raises(UsageError) as raised:
        kafka_client.make_consumer(events, lambda _error: None)
    message = str(raised.value)
    assert message.startswith("[events] kafka_options: librdkafka refused them (")
    assert "security.protocol" in message


def test_a_start_refused_for_its_kafka_options_says_so_in_one_line(stage: Stage) -> None:
    stage.events = {
        "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
        "kafka_topic": "tos-events",
        "kafka_options": {"session.timeout.ms": "soon"},
    }
    stage.watch.update(feed="kafka")
    stage.daemon.update(listen=f"127.0.0.1:{free_port()}")
    done = stage.dropzone("run")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "[events] kafka_options: librdkafka refused them" in line
    assert "session.timeout.ms" in line
    assert "Traceback" not in done.stderr
