"""TOS notifications from a Kafka topic: one consumer group per deployment.

A message's offset is committed only once the ledger has recorded what it said (or dropped
it for good: malformed, not a watched object): a daemon killed in between reads it again, and
a message read twice records nothing twice. When the bucket or the ledger cannot be read, the
consumer goes back to that message and tries again after a pause, so no later message of its
partition is committed over it. Replicas in one group share the topic's partitions.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from dropzone.errors import DropzoneError
from dropzone.events.notification import parse
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dropzone.events.intake import EventIntake

FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 30.0
POLL_S = 0.5
# How often the lag is measured, and a broker that failed is asked whether it answers again.
LOOK_EVERY_S = 5.0
# What librdkafka tells through error_cb that keeps the feed from delivering. The rest (one
# connection dropped, a broker of several gone) it recovers from by itself and says so
# again, as _ALL_BROKERS_DOWN, if it cannot.
_DEGRADING = frozenset(
    {
        "_ALL_BROKERS_DOWN",
        "_AUTHENTICATION",
        "_SSL",
        "_RESOLVE",
        "_UNKNOWN_TOPIC",
        "UNKNOWN_TOPIC_OR_PART",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
    }
)


def degrades(error: object) -> bool:
    """Whether what librdkafka's error_cb said keeps the feed from delivering; anything not a
    ``KafkaError`` (an exception's words) does."""
    name = getattr(error, "name", None)
    fatal = getattr(error, "fatal", None)
    if not callable(name) or not callable(fatal):
        return True
    return bool(fatal()) or name() in _DEGRADING


class Message(Protocol):
    """What the feed reads of a ``confluent_kafka.Message``."""

    def error(self) -> Any: ...  # noqa: ANN401 - a KafkaError or None
    def value(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


class Consumer(Protocol):
    """The part of ``confluent_kafka.Consumer`` the feed uses."""

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: Callable[[Any, list[Any]], None],
        on_revoke: Callable[[Any, list[Any]], None],
    ) -> None: ...
    def poll(self, timeout: float) -> Message | None: ...
    def assignment(self) -> list[Any]: ...
    def position(self, partitions: list[Any]) -> list[Any]: ...
    def get_watermark_offsets(
        self,
        partition: Any,  # noqa: ANN401 - a TopicPartition
        *,
        timeout: float,
        cached: bool,
    ) -> tuple[int, int]: ...
    def list_topics(self, topic: str, timeout: float) -> Any: ...  # noqa: ANN401
    def commit(self, *, message: Message, asynchronous: bool) -> Any: ...  # noqa: ANN401
    def seek(self, partition: Any) -> None: ...  # noqa: ANN401 - a TopicPartition
    def close(self) -> None: ...


class LagObserver(Protocol):
    def event_lag(self, feed: str, messages: int) -> None: ...


class KafkaFeed:
    """Reads the topic into the intake until stopped, on a thread of its own.

    ``broker_said`` is also the consumer's ``error_cb`` (librdkafka tells of brokers it cannot
    reach there, not in a message): the feed is then down, which ``problem`` tells /healthz,
    until the broker answers again."""

    def __init__(
        self,
        intake: EventIntake,
        consumer: Consumer,
        topic: str,
        *,
        rewind: Callable[[Message], Any],
        observer: LagObserver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rewind(message)``: the ``TopicPartition`` to seek to read ``message`` again."""
        self._intake = intake
        self._consumer = consumer
        self._topic = topic
        self._rewind = rewind
        self._failing: str | None = None  # the broker's complaint being told, if any
        self._observer = observer
        self._monotonic = monotonic
        self._looked_at = monotonic()
        self._log = get_logger(feed=intake.feed, topic=topic)

    def run(self, stop_event: threading.Event) -> None:
        pause = FIRST_PAUSE_S
        try:
            self._consumer.subscribe(
                [self._topic], on_assign=self._assigned, on_revoke=self._revoked
            )
            while not stop_event.is_set():
                try:
                    if self._step():
                        pause = FIRST_PAUSE_S
                        continue
                except Exception as exc:  # noqa: BLE001 - told, and the feed goes on
                    self._log.exception("event.feed_error")
                    self.broker_said(f"{type(exc).__name__}: {exc}")
                stop_event.wait(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)
        finally:
            self._consumer.close()

    def _step(self) -> bool:
        """One poll and what it brought; False to pause before the next."""
        self._look_now_and_then()
        message = self._consumer.poll(POLL_S)
        if message is None:
            return True
        if message.error() is not None:
            self.broker_said(message.error())
            return True
        self._broker_answers()
        if self._take(message):
            return True
        self._consumer.seek(self._rewind(message))
        return False

    def start(self, stop_event: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=self.run, args=(stop_event,), name=f"events-{self._intake.feed}", daemon=True
        )
        thread.start()
        return thread

    def _take(self, message: Message) -> bool:
        """One message recorded and its offset committed; False to read it again later."""
        where = {"partition": message.partition(), "offset": message.offset()}
        note = "read again after a pause; nothing after it in its partition is committed"
        try:
            self._intake.take(parse(message.value() or b""))
        except DropzoneError as exc:
            self._log.warning("event.deferred", error=str(exc), **where, note=note)
            return False
        except Exception:  # noqa: BLE001 - not the message's fault: it is read again
            self._log.exception("event.deferred", **where, note=note)
            return False
        try:
            self._consumer.commit(message=message, asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - KafkaException: the message comes again, harmless
            self._log.warning("event.commit_failed", error=str(exc), offset=message.offset())
        return True

    def _assigned(self, _consumer: object, partitions: list[Any]) -> None:
        # Which replica reads which partitions: what an operator asks when one lags.
        self._log.info("event.partitions_assigned", partitions=_numbers(partitions))

    def _revoked(self, _consumer: object, partitions: list[Any]) -> None:
        self._log.info("event.partitions_revoked", partitions=_numbers(partitions))

    def problem(self) -> str | None:
        """What keeps the feed from delivering now, for /healthz; None while it works."""
        failing = self._failing
        return None if failing is None else f"{self._intake.feed} feed: {failing}"

    def broker_said(self, error: object, *, from_callback: bool = False) -> None:
        """``from_callback``: told by error_cb, where librdkafka also tells of what it recovers
        from by itself (logged, the feed not taken for down)."""
        text = str(error)
        if from_callback and not degrades(error):
            self._log.info("event.broker_notice", error=text)
            return
        if text != self._failing:
            self._failing = text
            self._log.warning(
                "event.feed_failed",
                error=text,
                note="the reconcile listing goes on; events are read again once it answers",
            )

    def _broker_answers(self) -> None:
        if self._failing is not None:
            self._failing = None
            self._log.info("event.feed_recovered")

    def _look_now_and_then(self) -> None:
        """Every LOOK_EVERY_S: a failed broker asked whether it answers, the lag measured."""
        if self._monotonic() - self._looked_at < LOOK_EVERY_S:
            return
        self._looked_at = self._monotonic()
        try:
            if self._failing is not None:
                self._consumer.list_topics(self._topic, timeout=2.0)
                self._broker_answers()
            if self._observer is not None:
                self._observer.event_lag(self._intake.feed, self._lag())
        except Exception as exc:  # noqa: BLE001 - KafkaException: the broker still does not answer
            self._log.debug("event.feed_look_failed", error=str(exc))

    def _lag(self) -> int:
        """Messages in the assigned partitions not yet read (high watermark - position)."""
        lag = 0
        for partition in self._consumer.position(self._consumer.assignment()):
            low, high = self._consumer.get_watermark_offsets(partition, timeout=2.0, cached=False)
            at = partition.offset if partition.offset >= 0 else low
            lag += max(0, high - at)
        return lag


def _numbers(partitions: list[Any]) -> list[int]:
    return sorted(int(each.partition) for each in partitions)
