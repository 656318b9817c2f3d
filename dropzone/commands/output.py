"""What the commands print for a program to read: one JSON document a line, an entry as a record."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dropzone.ledger import Entry


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def json_text(document: object) -> str:
    return json.dumps(document, ensure_ascii=False, default=_json_default)


def print_json(document: object) -> None:
    print(json_text(document), flush=True)


def entry_record(entry: Entry) -> dict[str, object]:
    return {
        "watch": entry.watch,
        "bucket": entry.bucket,
        "key": entry.key,
        "etag": entry.etag,
        "size": entry.size,
        "state": str(entry.state),
        "job_id": entry.job_id,
        "phase": entry.phase,
        "attempts": entry.attempts,
        "transient_failures": entry.transient_failures,
        "error": entry.error,
        "output_dir": entry.output_dir,
        "request_counts": dataclasses.asdict(entry.request_counts)
        if entry.request_counts
        else None,
        "next_attempt_at": entry.next_attempt_at,
        "first_seen_at": entry.first_seen_at,
        "updated_at": entry.updated_at,
        "gone_since": entry.gone_since,
        "awaits_job": entry.awaits_job,
        "claimed_by": entry.claimed_by,
    }
