"""TOS event notifications read into hints: which object, in which bucket, may be new.

The format is the one TOS sends to its notification targets and the official veFaaS
TOS-trigger template reads: ``{"events": [{"eventName", "eventTime", "tos": {"bucket":
{"name"}, "object": {"key", "eTag", "size"}}}]}``. What it does not promise is treated as
unknown: whether a key arrives URL-encoded (S3's notifications encode it, ``+`` for a space), and
whether an ETag is quoted. A hint is never the truth: the object is looked up (HEAD) before it
is recorded, so a stale, duplicated or mis-decoded event changes nothing. Pure: no I/O here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_plus

CREATED_PREFIXES = ("tos:ObjectCreated:", "ObjectCreated:")


@dataclass(frozen=True)
class Hint:
    """One object an event says was created; ``keys``: the spellings to look up, as sent
    first, then decoded (most often one)."""

    bucket: str
    keys: tuple[str, ...]
    event: str
    etag: str | None = None
    size: int | None = None
    appended: bool = False  # an appendable object, which may still grow


@dataclass
class Notification:
    """What one message held: its hints, the events it did not concern (another kind than
    object creation) and the malformed ones, each by its kind."""

    hints: list[Hint] = field(default_factory=list)
    ignored: int = 0
    malformed: list[str] = field(default_factory=list)


def key_spellings(raw: str) -> tuple[str, ...]:
    """The key as sent, then as URL-decoded ('+' as a space, then as itself), each once."""
    spellings = [raw]
    for decoded in (unquote_plus(raw), unquote(raw)):
        if decoded not in spellings:
            spellings.append(decoded)
    return tuple(spellings)


def plain_etag(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip('"'):
        return None
    return value.strip('"')


def parse(body: bytes | str) -> Notification:
    """The hints in one notification message; never raises for what the message holds."""
    result = Notification()
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        result.malformed.append("not JSON")
        return result
    events = document.get("events") if isinstance(document, dict) else None
    if isinstance(document, dict) and events is None and "eventName" in document:
        events = [document]  # a single event, unwrapped
    if not isinstance(events, list):
        result.malformed.append("no events list")
        return result
    for event in events:
        _read_event(event, result)
    return result


def _read_event(event: object, into: Notification) -> None:
    if not isinstance(event, dict):
        into.malformed.append("event not an object")
        return
    name = event.get("eventName")
    if not isinstance(name, str):
        into.malformed.append("event without eventName")
        return
    if not name.startswith(CREATED_PREFIXES):
        into.ignored += 1
        return
    tos = event.get("tos")
    bucket = _field(tos, "bucket", "name")
    key = _field(tos, "object", "key")
    if not isinstance(bucket, str) or not bucket:
        into.malformed.append("event without bucket name")
        return
    if not isinstance(key, str) or not key:
        into.malformed.append("event without object key")
        return
    size = _field(tos, "object", "size")
    into.hints.append(
        Hint(
            bucket=bucket,
            keys=key_spellings(key),
            event=name,
            etag=plain_etag(_field(tos, "object", "eTag")),
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            appended=name.endswith("AppendObject"),
        )
    )


def _field(document: object, section: str, name: str) -> object:
    part = document.get(section) if isinstance(document, dict) else None
    return part.get(name) if isinstance(part, dict) else None
