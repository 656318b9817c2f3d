"""One claimed ledger entry -> one CreateBatchInferenceJob call, and the outcome recorded.

The protocol (design section 2): the entry is already committed as ``submitting`` when it gets
here, and the request carries the ``dropzone-input`` tag. When the outcome is unknown (the call
may have reached the server), the entry is reconciled through List by tag before anything else;
a job found is adopted. The platform's guard is the second line of defence: its answer is
confirmed and recorded as ``duplicate``, or adopted when the named job is our own.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dropzone import plan
from dropzone.ark import errors
from dropzone.jobs.policy import (
    Action,
    Decision,
    RetryPolicy,
    backoff_delay,
    decide,
    transient_retry,
)
from dropzone.ledger import Entry, JobMade, State
from dropzone.log import get_logger
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from structlog.typing import FilteringBoundLogger

    from dropzone.ark.models import CreateJobRequest, Job
    from dropzone.config import WatchRule
    from dropzone.jobs.made import JobsMade
    from dropzone.jobs.prior import PriorJobs
    from dropzone.jobs.reachability import Reachability
    from dropzone.jobs.watch import JobApi, Watch
    from dropzone.ledger import Ledger

# A job created by this attempt has a CreateTime no earlier than the claim, give or take the
# clock skew the platform accepts in a signature.
_ADOPT_WINDOW = timedelta(seconds=900)
# A claim older than this when the Create goes out is re-dated to the send (one more commit).
# Younger ones keep the claim's date: reconciliation then waits this much longer, so a late
# Create is waited for as long either way, and the common case costs one commit less.
_REDATE_AFTER = timedelta(seconds=1)
# A version listed (or uploaded and verified) this recently is not looked up again before its
# Create: a HEAD would tell no more than the listing did, and would double the calls per file.
_LISTING_FRESH = timedelta(seconds=30)


def _created_at(job: Job) -> datetime | None:
    if not job.create_time:
        return None
    try:
        return datetime.fromisoformat(job.create_time)
    except ValueError:
        return None


def _freshly_listed(entry: Entry, now: datetime) -> bool:
    return entry.gone_since is None and now - entry.first_seen_at <= _LISTING_FRESH


def adoptable(job: Job, claimed_at: datetime) -> bool:
    """Whether a job found by our tag can be this attempt's (or still holds the input)."""
    if job.phase.is_active:
        return True
    created = _created_at(job)
    return created is not None and created >= claimed_at - _ADOPT_WINDOW


class Submitter:
    """Submits claimed entries and reconciles ambiguous ones; safe to share between threads."""

    def __init__(  # noqa: PLR0913 - every parameter is an independent, injected dependency
        self,
        *,
        ledger: Ledger,
        api: JobApi,
        watches: Mapping[str, Watch],
        clock: Callable[[], datetime],
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        late_create_s: float = 0.0,
        signature_validity_s: float = 900.0,
        reachability: Reachability | None = None,
        prior_jobs: PriorJobs | None = None,
        jobs_made: JobsMade | None = None,
    ) -> None:
        """``late_create_s``: how long after it was sent a Create may still make a job (it may
        be on its way, or being carried out); until then, no job listed proves nothing.
        ``signature_validity_s``: how long the platform accepts a signed request (900 s).
        ``reachability``: while it tells of an outage, per-file retry lines go to debug (the
        outage itself is logged once, there).
        ``prior_jobs``: where a version's job is looked up before its Create (None: not looked
        up, the guard is the only check).
        ``jobs_made``: where a job made waits to be recorded by the daemon's next claim (None:
        recorded at once, in a transaction of its own)."""
        self._ledger = ledger
        self._api = api
        self._watches = dict(watches)
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._late_create = timedelta(seconds=late_create_s)
        self._signature_validity = timedelta(seconds=signature_validity_s)
        self._reachability = reachability
        self._prior_jobs = prior_jobs
        self.jobs_made = jobs_made
        self._log = get_logger()

    def replace_watches(self, watches: Mapping[str, Watch]) -> None:
        self._watches = dict(watches)

    # --- submit ----------------------------------------------------------------------------

    def submit(self, entry: Entry) -> State:
        """Handle one entry claimed as ``submitting``; returns the state it ends in."""
        log = self._bind(entry)
        watch = self._watches.get(entry.watch)
        if watch is None:
            return self._reject(entry, f"watch {entry.watch!r} is no longer configured")
        problem = self._object_problem(entry, watch) or self._preflight(entry, watch)
        if problem is not None:
            return problem
        request = plan.plan_request(
            plan.ObjectRef(entry.bucket, entry.key, entry.etag, entry.size),
            watch.rule,
            self._clock(),
        )
        adopted = self._prior_job(entry, request)
        if adopted is not None:
            return adopted
        # Signed first, then dated, then sent as signed: the attempt is dated by its
        # signature (the lookup and the preflight may have taken long, and reconciliation
        # waits from that moment), and the dating is the attempt's last fenced write, so a
        # node that lost its claim meanwhile sends nothing. Bytes signed then are refused by
        # the platform once the signature's lifetime has passed, however late they go out.
        signed = self._api.sign_create(request)
        if entry.claimed_at is None or signed.signed_at - entry.claimed_at > _REDATE_AFTER:
            entry = self._ledger.mark_sending(entry.id, signed.signed_at, fence=entry.claim_token)
        try:
            job_id = self._api.send_create(signed)
        except errors.Duplicate as exc:
            return self._duplicate(entry, request, exc, watch.rule)
        except errors.ArkError as exc:
            return self._failed(entry, request, exc)
        if self._reachability is not None:
            self._reachability.create_answered()
        output_dir = request.output_dir_tos_location.object_key
        if self.jobs_made is not None and entry.claim_token is not None:
            made = JobMade(entry.id, job_id, output_dir, self._clock(), entry.claim_token)
            self.jobs_made.add(made)
        else:
            self._ledger.record_submitted(
                entry.id, job_id, output_dir, self._clock(), fence=entry.claim_token
            )
        log.info("job.submitted", job_id=job_id, output_dir=output_dir, attempt=entry.attempts)
        return State.SUBMITTED

    def _prior_job(self, entry: Entry, request: CreateJobRequest) -> State | None:
        """Adopt the job the platform already holds for this version (the ledger had lost its
        record: restored, replaced, or another's); None when there is none and the Create may
        go."""
        if self._prior_jobs is None:
            return None
        try:
            job = self._prior_jobs.job_for(entry, request.project_name, self._project_of)
        except errors.ArkError as exc:
            return self._lookup_failed(entry, exc)
        if job is None:
            return None
        planned = request.output_dir_tos_location.object_key
        output_dir = job.output_dir_tos_location.object_key if job.output_dir_tos_location else None
        self._ledger.record_submitted(
            entry.id, job.id, output_dir or planned, self._clock(), fence=entry.claim_token
        )
        self._bind(entry).warning(
            "job.adopted",
            job_id=job.id,
            phase=job.phase.value,
            note="the platform already held a job for this version, which the ledger did not "
            "know of (restored, replaced or shared): adopted, no second job made",
        )
        return State.SUBMITTED

    def _project_of(self, watch: str) -> str | None:
        known = self._watches.get(watch)
        return known.rule.project_name if known is not None else None

    def _lookup_failed(self, entry: Entry, exc: errors.ArkError) -> State:
        """The platform could not say whether the version has a job: nothing was sent, so
        nothing is ambiguous; it is tried again later, held for the account's problems."""
        decision = decide(exc, self._policy, self._rng.random(), attempts=entry.attempts)
        if isinstance(exc, errors.Held):
            self._held(entry, exc)
        elif decision.action is not Action.RETRY:
            why = f"could not look up the version's job: {exc.describe()}"
            decision = self._transient_retry(entry, why)
        return self._apply_retry(entry, decision)

    def _object_problem(self, entry: Entry, watch: Watch) -> State | None:
        """Refuse to submit a version that is no longer the object's (deleted or replaced)."""
        if watch.lookup is None or _freshly_listed(entry, self._clock()):
            return None
        try:
            current = watch.lookup(entry.key)
        except SourceError as exc:
            return self._apply_retry(entry, self._transient_retry(entry, str(exc)))
        if current is None:
            return self._reject(entry, "the object was deleted before it was submitted")
        if current.etag != entry.etag:
            return self._reject(
                entry,
                f"the object changed before it was submitted (now ETag {current.etag}); "
                "the new version is an entry of its own",
            )
        return None

    def _preflight(self, entry: Entry, watch: Watch) -> State | None:
        """Refuse an unusable file before it costs a job: ``invalid``, no API call."""
        if watch.preflight is None or not watch.rule.preflight:
            return None
        try:
            report = watch.preflight.check(entry)
        except SourceError as exc:
            return self._apply_retry(entry, self._transient_retry(entry, str(exc)))
        if report.valid:
            return None
        log = self._bind(entry)
        where = None
        if watch.rule.report:
            try:
                where = watch.preflight.write_report(entry, report)
            except SourceError as exc:
                log.warning("object.report_failed", error=str(exc))
        self._ledger.record_invalid(
            entry.id, report.summary(), self._clock(), fence=entry.claim_token
        )
        log.warning(
            "object.invalid",
            problems=[str(p) for p in report.problems[:5]],
            total_problems=report.total_problems,
            report=where,
        )
        return State.INVALID

    def _duplicate(
        self, entry: Entry, request: CreateJobRequest, exc: errors.Duplicate, rule: WatchRule
    ) -> State:
        log = self._bind(entry)
        output_dir = request.output_dir_tos_location.object_key
        own_tag = request.tag(plan.INPUT_TAG_KEY)
        their_tag = exc.job.tag(plan.INPUT_TAG_KEY) if exc.job is not None else None
        if own_tag is not None and their_tag == own_tag:
            # Our own earlier attempt created it (its answer was lost): that is this entry's job.
            self._ledger.record_submitted(
                entry.id, exc.existing_job_id, output_dir, self._clock(), fence=entry.claim_token
            )
            log.info("job.reconciled", job_id=exc.existing_job_id, found_by="guard")
            return State.SUBMITTED
        # Another tag is dropzone's job for another version of this key. A job without one
        # was started elsewhere, on content dropzone cannot tell: that stays an outcome.
        awaits = rule.on_change == "after-active" and their_tag is not None
        self._ledger.record_duplicate(
            entry.id,
            exc.existing_job_id,
            output_dir,
            self._clock(),
            awaits_job=awaits,
            fence=entry.claim_token,
        )
        log.info(
            "job.duplicate", existing_job_id=exc.existing_job_id, code=exc.code, awaits_job=awaits
        )
        return State.DUPLICATE

    def _failed(self, entry: Entry, request: CreateJobRequest, exc: errors.ArkError) -> State:
        decision = decide(
            exc,
            self._policy,
            self._rng.random(),
            attempts=entry.attempts,
        )
        if decision.action is Action.RECONCILE:
            return self.reconcile(entry, request.project_name, reason=decision.reason)
        if isinstance(exc, errors.Held):
            self._held(entry, exc)
        if decision.action is Action.REJECT:
            self._bind(entry).warning(
                "job.rejected", code=exc.code, message=exc.message, status=exc.status
            )
            return self._reject(entry, decision.reason, logged=True)
        return self._apply_retry(entry, decision)

    # --- reconcile -------------------------------------------------------------------------

    def reconcile(
        self,
        entry: Entry,
        project_name: str | None = None,
        *,
        reason: str = "",
        owner_may_live: bool = False,
    ) -> State:
        """Settle an entry whose Create outcome is unknown: adopt our job, or submit again.
        ``owner_may_live``: the attempt was taken over from a node whose lease lapsed, which
        may be stalled rather than gone; it is sent again only once its signature expired."""
        log = self._bind(entry)
        watch = self._watches.get(entry.watch)
        project = project_name or (watch.rule.project_name if watch else None)
        tag = plan.input_tag(entry.bucket, entry.key, entry.etag)
        try:
            jobs = self._api.find_by_tag(plan.INPUT_TAG_KEY, tag, project)
        except errors.ArkError as exc:
            # Unknown still: keep the entry in `submitting` and look again later. Submitting
            # again now could start a second job once the first has finished.
            # Backing off like a retry, so a long outage is not a look every few seconds: the
            # n-th failed look waits as attempt n + 1 would (1-2 s the first time).
            looks = entry.transient_failures + 1
            delay = backoff_delay(looks + 1, self._policy, self._rng.random())
            self._ledger.defer_reconcile(
                entry.id,
                self._clock() + timedelta(seconds=delay),
                exc.describe(),
                self._clock(),
                transient=True,
                fence=entry.claim_token,
            )
            level = logging.DEBUG if self._in_outage() else logging.WARNING
            log.log(level, "job.reconcile_deferred", reason=exc.describe(), delay_s=round(delay, 3))
            return State.SUBMITTING
        claimed_at = entry.claimed_at or entry.updated_at
        found = [job for job in jobs if adoptable(job, claimed_at)]
        if found:
            job = found[0]
            output_dir = (
                job.output_dir_tos_location.object_key if job.output_dir_tos_location else None
            )
            self._ledger.record_submitted(
                entry.id, job.id, output_dir, self._clock(), fence=entry.claim_token
            )
            log.info("job.reconciled", job_id=job.id, phase=job.phase.value, found_by="tag")
            return State.SUBMITTED
        now, settled_at = self._clock(), claimed_at + self._late_create + _REDATE_AFTER
        if owner_may_live:
            # Its node may only be stalled, and may still send what it signed: not before the
            # signature has expired could a Create sent now be the only one.
            settled_at += self._signature_validity
        if now < settled_at:
            # Not listed yet is no proof yet: the Create may still be on its way or being
            # carried out. Sending again now could make a second job once the first lands.
            why = "no job listed yet; a late Create may still make one"
            self._ledger.defer_reconcile(entry.id, settled_at, why, now, fence=entry.claim_token)
            delay_s = round((settled_at - now).total_seconds(), 3)
            log.info("job.reconcile_deferred", reason=why, delay_s=delay_s)
            return State.SUBMITTING
        self._ledger.release(entry.id, now, fence=entry.claim_token)
        log.info(
            "job.reconciled", job_id=None, outcome="not created; submitting again", reason=reason
        )
        return State.PENDING

    # --- helpers ---------------------------------------------------------------------------

    def _transient_retry(self, entry: Entry, reason: str) -> Decision:
        return transient_retry(
            self._policy,
            self._rng.random(),
            reason,
            attempts=entry.attempts,
        )

    def _apply_retry(self, entry: Entry, decision: Decision) -> State:
        if decision.action is Action.REJECT:
            return self._reject(entry, decision.reason)
        now = self._clock()
        self._ledger.schedule_retry(
            entry.id,
            now + timedelta(seconds=decision.delay_s),
            decision.reason,
            now,
            transient=decision.transient,
            fence=entry.claim_token,
        )
        quiet = (decision.transient and self._in_outage()) or (
            decision.held and self._reachability is not None
        )
        self._bind(entry).log(
            logging.DEBUG if quiet else logging.INFO,
            "job.retry",
            attempt=entry.attempts,
            delay_s=round(decision.delay_s, 3),
            reason=decision.reason,
        )
        return State.PENDING

    def _held(self, entry: Entry, exc: errors.Held) -> None:
        """The account's problem: told once for all files (a line per file per retry would
        bury it), or per file when no one keeps count."""
        if self._reachability is not None:
            self._reachability.hold(exc)
            return
        self._bind(entry).error(
            exc.event,
            code=exc.code,
            message=exc.message,
            hint=exc.hint,
            clock_skew_s=exc.skew_s if isinstance(exc, errors.AuthError) else None,
        )

    def _in_outage(self) -> bool:
        return self._reachability is not None and self._reachability.outage() is not None

    def _reject(self, entry: Entry, reason: str, *, logged: bool = False) -> State:
        self._ledger.record_rejected(entry.id, reason, self._clock(), fence=entry.claim_token)
        if not logged:
            self._bind(entry).warning("job.rejected", reason=reason)
        return State.REJECTED

    def _bind(self, entry: Entry) -> FilteringBoundLogger:
        return self._log.bind(
            watch=entry.watch, bucket=entry.bucket, key=entry.key, etag=entry.etag
        )
