"""Job tracking: entries with a job and a non-terminal phase, refreshed by List-by-Ids batches.

A duplicate that awaits its job (``on_change = "after-active"``) goes back to pending when
that job is seen ended, instead of recording the end: the submit workers take it from there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Protocol

from dropzone.ark import errors
from dropzone.ledger import RequestCounts
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from structlog.typing import FilteringBoundLogger

    from dropzone.ark.models import Job
    from dropzone.jobs.reachability import Reachability
    from dropzone.ledger import Entry, Ledger

BATCH = 100
TRACK_LIMIT = 5000


class JobLister(Protocol):
    def get_many(self, job_ids: tuple[str, ...], project_name: str | None) -> list[Job]: ...


def counts_of(job: Job) -> RequestCounts | None:
    counts = job.request_counts
    if counts is None:
        return None
    return RequestCounts(counts.total, counts.completed, counts.failed)


class Tracker:
    def __init__(
        self,
        *,
        ledger: Ledger,
        api: JobLister,
        projects: Mapping[str, str],
        clock: Callable[[], datetime],
        on_phase: Callable[[str, str], None] | None = None,
        limit: int = TRACK_LIMIT,
        reachability: Reachability | None = None,
    ) -> None:
        self._ledger = ledger
        self._api = api
        self._projects = dict(projects)
        self._clock = clock
        self._on_phase = on_phase
        self._limit = limit
        self._reachability = reachability
        self._log = get_logger()
        # Where the last round stopped: an unchanged job keeps its place in the order, so
        # rounds that always began at the front would never reach the jobs past the limit.
        self._resume_after: Entry | None = None

    def replace_projects(self, projects: Mapping[str, str]) -> None:
        self._projects = dict(projects)

    def track_once(self) -> int:
        """Refresh the next ``limit`` tracked entries (all of them, when there are no
        more), taking up where the last round stopped; returns how many changed phase."""
        batch = self._ledger.tracking(self._limit, after=self._resume_after)
        self._resume_after = batch[-1] if len(batch) == self._limit else None
        by_project: dict[str | None, list[Entry]] = defaultdict(list)
        for entry in batch:
            by_project[self._projects.get(entry.watch)].append(entry)
        changed = 0
        for project, entries in by_project.items():
            for start in range(0, len(entries), BATCH):
                changed += self._refresh(project, entries[start : start + BATCH])
        return changed

    def _refresh(self, project: str | None, entries: list[Entry]) -> int:
        ids = tuple(sorted({e.job_id for e in entries if e.job_id}))
        try:
            jobs = {job.id: job for job in self._api.get_many(ids, project)}
        except errors.ArkError as exc:
            # During an outage the outage is the news, logged once where it is noticed.
            in_outage = self._reachability is not None and self._reachability.outage()
            level = logging.DEBUG if in_outage else logging.WARNING
            self._log.log(level, "track.failed", error=exc.describe(), jobs=len(ids))
            return 0
        changed = 0
        for entry in entries:
            job = jobs.get(entry.job_id or "")
            if job is None:
                continue
            if entry.awaits_job and job.phase.is_terminal:
                self._end_wait(entry, job)
                continue
            counts = counts_of(job)
            if job.phase.value == entry.phase and counts == entry.request_counts:
                continue
            self._ledger.record_phase(entry.id, job.phase.value, counts, self._clock())
            if job.phase.value != entry.phase:
                changed += 1
                self._bind(entry).info(
                    "job.phase",
                    job_id=job.id,
                    phase=job.phase.value,
                    previous=entry.phase,
                    counts=dataclasses.asdict(counts) if counts else None,
                )
                if self._on_phase is not None:
                    self._on_phase(entry.watch, job.phase.value)
        return changed

    def _end_wait(self, entry: Entry, job: Job) -> None:
        """The job another version held the input with has ended: this version's turn."""
        released = self._ledger.end_wait(entry.id, job.id, job.phase.value, self._clock())
        if released is None:
            return  # retried or forgotten meanwhile: someone else decided
        self._bind(entry).info("job.wait_ended", awaited_job_id=job.id, phase=job.phase.value)

    def _bind(self, entry: Entry) -> FilteringBoundLogger:
        return self._log.bind(
            watch=entry.watch, bucket=entry.bucket, key=entry.key, etag=entry.etag
        )
