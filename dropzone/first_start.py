"""Whether a watch's first start in this ledger is really its first.

With ``on_start = "skip-existing"`` a first start records what is there as ``baseline``, never
submitted. A ledger that is new, restored from a backup or replaced by an empty one looks the
same to itself; the platform does not: every job dropzone makes carries ``dropzone-watch`` =
the watch's name. When the platform already holds such a job, baselining could skip files that
were waiting to be submitted, so the first start is held until the operator chooses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from dropzone import plan
from dropzone.ark import errors

if TYPE_CHECKING:
    from dropzone.ark.models import Job
    from dropzone.config import WatchRule


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


class FirstStartHeld(Exception):
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


class FirstStart:
    """Asks the platform before a watch's first start baselines what is there."""

    def __init__(self, api: WatchTagApi, *, baseline_anyway: bool = False) -> None:
        """``baseline_anyway``: the operator's choice to baseline whatever the platform holds."""
        self._api = api
        self._baseline_anyway = baseline_anyway

    def check(self, rule: WatchRule) -> None:
        """Raise FirstStartHeld unless this watch's first start may baseline."""
        if rule.on_start != "skip-existing" or self._baseline_anyway:
            return
        try:
            jobs = self._api.newest_by_tag(plan.WATCH_TAG_KEY, rule.name, rule.project_name)
        except errors.ArkError as exc:
            raise FirstStartHeld(
                f"watch {rule.name!r}: its first start waits until Ark says whether it already "
                f"holds jobs of this watch ({exc.describe()})",
                settled=False,
            ) from exc
        if any(in_scope(job, rule) for job in jobs):
            raise FirstStartHeld(held_message(rule.name), settled=True)
