"""What an outcome tells the people who asked to hear of it: pure values, no I/O.

A notice is written in the same transaction as the outcome it tells of (the outbox pattern),
so a crash can lose neither; a notifier delivers it later, at least once, under a delivery ID
that is the same however often it is sent. The ID is derived from what the notice is about,
not drawn at random, so the same outcome recorded twice (a phase seen again by the tracker)
is one notice, by the outbox's unique key.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dropzone.ledger.model import TERMINAL_PHASES, State, from_text, to_text

if TYPE_CHECKING:
    from datetime import datetime

    from dropzone.ledger.model import Entry
    from dropzone.ledger.primitives import Row

# The events a watch may ask to hear of: a job's end by its phase, and the outcomes that end
# an upload without a job of its own.
JOB_EVENTS = ("Completed", "Failed", "Terminated")
UPLOAD_EVENTS = ("rejected", "invalid", "duplicate")
EVENTS = (*JOB_EVENTS, *UPLOAD_EVENTS)
assert frozenset(JOB_EVENTS) == TERMINAL_PHASES

# uuid5's namespace for delivery IDs: fixed for ever, so an ID never changes across versions.
_NAMESPACE = uuid.UUID("6f1c2f5e-3b7a-5c1e-9d0e-7a1d2c3b4e5f")

Settled = Literal["delivered", "gave_up", "skipped"]


def event_of(entry: Entry) -> str | None:
    """The event an entry's record now tells of, or None (still under way, or a duplicate
    that waits for the job it names to end and is then submitted)."""
    if entry.state is State.SUBMITTED:
        return entry.phase if entry.phase in TERMINAL_PHASES else None
    if entry.state in {State.REJECTED, State.INVALID}:
        return str(entry.state)
    if entry.state is State.DUPLICATE and not entry.awaits_job:
        return str(entry.state)
    return None


def delivery_id(entry: Entry, event: str) -> str:
    """The same for every delivery of one notice, and different for each notice. A job ends
    once: its end is named by the entry, the job and the phase, so the tracker seeing it
    again makes no second notice. An upload's outcome ends a claim, and happens again only
    after a ``retry`` and a new claim: it is named by the claim's token as well (None for an
    upload found unusable as it was detected, before any claim)."""
    claim = None if event in JOB_EVENTS else entry.claim_token
    about = [entry.id, entry.watch, entry.key, entry.etag, event, entry.job_id, claim]
    return f"dz_{uuid.uuid5(_NAMESPACE, json.dumps(about))}"


def payload(entry: Entry, event: str, happened_at: datetime) -> dict[str, Any]:
    """The notice's body, as the entry stood when the event happened."""
    counts = entry.request_counts
    return {
        "type": f"dropzone.{event}",
        "delivery_id": delivery_id(entry, event),
        "event": event,
        "happened_at": to_text(happened_at),
        "watch": entry.watch,
        "bucket": entry.bucket,
        "key": entry.key,
        "etag": entry.etag,
        "state": str(entry.state),
        "job_id": entry.job_id,
        "phase": entry.phase,
        "request_counts": None
        if counts is None
        else {"total": counts.total, "completed": counts.completed, "failed": counts.failed},
        "output_dir": entry.output_dir,
        "error": entry.error,
    }


@dataclass(frozen=True)
class Notice:
    """One notice in the outbox: ``body`` is the JSON sent, exactly as stored; ``tries``: the
    deliveries that failed so far."""

    id: int
    watch: str
    event: str
    delivery_id: str
    body: str
    happened_at: datetime
    tries: int


def notice_of(row: Row) -> Notice:
    return Notice(
        id=int(row["id"]),
        watch=str(row["watch"]),
        event=str(row["event"]),
        delivery_id=str(row["delivery_id"]),
        body=str(row["payload"]),
        happened_at=from_text(str(row["happened_at"])),
        tries=int(row["tries"]),
    )
