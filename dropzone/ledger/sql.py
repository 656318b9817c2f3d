"""The ledger's SQL, written once for every store: portable statements, values as parameters.

Row values, ``RETURNING``, ``ON CONFLICT DO NOTHING`` and ``UPDATE ... FROM`` mean the same in
SQLite and PostgreSQL; placeholders are written ``?`` (a store whose driver spells them
otherwise translates them once). The state-guarded writes are not written out one by one:
each is a :class:`Guarded` made from a :class:`~dropzone.ledger.model.Move` of the transition
table, so the table and the guard in SQL cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from dropzone.ledger import model
from dropzone.ledger.model import State

if TYPE_CHECKING:
    from dropzone.ledger.model import Move


@dataclass(frozen=True)
class Guarded:
    """``UPDATE entries SET <sets>, updated_at = ? WHERE id = ? AND state IN (<sources>)
    [AND <also>] RETURNING *``; with a ``move``, ``state`` is set to its target first.

    Values, in order: the target (with a move), those of ``sets``, ``now``, the id, the
    sources (:meth:`sources`), those of ``also``. ``stay`` guards a write that keeps the state.
    """

    sets: tuple[str, ...]
    move: Move | None = None
    stay: State | None = None
    also: str = ""

    def __post_init__(self) -> None:
        if (self.move is None) == (self.stay is None):
            raise ValueError("a guarded write either moves an entry or keeps its state")

    def sources(self) -> tuple[State, ...]:
        if self.move is not None:
            return tuple(sorted(self.move.sources))
        assert self.stay is not None
        return (self.stay,)

    @property
    def target(self) -> State:
        return self.move.target if self.move is not None else self.sources()[0]

    @cached_property
    def sql(self) -> str:
        return self._statement(fenced=False)

    @cached_property
    def fenced_sql(self) -> str:
        """The write of one attempt: conditioned on its claim's token as well (a last value)."""
        return self._statement(fenced=True)

    @cached_property
    def fenced_update(self) -> str:
        """:attr:`fenced_sql` returning nothing: a write whose caller needs only whether it
        matched (its row count), not the entry."""
        return self.fenced_sql.removesuffix(" RETURNING *")

    def _statement(self, *, fenced: bool) -> str:
        sets = ("state = ?",) if self.move is not None else ()
        assignments = ", ".join((*sets, *self.sets, "updated_at = ?"))
        marks = ", ".join("?" * len(self.sources()))
        also = f" AND {self.also}" if self.also else ""
        fence = " AND claim_token = ?" if fenced else ""
        return (
            f"UPDATE entries SET {assignments}"  # noqa: S608 - this module's constants only
            f" WHERE id = ? AND state IN ({marks}){also}{fence} RETURNING *"
        )

    def values(
        self, sets: tuple[object, ...], now: str, entry_id: int, also: tuple[object, ...] = ()
    ) -> tuple[object, ...]:
        target = (self.target,) if self.move is not None else ()
        return (*target, *sets, now, entry_id, *self.sources(), *also)


# An entry let go of a job that was never its own (the one the guard named), back as it was
# before its first claim.
NO_JOB = (
    "job_id = NULL",
    "phase = NULL",
    "output_dir = NULL",
    "requests_total = NULL",
    "requests_completed = NULL",
    "requests_failed = NULL",
    "awaits_job = 0",
)
_OUTCOME = ("job_id = ?", "output_dir = ?", "input_tag = COALESCE(?, input_tag)")
_SETTLED = ("error = NULL", "next_attempt_at = NULL")

# A claim: the token (from the store's sequence) and the node stamped on the entry.
_CLAIMED = ("claimed_at = ?", "claim_token = ?", "claimed_by = ?")
CLAIM_ONE = Guarded(
    ("attempts = attempts + 1", "next_attempt_at = NULL", *_CLAIMED), move=model.CLAIM
)
# A stranded attempt taken over to be reconciled: a new token and owner, the state and the
# attempt's date kept (its Create, if any, was signed then). Guarded by the token seen.
TAKE_OVER = Guarded(
    ("claim_token = ?", "claimed_by = ?"),
    stay=State.SUBMITTING,
    also="coalesce(claim_token, 0) = ?",
)
SUBMITTED = Guarded((*_OUTCOME, *_SETTLED), move=model.SUBMITTED)
DUPLICATE = Guarded((*_OUTCOME, "awaits_job = ?", *_SETTLED), move=model.DUPLICATE)
AWAITED = Guarded(
    (*NO_JOB, "error = ?", "next_attempt_at = NULL"),
    move=model.AWAITED,
    also="awaits_job = 1 AND job_id = ?",
)
REJECTED = Guarded(("error = ?", "next_attempt_at = NULL"), move=model.REJECTED)
INVALID = Guarded(("error = ?", "next_attempt_at = NULL"), move=model.INVALID)
RELEASE = Guarded(("next_attempt_at = NULL",), move=model.REQUEUE)
PROMOTE = Guarded(("next_attempt_at = NULL",), move=model.PROMOTE)
RETRY_LATER = Guarded(
    ("next_attempt_at = ?", "error = ?", "transient_failures = transient_failures + ?"),
    move=model.REQUEUE,
)
DEFER = Guarded(
    ("next_attempt_at = ?", "error = ?", "transient_failures = transient_failures + ?"),
    stay=State.SUBMITTING,
)
SENDING = Guarded(("claimed_at = ?",), stay=State.SUBMITTING)
NEW_VERSION = Guarded(("etag = ?", "size = ?"), stay=State.WAITING)


def retry(states: tuple[State, ...], *, by_key: bool) -> str:
    """Entries in ``states`` back to pending, counters reset; a retried duplicate drops the
    job it named: that job was never the entry's own. Values: pending, now, the states
    (checked against the table by the caller's Move), then the key when ``by_key``."""
    assignments = ", ".join(
        (
            "state = ?",
            "attempts = 0",
            "transient_failures = 0",
            "error = NULL",
            "next_attempt_at = NULL",
            *NO_JOB,
            "updated_at = ?",
        )
    )
    marks = ", ".join("?" * len(states))
    key = " AND key = ?" if by_key else ""
    return f"UPDATE entries SET {assignments} WHERE state IN ({marks}){key}"  # noqa: S608


KNOWN = {
    # (after is None, through is None) -> the page's range read. Four statements rather than
    # `? IS NULL OR key > ?`, which would keep SQLite from using the index for the range.
    (True, True): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ?",
    (False, True): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key > ?",
    (True, False): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key <= ?",
    (False, False): "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key > ? AND key <= ?",
}
KNOWN_KEY = (
    "SELECT id, key, etag, gone_since IS NOT NULL FROM entries"
    " WHERE watch = ? AND bucket = ? AND key = ?"
)
MARK_GONE = "UPDATE entries SET gone_since = ? WHERE id = ? AND gone_since IS NULL"
MARK_BACK = "UPDATE entries SET gone_since = NULL WHERE id = ?"
INSERT = (
    "INSERT INTO entries"
    " (watch, bucket, key, etag, size, state, error, first_seen_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (watch, bucket, key, etag) DO NOTHING RETURNING id"
)
# A first listing's plain baseline, batched: no id read back, its state written in (the
# statement runs once a version, and every value bound costs).
INSERT_BASELINE = (
    "INSERT INTO entries (watch, bucket, key, etag, size, state, first_seen_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, 'baseline', ?, ?)"
    " ON CONFLICT (watch, bucket, key, etag) DO NOTHING"
)
SELECT_IDENTITY = "SELECT * FROM entries WHERE watch = ? AND bucket = ? AND key = ? AND etag = ?"
SELECT_ID = "SELECT * FROM entries WHERE id = ?"
SELECT_STATE = "SELECT state, claim_token, claimed_by FROM entries WHERE id = ?"
SELECT_KEY = (
    "SELECT * FROM entries WHERE watch = ? AND bucket = ? AND key = ? ORDER BY first_seen_at, id"
)

WATCH_SCOPE = "SELECT bucket, prefix FROM watches WHERE name = ?"
BEGIN_WATCH = (
    "INSERT INTO watches (name, bucket, prefix, baseline_done, scope_since) VALUES (?, ?, ?, 0, ?)"
)
RESCOPE_WATCH = (
    "UPDATE watches SET bucket = ?, prefix = ?, baseline_done = 0, scope_since = ? WHERE name = ?"
)
RESCOPE_ENTRIES = "UPDATE entries SET gone_since = ? WHERE watch = ? AND gone_since IS NULL"
BASELINE_DONE = "SELECT baseline_done FROM watches WHERE name = ?"
MARK_BASELINE_DONE = "UPDATE watches SET baseline_done = 1 WHERE name = ?"

# UPDATE ... FROM rather than `WHERE id IN (...)`: with IN, SQLite checks the outer state
# condition by walking the state index (every pending entry) instead of looking the chosen ids
# up. The state is checked again on the row being changed, as a conditional write should.
# Values: submitting, now, token, node, now, pending, now, watch, watch, limit, pending.
CLAIM_DUE = (
    "UPDATE entries SET state = ?, attempts = attempts + 1, next_attempt_at = NULL,"
    " claimed_at = ?, claim_token = ?, claimed_by = ?, updated_at = ?"
    " FROM (SELECT id FROM entries WHERE state = ?"
    "  AND (next_attempt_at IS NULL OR next_attempt_at <= ?) AND (? IS NULL OR watch = ?)"
    "  ORDER BY first_seen_at, id LIMIT ?) AS due"
    " WHERE entries.id = due.id AND entries.state = ?"
    " RETURNING *"
)
SET_PHASE = (
    "UPDATE entries SET phase = ?, requests_total = COALESCE(?, requests_total),"
    " requests_completed = COALESCE(?, requests_completed),"
    " requests_failed = COALESCE(?, requests_failed), updated_at = ?"
    " WHERE id = ? AND job_id IS NOT NULL RETURNING *"
)

IN_STATE_FIRST = (
    "SELECT * FROM entries WHERE state = ? AND (? IS NULL OR watch = ?)"
    " ORDER BY first_seen_at, id LIMIT ?"
)
IN_STATE_NEXT = (
    "SELECT * FROM entries WHERE state = ? AND (? IS NULL OR watch = ?)"
    " AND (first_seen_at, id) > (?, ?) ORDER BY first_seen_at, id LIMIT ?"
)
ENTRIES_FIRST = (
    "SELECT * FROM entries WHERE (? IS NULL OR state = ?) AND (? IS NULL OR watch = ?)"
    " ORDER BY watch, bucket, key, etag LIMIT ?"
)
ENTRIES_NEXT = (
    "SELECT * FROM entries WHERE (? IS NULL OR state = ?) AND (? IS NULL OR watch = ?)"
    " AND (watch, bucket, key, etag) > (?, ?, ?, ?) ORDER BY watch, bucket, key, etag LIMIT ?"
)
# Both repeat the tracking index's WHERE word for word, so that SQLite uses that index.
TRACKING = (
    "SELECT * FROM entries WHERE job_id IS NOT NULL"
    " AND (phase IS NULL OR phase NOT IN ('Completed', 'Terminated', 'Failed'))"
    " AND (? IS NULL OR (updated_at, id) > (?, ?))"
    " ORDER BY updated_at, id LIMIT ?"
)
ACTIVE_JOBS = (
    "SELECT count(*) AS active FROM entries WHERE job_id IS NOT NULL"
    " AND (phase IS NULL OR phase NOT IN ('Completed', 'Terminated', 'Failed'))"
    " AND watch = ?"
    # Terminating has let go of its capacity; a phase this version does not know holds it.
    " AND (phase != 'Terminating' OR (state = ? AND phase IS NULL))"
)
IN_FLIGHT = "SELECT count(*) AS in_flight FROM entries WHERE watch = ? AND state = ?"
COUNTS = (
    "SELECT state, count(*) AS entries FROM entries WHERE (? IS NULL OR watch = ?) GROUP BY state"
)
OLDEST_UNSUBMITTED = (
    "SELECT min(first_seen_at) AS oldest FROM entries WHERE watch = ? AND state IN (?, ?, ?)"
)
UPCOMING = (
    "SELECT watch, bucket, key, etag FROM entries"
    " WHERE (state = ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?))"
    " OR state = ? ORDER BY first_seen_at, id LIMIT ?"
)
# NULLs first: a pending entry due now answers with the (past) time it became pending. Spelled
# out, because PostgreSQL sorts NULLs last where SQLite sorts them first.
NEXT_DUE = (
    "SELECT next_attempt_at, updated_at FROM entries WHERE state = ?"
    " ORDER BY next_attempt_at NULLS FIRST LIMIT 1"
)

BACKFILL = (
    "UPDATE entries SET state = ?, next_attempt_at = NULL, updated_at = ?"
    " WHERE state = ? AND (? IS NULL OR watch = ?)"
)
# Never an entry in submitting: its Create call may be in flight in a running daemon, and the
# key would then count as new and be submitted a second time.
FORGET = "DELETE FROM entries WHERE key = ? AND (? IS NULL OR watch = ?) AND state != ?"
# An entry whose Create call's outcome is unknown is kept whatever its age: it still has to be
# reconciled, and forgetting it could let the same input run twice.
PRUNE = "DELETE FROM entries WHERE gone_since IS NOT NULL AND gone_since < ? AND state != ?"
# A notice outlives its entry until it is settled; then a prune takes it.
PRUNE_NOTICES = "DELETE FROM notices WHERE entry_id IS NULL AND settled_at IS NOT NULL"
