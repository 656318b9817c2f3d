"""What the ledger records, and the state machine it enforces: pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple

from dropzone.errors import ConfigurationError, DropzoneError, OperationalError

if TYPE_CHECKING:
    from collections.abc import Mapping


class LedgerError(DropzoneError):
    """Whatever the ledger raises; the message names the file. Never raised itself: each error
    is one of its subclasses, which say by their second parent what the caller must do."""


class LedgerUnusable(LedgerError, ConfigurationError):
    """No usable ledger where ``[ledger] path`` points: it cannot be made, opened or locked
    there, is not a ledger, or has a schema this dropzone cannot use."""


class LedgerLocked(LedgerUnusable):
    """Another process holds the ledger's lock."""


class LedgerMissing(LedgerUnusable):
    """No ledger where the config points (nothing has run with it yet)."""


class LedgerFailed(LedgerError, OperationalError):
    """The open ledger could not be read or written (a full disk, a read-only file); the
    transaction was rolled back, so the ledger holds nothing of the failed change."""


class EntryNotFound(LedgerError, OperationalError):
    def __init__(self, entry_id: int) -> None:
        super().__init__(f"no ledger entry with id {entry_id}")
        self.entry_id = entry_id


class State(StrEnum):
    BASELINE = "baseline"
    WAITING = "waiting"
    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    REJECTED = "rejected"


class ClaimLost(LedgerError, OperationalError):
    """A write of an attempt whose claim another node has taken over since (this node was
    stalled past its lease): nothing was written, and the attempt's outcome is the new
    owner's to find."""

    def __init__(self, entry_id: int, token: int, holder: str | None) -> None:
        by = f" by {holder}" if holder else ""
        super().__init__(
            f"entry {entry_id}: claim {token} was taken over{by}; this attempt records nothing"
        )
        self.entry_id = entry_id
        self.token = token
        self.holder = holder


class InvalidTransition(LedgerError, OperationalError):
    def __init__(self, old: State, new: State, entry_id: int | None = None) -> None:
        subject = f"entry {entry_id}: " if entry_id is not None else ""
        super().__init__(f"{subject}{old} -> {new} is not an allowed transition")
        self.old = old
        self.new = new
        self.entry_id = entry_id


TRANSITIONS: Mapping[State, frozenset[State]] = MappingProxyType(
    {
        # `dropzone backfill` (or `retry`) submits what was there before the first start.
        State.BASELINE: frozenset({State.PENDING}),
        # A local file became stable (or reached the bucket), or vanished before it did.
        State.WAITING: frozenset({State.PENDING, State.REJECTED}),
        # Claimed; found unusable by preflight; or the object was deleted before submission.
        State.PENDING: frozenset({State.SUBMITTING, State.INVALID, State.REJECTED}),
        # The Create call's outcomes; back to pending for a retry or a reconciled-not-found.
        State.SUBMITTING: frozenset(
            {State.SUBMITTED, State.DUPLICATE, State.REJECTED, State.INVALID, State.PENDING}
        ),
        # A job exists: only its phase changes from here on.
        State.SUBMITTED: frozenset(),
        # Another job held the input: back to pending once that job ended (with
        # `on_change = "after-active"`), or on purpose (`dropzone retry`).
        State.DUPLICATE: frozenset({State.PENDING}),
        # Terminal until someone asks again on purpose (`dropzone retry`).
        State.INVALID: frozenset({State.PENDING}),
        State.REJECTED: frozenset({State.PENDING}),
    }
)


def check_transition(old: State, new: State) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(old, new)


@dataclass(frozen=True)
class Move:
    """A change an operation makes: from any of ``sources`` to ``target``, checked against
    :data:`TRANSITIONS` when the move is defined, and again in SQL when it is applied
    (:class:`dropzone.ledger.sql.Guarded` makes its guard from ``sources``)."""

    sources: frozenset[State]
    target: State

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a move starts from at least one state")
        for source in self.sources:
            check_transition(source, self.target)


CLAIM = Move(frozenset({State.PENDING}), State.SUBMITTING)
SUBMITTED = Move(frozenset({State.SUBMITTING}), State.SUBMITTED)
DUPLICATE = Move(frozenset({State.SUBMITTING}), State.DUPLICATE)
REJECTED = Move(frozenset({State.PENDING, State.SUBMITTING, State.WAITING}), State.REJECTED)
INVALID = Move(frozenset({State.PENDING, State.SUBMITTING}), State.INVALID)
REQUEUE = Move(frozenset({State.SUBMITTING}), State.PENDING)
PROMOTE = Move(frozenset({State.WAITING}), State.PENDING)
BACKFILL = Move(frozenset({State.BASELINE}), State.PENDING)
AWAITED = Move(frozenset({State.DUPLICATE}), State.PENDING)

START_STATES = frozenset({State.BASELINE, State.WAITING, State.PENDING})
UNSUBMITTED = (State.WAITING, State.PENDING, State.SUBMITTING)

# Ark job phases as the API spells them (dropzone.ark.models.Phase; a test keeps them equal).
# The SQL spells them too, literally, because SQLite only uses a partial index for a query
# whose WHERE repeats the index's terms.
TERMINAL_PHASES = frozenset({"Completed", "Terminated", "Failed"})
ACTIVE_PHASES = frozenset({"Queued", "Initializing", "Running"})
# A phase in neither set (and not Terminating) is one this version does not know: active.


class ScopeStatus(Enum):
    """What ``begin_watch`` found; the caller logs a changed scope."""

    FIRST_START = "first_start"
    UNCHANGED = "unchanged"
    CHANGED = "changed"


OnChange = Literal["resubmit", "ignore", "after-active"]


@dataclass(frozen=True)
class RequestCounts:
    total: int
    completed: int
    failed: int


@dataclass(frozen=True)
class Entry:
    """One version of one object, as a watch saw it, and where its submission stands.

    ``attempts`` counts claims, whatever became of them; ``transient_failures`` only the
    attempts that failed transiently (5xx, time-outs, connection errors, failed lookups or
    preflight reads, failed reconcile look-ups), shown by ``status``. ``updated_at`` is the last
    change to the submission record; ``claimed_at`` the start of the latest attempt (any
    Create call of that attempt was sent after it); ``gone_since`` when the version was last
    found missing from a listing (None while it is present). ``awaits_job``: a ``duplicate``
    that goes back to ``pending`` once its ``job_id`` (another version's job) has ended.
    ``claim_token``: the fencing token of the latest claim (or takeover), which every write of
    that attempt is conditioned on; ``claimed_by``: the node that holds it.
    """

    id: int
    watch: str
    bucket: str
    key: str
    etag: str
    size: int
    state: State
    attempts: int
    transient_failures: int
    next_attempt_at: datetime | None
    error: str | None
    job_id: str | None
    phase: str | None
    output_dir: str | None
    input_tag: str | None
    request_counts: RequestCounts | None
    first_seen_at: datetime
    updated_at: datetime
    claimed_at: datetime | None
    gone_since: datetime | None
    awaits_job: bool
    claim_token: int | None = None
    claimed_by: str | None = None


class Version(NamedTuple):
    """One version of one object in a watch: what a look-up of its job by tag needs (read
    as a plain row, where an :class:`Entry` costs a parse of every column)."""

    watch: str
    bucket: str
    key: str
    etag: str


@dataclass(frozen=True)
class JobMade:
    """An attempt's job, made, to be recorded with the next write of the daemon's (a claim's
    transaction, or :meth:`~dropzone.ledger.protocol.LedgerWrites.record_jobs_made`): its entry
    goes to ``submitted`` then, if its claim (``fence``) is still the entry's."""

    entry_id: int
    job_id: str
    output_dir: str | None
    at: datetime
    fence: int


class Claim(NamedTuple):
    """What a claim's transaction did: the entries it claimed, and the jobs made it was to
    record whose claims it found taken over (their new owner finds the job by its tag)."""

    entries: list[Entry]
    refused: list[JobMade]


@dataclass(frozen=True)
class Recorded:
    """What merging a listing page recorded: ``entries``, the versions to be told of one by
    one (pending, or noted), by key; ``baseline``, how many plain baseline versions went in
    besides, counted rather than built (a first listing inserts the whole bucket, and an
    entry built for each would cost it as much again)."""

    entries: list[Entry]
    baseline: int = 0

    @property
    def count(self) -> int:
        return len(self.entries) + self.baseline


@dataclass(frozen=True)
class Stranded:
    """A ``submitting`` entry no live node holds, to be taken over and reconciled.
    ``owner_may_live``: its node's lease lapsed but was never given up, so the node may be
    stalled rather than dead and may still send the Create it signed."""

    entry: Entry
    owner_may_live: bool


@dataclass(frozen=True)
class NodeLease:
    """A node as the ledger knows it; ``remaining_s``: the lease's time left by the
    database's clock (negative once it lapsed)."""

    id: str
    host: str
    started_at: datetime
    remaining_s: float

    @property
    def live(self) -> bool:
        return self.remaining_s >= 0


def to_text(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC: sorts as text in the order of the instants it names."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: the ledger takes aware UTC times")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


def from_optional_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
