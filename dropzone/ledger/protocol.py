"""The ledger interfaces the daemon, the commands and the submitter are written against.

Two sides: :class:`LedgerWrites`, what a running daemon needs (scopes, what sources saw,
claims and outcomes), and :class:`LedgerReads`, what status, metrics and planning ask;
:class:`Ledger` is both, with the operators' commands and the store's own lifecycle. A part
takes the narrowest side it uses. Every store is a
:class:`~dropzone.ledger.store.LedgerStore`, which implements them all once; what they
promise is specified by the contract suite (``tests/ledger_contract/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Mapping, Sequence
    from datetime import datetime
    from types import TracebackType

    from dropzone.ledger.diff import Listed, Page
    from dropzone.ledger.model import (
        Claim,
        Entry,
        JobMade,
        NodeLease,
        OnChange,
        Recorded,
        RequestCounts,
        ScopeStatus,
        State,
        Stranded,
        Version,
    )
    from dropzone.ledger.notices import Notice, Settled


class LedgerWrites(Protocol):
    """What a running daemon writes; each state change is committed on its own, a claim is one
    atomic conditional write, and every move is checked against the transition table."""

    # --- scope ----------------------------------------------------------------------------
    def begin_watch(self, watch: str, bucket: str, prefix: str, now: datetime) -> ScopeStatus: ...
    def baseline_done(self, watch: str) -> bool: ...
    def mark_baseline_done(self, watch: str) -> None: ...

    # --- what sources saw -----------------------------------------------------------------
    def record_page(
        self,
        watch: str,
        bucket: str,
        page: Page,
        *,
        new_state: State,
        on_change: OnChange,
        now: datetime,
    ) -> Recorded: ...
    def record_object(
        self,
        watch: str,
        bucket: str,
        found: Listed,
        *,
        new_state: State,
        on_change: OnChange,
        now: datetime,
    ) -> list[Entry]: ...
    def add_object(
        self, watch: str, bucket: str, key: str, etag: str, size: int, state: State, now: datetime
    ) -> tuple[Entry, bool]: ...
    def add_objects(
        self,
        watch: str,
        bucket: str,
        found: Sequence[tuple[Listed, State, str | None]],
        now: datetime,
    ) -> list[Entry]: ...
    def update_waiting(self, entry_id: int, etag: str, size: int, now: datetime) -> Entry: ...
    def promote_waiting(self, entry_id: int, now: datetime) -> Entry: ...

    # --- claims and outcomes --------------------------------------------------------------
    # A claim stamps a fencing token and the node; each write of that attempt (``fence``: the
    # claim's token) is refused with ClaimLost once another node has taken the claim over.
    def claim_due(
        self, limit: int, now: datetime, watch: str | None = None, *, node: str | None = None
    ) -> list[Entry]: ...
    def claim_capped(
        self, watch: str, cap: int, limit: int, now: datetime, *, node: str | None = None
    ) -> list[Entry]: ...
    def settle_and_claim(
        self,
        made: Sequence[JobMade],
        limit: int,
        now: datetime,
        *,
        watch: str | None = None,
        cap: int | None = None,
        node: str | None = None,
    ) -> Claim: ...
    def record_jobs_made(self, made: Sequence[JobMade]) -> list[JobMade]: ...
    def claim_one(
        self, entry_id: int, now: datetime, *, node: str | None = None
    ) -> Entry | None: ...
    def take_over(self, entry: Entry, node: str, now: datetime) -> Entry | None: ...
    def record_submitted(
        self,
        entry_id: int,
        job_id: str,
        output_dir: str | None,
        now: datetime,
        *,
        input_tag: str | None = None,
        fence: int | None = None,
    ) -> Entry: ...
    def record_duplicate(
        self,
        entry_id: int,
        existing_job_id: str,
        output_dir: str | None,
        now: datetime,
        *,
        input_tag: str | None = None,
        awaits_job: bool = False,
        fence: int | None = None,
    ) -> Entry: ...
    def end_wait(self, entry_id: int, job_id: str, phase: str, now: datetime) -> Entry | None: ...
    def record_rejected(
        self, entry_id: int, reason: str, now: datetime, *, fence: int | None = None
    ) -> Entry: ...
    def record_invalid(
        self, entry_id: int, reason: str, now: datetime, *, fence: int | None = None
    ) -> Entry: ...
    def schedule_retry(
        self,
        entry_id: int,
        next_attempt_at: datetime,
        reason: str,
        now: datetime,
        *,
        transient: bool,
        fence: int | None = None,
    ) -> Entry: ...
    def defer_reconcile(
        self,
        entry_id: int,
        next_attempt_at: datetime,
        reason: str,
        now: datetime,
        *,
        transient: bool = False,
        fence: int | None = None,
    ) -> Entry: ...
    def release(self, entry_id: int, now: datetime, *, fence: int | None = None) -> Entry: ...
    def mark_sending(
        self, entry_id: int, signed_at: datetime, *, fence: int | None = None
    ) -> Entry: ...
    def record_phase(
        self, entry_id: int, phase: str, request_counts: RequestCounts | None, now: datetime
    ) -> Entry: ...

    # --- nodes and roles ------------------------------------------------------------------
    def heartbeat(self, node: str, host: str, ttl_s: float, now: datetime) -> bool: ...
    def leave(self, node: str) -> None: ...
    def hold_role(self, role: str, node: str, now: datetime) -> bool: ...
    def release_role(self, role: str, node: str) -> None: ...
    def stranded(self, node: str, now: datetime, limit: int = 100) -> list[Stranded]: ...

    # --- notifications: written with the outcomes of the watches announced ----------------
    def announce(self, wanted: Mapping[str, frozenset[str]]) -> None: ...
    def notices_due(self, now: datetime, limit: int = 100) -> list[Notice]: ...
    def settle_notice(
        self, notice_id: int, outcome: Settled, now: datetime, error: str | None = None
    ) -> bool: ...
    def defer_notice(self, notice_id: int, due: datetime, error: str) -> bool: ...


class LedgerReads(Protocol):
    """What is asked of the ledger without changing it."""

    def get(self, entry_id: int) -> Entry: ...
    def find(self, watch: str, bucket: str, key: str) -> list[Entry]: ...
    def in_state(self, state: State, watch: str | None = None) -> Iterator[Entry]: ...
    def entries(self, state: State | None = None, watch: str | None = None) -> Iterator[Entry]: ...
    def tracking(self, limit: int, after: Entry | None = None) -> list[Entry]: ...
    def counts(self, watch: str | None = None) -> dict[State, int]: ...
    def oldest_unsubmitted(self, watch: str) -> datetime | None: ...
    def upcoming(self, limit: int, now: datetime) -> list[Version]: ...
    def next_due_at(self) -> datetime | None: ...
    def active_jobs(self, watch: str) -> int: ...
    def nodes(self) -> list[NodeLease]: ...
    def roles(self) -> dict[str, str]: ...
    def claims_by_node(self) -> dict[str | None, int]: ...
    def notices_pending(self) -> tuple[int, datetime | None]: ...


class Ledger(LedgerWrites, LedgerReads, Protocol):
    """The whole ledger: both sides, the operators' commands, and the store's lifecycle."""

    # --- commands -------------------------------------------------------------------------
    def backfill(self, watch: str | None, now: datetime) -> int: ...
    def retry(
        self, states: Collection[State], keys: Collection[str] | None, now: datetime
    ) -> int: ...
    def forget(self, watch: str | None, keys: Collection[str]) -> int: ...
    def prune(self, older_than: datetime) -> int: ...

    # --- the store itself -----------------------------------------------------------------
    @property
    def where(self) -> str: ...
    def displaced(self) -> str | None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
