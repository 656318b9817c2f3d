"""The ``[events]`` section, and what a watch's ``feed`` needs of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from dropzone.config.fields import ConfigPath, NonEmpty, Section

if TYPE_CHECKING:
    from dropzone.config.model import DaemonSettings, WatchRule

# What the Kafka feed sets itself: its offsets are committed only once the ledger has recorded.
KAFKA_OWN_OPTIONS = frozenset(
    {"bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store"}
)
EVENTS_SECRETS = ("http_secret_file", "kafka_password_file")


class EventsSettings(Section):
    """Where TOS event notifications come in, for the watches that name a ``feed``.

    ``http_secret_file``: the shared secret that signs each ``POST /events/tos`` (an HMAC of
    the body), read from a file, never logged. ``kafka_*``: the topic TOS delivers to, read by
    one consumer group per deployment (replicas share its partitions); ``kafka_options`` are
    librdkafka settings (``security.protocol``, ``sasl.mechanism``, ``sasl.username``, ...),
    the SASL password in ``kafka_password_file``, never in the options."""

    http_secret_file: ConfigPath | None = None
    kafka_bootstrap_servers: NonEmpty | None = None
    kafka_topic: NonEmpty | None = None
    kafka_group_id: NonEmpty = "dropzone"
    kafka_options: dict[str, str] = Field(default_factory=dict)
    kafka_password_file: ConfigPath | None = None

    @field_validator("kafka_options")
    @classmethod
    def _check_kafka_options(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in KAFKA_OWN_OPTIONS:
                raise ValueError(f"{key!r} is dropzone's to set (see the [events] kafka_* keys)")
            if "password" in key or "secret" in key:
                raise ValueError(
                    f"{key!r}: no secret in the config; put the password in kafka_password_file"
                )
        return value


def feed_problem(
    rule: WatchRule, events: EventsSettings | None, daemon: DaemonSettings | None
) -> str | None:
    """What keeps a watch's ``feed`` from working, in words; None when nothing does."""
    if rule.feed is None or events is None:  # no feed, or [events] itself is wrong and said so
        return None
    if rule.local_dir is not None:
        return "feed is a bucket watch's: a folder watch sees its own files change"
    if rule.feed == "kafka":
        return _kafka_problem(events)
    return _http_problem(events, daemon)


def _kafka_problem(events: EventsSettings) -> str | None:
    if events.kafka_bootstrap_servers is None or events.kafka_topic is None:
        return 'feed = "kafka" needs [events] kafka_bootstrap_servers and kafka_topic'
    return None


def _http_problem(events: EventsSettings, daemon: DaemonSettings | None) -> str | None:
    if events.http_secret_file is None:
        return 'feed = "http" needs [events] http_secret_file (the secret that signs each event)'
    if daemon is not None and not daemon.listen:
        return 'feed = "http" takes events on [daemon] listen: set it (it is "" now)'
    return None
