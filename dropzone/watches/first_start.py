"""Whether a watch's first start in this ledger is really its first.

With ``on_start = "skip-existing"`` a first start records what is there as ``baseline``, never
submitted. A ledger that is new, restored from a backup or replaced by an empty one looks the
same to itself; the platform does not: every job dropzone makes carries ``dropzone-watch`` =
the watch's name. When the platform already holds such a job, baselining could skip files that
were waiting to be submitted, so the first start is held until the operator chooses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from dropzone import plan
from dropzone.ark import errors
from dropzone.errors import OperationalError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dropzone.ark.models import Job
    from dropzone.config import WatchRule
    from dropzone.ledger import Ledger


class WatchTagApi(Protocol):
    def newest_by_tag(
        self, key: str, value: str, project_name: str | None, count: int = 100
    ) -> list[Job]: ...


def in_scope(job: Job, rule: WatchRule) -> bool:
    """Whether the job's input is under the watch's bucket and prefix: a watch moved to
    another prefix starts a new baseline, whatever jobs the old one had."""
    where = job.input_file_tos_location
    if where is None or where.bucket_name != rule.bucket:
        return False
    return (where.object_key or "").startswith(rule.prefix)


class FirstStartHeld(OperationalError):
    """The watch's first start waits: the platform holds its jobs, or could not say.

    ``settled``: False when Ark could not be asked (the next poll asks again); True when the
    operator must choose (no retry changes it).
    """

    def __init__(self, message: str, *, settled: bool) -> None:
        super().__init__(message)
        self.settled = settled


def held_message(name: str) -> str:
    return (
        f"watch {name!r}: a first start in this ledger, but Ark already holds jobs tagged "
        f"{plan.WATCH_TAG_KEY}={name}, so the ledger is new, restored or replaced: recording "
        "what is there as baseline could skip files never submitted. Run `dropzone backfill "
        f"--watch {name}` to submit what is there (a file Ark already has a job for is "
        "adopted, not submitted again), or start once with `dropzone run --baseline-anyway` "
        "to record it as baseline"
    )


# A held first start asks Ark again at most this often: each ask is a List in the poll loop,
# and a silent platform would hold every poll for its time-out.
ASK_AGAIN_S = {True: 300.0, False: 60.0}  # by FirstStartHeld.settled


class FirstStart:
    """Asks the platform before a watch's first start baselines what is there."""

    def __init__(
        self,
        api: WatchTagApi,
        known: Callable[[WatchRule, Job], bool],
        *,
        baseline_anyway: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``known``: whether the ledger has the job's version for the watch (a first start
        cut short keeps its entries: jobs it made are no sign of a lost ledger).
        ``baseline_anyway``: the operator's choice to baseline whatever the platform holds."""
        self._api = api
        self._known = known
        self._baseline_anyway = baseline_anyway
        self._clock = clock
        self._held: dict[str, tuple[float, FirstStartHeld]] = {}

    def check(self, rule: WatchRule) -> None:
        """Raise FirstStartHeld unless this watch's first start may baseline."""
        if rule.on_start != "skip-existing" or self._baseline_anyway:
            return
        held = self._held.get(rule.name)
        if held is not None and self._clock() < held[0]:
            raise held[1]
        try:
            self._ask(rule)
        except FirstStartHeld as exc:
            self._held[rule.name] = (self._clock() + ASK_AGAIN_S[exc.settled], exc)
            raise
        self._held.pop(rule.name, None)

    def _ask(self, rule: WatchRule) -> None:
        try:
            jobs = self._api.newest_by_tag(plan.WATCH_TAG_KEY, rule.name, rule.project_name)
        except errors.ArkError as exc:
            raise FirstStartHeld(
                f"watch {rule.name!r}: its first start waits until Ark says whether it already "
                f"holds jobs of this watch ({exc.describe()})",
                settled=False,
            ) from exc
        if any(in_scope(job, rule) and not self._known(rule, job) for job in jobs):
            raise FirstStartHeld(held_message(rule.name), settled=True)


def ledger_knows(ledger: Ledger) -> Callable[[WatchRule, Job], bool]:
    """Whether ``ledger`` has an entry of the watch for the job's version (by its tag)."""

    def known(rule: WatchRule, job: Job) -> bool:
        where = job.input_file_tos_location
        tag = job.tag(plan.INPUT_TAG_KEY)
        if where is None or where.bucket_name is None or where.object_key is None or tag is None:
            return False
        entries = ledger.find(rule.name, where.bucket_name, where.object_key)
        return any(plan.input_tag(e.bucket, e.key, e.etag) == tag for e in entries)

    return known
