"""Jobs made and not yet recorded: an attempt's outcome waits for the next claim's commit.

A worker's Create answered with a job; the entry's move to ``submitted`` need not have a
transaction and a commit of its own (an attempt's outcome was never durable at once: a crash
before it is written leaves the entry ``submitting`` under its durable claim, reconciled by its
tag, which finds the job). The daemon's next claim writes every job waiting here in its own
transaction (``Ledger.settle_and_claim``), and a worker with nothing to claim writes them
alone: a job's outcome is in the ledger once its worker looks for more work.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dropzone.ledger import JobMade


class JobsMade:
    """Shared by the submitter (which adds) and the daemon's workers (which take); thread-safe."""

    def __init__(self) -> None:
        self._jobs: list[JobMade] = []
        self._lock = threading.Lock()

    def add(self, job: JobMade) -> None:
        with self._lock:
            self._jobs.append(job)

    def take(self) -> list[JobMade]:
        """All waiting, in the order made; they are the caller's to write or give back."""
        with self._lock:
            taken, self._jobs = self._jobs, []
        return taken

    def give_back(self, jobs: Sequence[JobMade]) -> None:
        """Jobs taken whose write failed: first in line for the next one."""
        if jobs:
            with self._lock:
                self._jobs[:0] = jobs

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
