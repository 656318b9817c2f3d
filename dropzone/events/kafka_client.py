"""The Kafka consumer of ``[events]``, as the daemon's feed and ``dropzone check`` both make it.

confluent-kafka is imported inside the functions: only a daemon or a check with a Kafka feed
needs librdkafka loaded. What librdkafka refuses in the options is a :class:`UsageError`
naming ``[events] kafka_options``, not its own exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dropzone import runtime
from dropzone.runtime import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dropzone.config import EventsSettings

METADATA_TIMEOUT_S = 10.0


def consumer_options(events: EventsSettings, on_error: Callable[[Any], None]) -> dict[str, Any]:
    """What a user may change first, then what the feed's promise rests on (offsets
    committed by the feed alone, after the ledger recorded)."""
    options: dict[str, Any] = {
        # A fetch that finds nothing new is answered after 50 ms rather than librdkafka's 500:
        # an event waits no longer than that for the broker to hand it over.
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 50,
        **events.kafka_options,
        "bootstrap.servers": events.kafka_bootstrap_servers,
        "group.id": events.kafka_group_id,
        "enable.auto.commit": False,
        "error_cb": on_error,
    }
    if events.kafka_password_file is not None:
        options["sasl.password"] = runtime.read_secret(
            events.kafka_password_file, "[events] kafka_password_file"
        )
    return options


def make_consumer(events: EventsSettings, on_error: Callable[[Any], None]) -> Any:  # noqa: ANN401 - a confluent_kafka.Consumer
    from confluent_kafka import Consumer, KafkaException  # noqa: PLC0415 - see the docstring

    options = consumer_options(events, on_error)
    try:
        return Consumer(options)
    except (KafkaException, ValueError, TypeError) as exc:
        raise UsageError(
            f"[events] kafka_options: librdkafka refused them ({_said(exc)}); see "
            "librdkafka's CONFIGURATION.md for the names and values it takes"
        ) from None


def rewind_to(message: Any) -> Any:  # noqa: ANN401 - confluent-kafka's own types
    """The ``TopicPartition`` to seek to, to read ``message`` again."""
    from confluent_kafka import TopicPartition  # noqa: PLC0415 - see the docstring

    return TopicPartition(message.topic(), message.partition(), message.offset())


def topic_problem(events: EventsSettings) -> tuple[bool, str]:
    """The brokers asked for the topic's metadata, as the feed's consumer would ask them:
    (ok, what was found or what to change). Never raises for what it was asked to find."""
    from confluent_kafka import KafkaException  # noqa: PLC0415 - see the docstring

    said: list[str] = []
    consumer = make_consumer(events, lambda error: said.append(str(error)))
    where = f"{events.kafka_bootstrap_servers}"
    try:
        metadata = consumer.list_topics(events.kafka_topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        heard = f"; it said {said[-1]}" if said else ""
        return False, (
            f"no broker at {where} answered in {METADATA_TIMEOUT_S:.0f} s ({_said(exc)}{heard}):"
            " check [events] kafka_bootstrap_servers, kafka_options and the network"
        )
    finally:
        consumer.close()
    found = metadata.topics.get(events.kafka_topic)
    if found is None or found.error is not None:
        why = "not listed" if found is None else _said(found.error)
        return False, (
            f"the brokers at {where} answered, but topic {events.kafka_topic!r} is not there"
            f" ({why}): create it, or fix [events] kafka_topic"
        )
    partitions = len(found.partitions)
    return True, f"topic {events.kafka_topic!r} found at {where} ({partitions} partitions)"


def _said(exc: object) -> str:
    """librdkafka's words for an error, whichever of its shapes it came in."""
    error = exc.args[0] if isinstance(exc, Exception) and exc.args else exc
    text = getattr(error, "str", None)
    return str(text()) if callable(text) else str(error)
