"""A stored row as an :class:`~dropzone.ledger.model.Entry`, and the entry an insert made."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropzone.ledger.model import Entry, RequestCounts, State, from_optional_text, from_text

if TYPE_CHECKING:
    from datetime import datetime

    from dropzone.ledger.diff import Listed
    from dropzone.ledger.primitives import Row


def entry_of(row: Row) -> Entry:
    total = row["requests_total"]
    counts = (
        None
        if total is None
        else RequestCounts(total, row["requests_completed"] or 0, row["requests_failed"] or 0)
    )
    return Entry(
        id=row["id"],
        watch=row["watch"],
        bucket=row["bucket"],
        key=row["key"],
        etag=row["etag"],
        size=row["size"],
        state=State(row["state"]),
        attempts=row["attempts"],
        transient_failures=row["transient_failures"],
        next_attempt_at=from_optional_text(row["next_attempt_at"]),
        error=row["error"],
        job_id=row["job_id"],
        phase=row["phase"],
        output_dir=row["output_dir"],
        input_tag=row["input_tag"],
        request_counts=counts,
        first_seen_at=from_text(row["first_seen_at"]),
        updated_at=from_text(row["updated_at"]),
        claimed_at=from_optional_text(row["claimed_at"]),
        gone_since=from_optional_text(row["gone_since"]),
        awaits_job=bool(row["awaits_job"]),
        claim_token=row["claim_token"],
        claimed_by=row["claimed_by"],
    )


def new_entry(
    entry_id: int,
    scope: tuple[str, str],
    item: Listed,
    state: State,
    note: str | None,
    moment: datetime,
) -> Entry:
    """The entry an insert created, built from its values rather than read back: a first
    listing inserts every object of the bucket, and parsing each row again doubles its cost."""
    return Entry(
        id=entry_id,
        watch=scope[0],
        bucket=scope[1],
        key=item.key,
        etag=item.etag,
        size=item.size,
        state=state,
        attempts=0,
        transient_failures=0,
        next_attempt_at=None,
        error=note,
        job_id=None,
        phase=None,
        output_dir=None,
        input_tag=None,
        request_counts=None,
        first_seen_at=moment,
        updated_at=moment,
        claimed_at=None,
        gone_since=None,
        awaits_job=False,
    )
