"""Prometheus metrics: one registry per daemon and small methods the daemon calls.

The registry is dedicated (never ``prometheus_client.REGISTRY``): each daemon, and each test,
owns its series, and a second ``Metrics`` never collides with the first.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dropzone.ledger import State

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime

SubmissionOutcome = Literal["submitted", "duplicate", "rejected", "invalid", "retried"]
SUBMISSION_OUTCOMES: tuple[SubmissionOutcome, ...] = get_args(SubmissionOutcome)

_OUTCOME_OF_STATE: Mapping[State, SubmissionOutcome] = {
    State.SUBMITTED: "submitted",
    State.DUPLICATE: "duplicate",
    State.REJECTED: "rejected",
    State.INVALID: "invalid",
    State.PENDING: "retried",
    # A Create whose outcome stays unknown is looked up again later: another attempt, in effect.
    State.SUBMITTING: "retried",
}

# Ark calls time out at 30 s by default; the buckets reach past that so slow calls stay visible.
_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A listing of a large prefix takes many pages; a poll may take minutes.
_POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_K = TypeVar("_K", bound=str)


def submission_outcome(state: State) -> SubmissionOutcome | None:
    """The ``outcome`` label for the state a submission (or reconciliation) ended in."""
    return _OUTCOME_OF_STATE.get(state)


class LedgerView(Protocol):
    """The two ledger queries the gauges need (``dropzone.ledger.Ledger`` provides them)."""

    def counts(self, watch: str | None = None) -> dict[State, int]: ...
    def oldest_unsubmitted(self, watch: str) -> datetime | None: ...


class NodeView(Protocol):
    """What the node gauges read (``dropzone.daemon.lease.LeaseKeeper`` provides it)."""

    @property
    def node(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def live_nodes(self) -> int: ...
    def age_s(self) -> float | None: ...


def _age_or_inf(age: float | None) -> float:
    return math.inf if age is None else age


NOTICE_OUTCOMES = ("delivered", "failed", "gave_up", "skipped")


class Metrics:
    """dropzone's series, all named ``dropzone_*``; thread-safe, as prometheus-client is."""

    def __init__(
        self, watches: Iterable[str] = (), registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._phases_lock = threading.Lock()
        self._phases: set[str] = set()
        self._claim_nodes: set[str] = set()
        self._build_counters()
        self._build_held()
        self._build_gauges()
        for watch in watches:
            self.add_watch(watch)

    def _build_counters(self) -> None:
        reg = self.registry
        self._detected = Counter(
            "dropzone_objects_detected",
            "New objects (or new versions) a watch found and recorded for submission.",
            ["watch"],
            registry=reg,
        )
        self._submissions = Counter(
            "dropzone_submissions",
            "Submission attempts by how they ended: submitted, duplicate (the platform's guard "
            "named an active job), rejected, invalid (preflight), retried (transient failure).",
            ["watch", "outcome"],
            registry=reg,
        )
        self._api_requests = Counter(
            "dropzone_api_requests",
            "Ark management API calls by action and HTTP status ('transport_error' when no "
            "answer arrived).",
            ["action", "status"],
            registry=reg,
        )
        self._api_latency = Histogram(
            "dropzone_api_request_duration_seconds",
            "Time from sending an Ark API call to its answer (or transport failure).",
            ["action"],
            buckets=_API_BUCKETS,
            registry=reg,
        )
        self._poll_duration = Histogram(
            "dropzone_poll_duration_seconds",
            "Time one successful poll of a watch took (listing merged into the ledger).",
            ["watch"],
            buckets=_POLL_BUCKETS,
            registry=reg,
        )

        self._notices = Counter(
            "dropzone_notifications",
            "Notification deliveries by how they ended: delivered, failed (tried again later),"
            " gave_up (past the watch's give_up_after_s), skipped (the watch no longer asks).",
            ["watch", "outcome"],
            registry=reg,
        )
        self._events = Counter(
            "dropzone_events",
            "Events from a feed by what they came to: recorded (a new object or version),"
            " known (a duplicate), stale (the object gone), unmatched (no watch takes it),"
            " early (before the watch's first listing ended), refused (the bucket refused the"
            " lookup), held (for min_age_s), ignored (not an object creation), malformed.",
            ["feed", "outcome"],
            registry=reg,
        )
        self._event_lag = Gauge(
            "dropzone_event_consumer_lag",
            "Messages of a feed's topic not yet read by this node's consumer (its partitions'"
            " high watermarks less its positions), measured every few seconds.",
            ["feed"],
            registry=reg,
        )
        self._last_event = Gauge(
            "dropzone_event_last_received_timestamp_seconds",
            "When a feed last delivered a message (Unix time).",
            ["feed"],
            registry=reg,
        )

    def _build_held(self) -> None:
        # Labelled by the platform's code: a closed set (the errors module's table and the
        # few codes the platform may add), unlike the messages.
        self._held_answers = Counter(
            "dropzone_ark_held_answers_total",
            "Answers that hold every file because of the account, by Ark's error code "
            "(credentials, clock, service not activated, overdue, model not opened).",
            ["code"],
            registry=self.registry,
        )

    def _build_gauges(self) -> None:
        reg = self.registry
        self._last_poll = Gauge(
            "dropzone_last_successful_poll_timestamp_seconds",
            "Unix time at which the watch's last successful poll completed: its bucket listed"
            " by this node, or for a local-folder watch, its folder checked.",
            ["watch"],
            registry=reg,
        )
        self._ledger_entries = Gauge(
            "dropzone_ledger_entries",
            "Ledger entries by state, as counted after the watch's last poll.",
            ["watch", "state"],
            registry=reg,
        )
        self._jobs = Gauge(
            "dropzone_jobs",
            "Tracked batch jobs by their last known phase.",
            ["phase"],
            registry=reg,
        )
        self._claims = Gauge(
            "dropzone_claims",
            "Attempts in flight (entries in submitting), by the node holding each claim.",
            ["node"],
            registry=reg,
        )
        self._backlog_age = Gauge(
            "dropzone_backlog_oldest_age_seconds",
            "Age of the watch's oldest entry not yet submitted (waiting, pending or "
            "submitting); 0 when there is none.",
            ["watch"],
            registry=reg,
        )

    def ark_held(self, code: str) -> None:
        """One answer refusing the account (credentials, clock, service, balance, model)."""
        self._held_answers.labels(code).inc()

    def track_ark_outage(self, seconds_down: Callable[[], float]) -> None:
        """Serve, at each scrape, how long Ark has not answered (0 while it answers)."""
        Gauge(
            "dropzone_ark_unreachable_seconds",
            "Seconds since Ark last answered, during an outage (no answer or 5xx); 0 otherwise.",
            registry=self.registry,
        ).set_function(seconds_down)

    def track_node(self, lease: NodeView) -> None:
        """Serve, at each scrape, this node's id and its lease's age (the seconds since it was
        last renewed; +Inf before the first), and how many nodes are live."""
        Gauge(
            "dropzone_node_info",
            "This daemon as a node of the ledger (always 1).",
            ["node", "host"],
            registry=self.registry,
        ).labels(lease.node, lease.host).set(1)
        Gauge(
            "dropzone_node_lease_age_seconds",
            "Seconds since this node last renewed its lease (+Inf before the first renewal).",
            registry=self.registry,
        ).set_function(lambda: _age_or_inf(lease.age_s()))
        Gauge(
            "dropzone_nodes_live",
            "Nodes (replicas) with a live lease on the ledger, as this node last counted.",
            registry=self.registry,
        ).set_function(lambda: lease.live_nodes)

    def claims_by_node(self, counts: Mapping[str | None, int]) -> None:
        """Attempts in flight by the node that holds them; a node gone since drops to 0."""
        with self._phases_lock:
            values = dict.fromkeys(self._claim_nodes, 0)
            values.update({node or "none": count for node, count in counts.items()})
            self._claim_nodes.update(values)
            for node, count in values.items():
                self._claims.labels(node).set(count)

    def add_watch(self, watch: str) -> None:
        """Create the watch's series at zero, so rates and alerts work before the first event."""
        self._detected.labels(watch)
        for outcome in SUBMISSION_OUTCOMES:
            self._submissions.labels(watch, outcome)
        for told in NOTICE_OUTCOMES:
            self._notices.labels(watch, told)
        self._backlog_age.labels(watch).set(0)

    # --- events ----------------------------------------------------------------------------

    def api_call(self, action: str, outcome: str, seconds: float, detail: str = "") -> None:
        """The Ark client's ``observer``: ``outcome`` is the HTTP status or a failure word."""
        del detail  # words are for the log; a label of them would grow without bound
        self._api_requests.labels(action, outcome).inc()
        self._api_latency.labels(action).observe(seconds)

    def event(self, feed: str, outcome: str, n: int = 1) -> None:
        """An event feed's observer (``events.intake.EventObserver``)."""
        self._events.labels(feed, outcome).inc(n)
        self._last_event.labels(feed).set(time.time())

    def notified(self, watch: str, outcome: str) -> None:
        """The notifier's observer (``notify.notifier.NoticeObserver``)."""
        self._notices.labels(watch, outcome).inc()

    def event_lag(self, feed: str, messages: int) -> None:
        self._event_lag.labels(feed).set(messages)

    def object_detected(self, watch: str, n: int = 1) -> None:
        if n:
            self._detected.labels(watch).inc(n)

    def submission(self, watch: str, outcome: SubmissionOutcome) -> None:
        if outcome not in SUBMISSION_OUTCOMES:
            raise ValueError(f"unknown submission outcome {outcome!r}")
        self._submissions.labels(watch, outcome).inc()

    def submission_result(self, watch: str, state: State) -> None:
        """Count a submission by the state it ended in; states that are no outcome are skipped."""
        outcome = submission_outcome(state)
        if outcome is not None:
            self.submission(watch, outcome)

    def poll_completed(self, watch: str, duration_s: float, at_unix: float) -> None:
        self._poll_duration.labels(watch).observe(duration_s)
        self._last_poll.labels(watch).set(at_unix)

    def folder_checked(self, watch: str, at_unix: float) -> None:
        """A local-folder watch's round: its folder there and read (it is never listed)."""
        self._last_poll.labels(watch).set(at_unix)

    # --- snapshots -------------------------------------------------------------------------

    def ledger_counts(self, watch: str, counts: Mapping[_K, int]) -> None:
        """Set every state's gauge; a state absent from ``counts`` is 0, not left stale."""
        values = {str(state): 0 for state in State}
        values.update({str(state): count for state, count in counts.items()})
        for state, count in values.items():
            self._ledger_entries.labels(watch, str(state)).set(count)

    def jobs_by_phase(self, counts: Mapping[_K, int]) -> None:
        """Set the phase gauges; a phase seen before and absent now drops to 0."""
        with self._phases_lock:
            values = dict.fromkeys(self._phases, 0)
            values.update({str(phase): count for phase, count in counts.items()})
            self._phases.update(values)
            for phase, count in values.items():
                self._jobs.labels(phase).set(count)

    def backlog_age(self, watch: str, seconds: float | None) -> None:
        # 0 rather than an absent series: an alert on "age > X" then needs no absent() clause.
        self._backlog_age.labels(watch).set(0 if seconds is None else max(0.0, seconds))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


def observe_ledger(metrics: Metrics, ledger: LedgerView, watch: str, now: datetime) -> None:
    """After a poll: the watch's entries by state and its backlog age, from the ledger."""
    metrics.ledger_counts(watch, ledger.counts(watch))
    oldest = ledger.oldest_unsubmitted(watch)
    metrics.backlog_age(watch, None if oldest is None else (now - oldest).total_seconds())
