"""The daemon's ops events, fed to metrics, the heartbeat and systemd in one place."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import TYPE_CHECKING

from dropzone.ledger import State
from dropzone.log import get_logger
from dropzone.ops.metrics import observe_ledger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime
    from pathlib import Path

    from dropzone.ledger import Ledger
    from dropzone.ops.health import Heartbeat
    from dropzone.ops.metrics import Metrics
    from dropzone.ops.systemd import SystemdNotifier
    from dropzone.watches.bucket import PollResult

STATUS_EVERY_S = 10.0


class DaemonOps:
    """What operators see: metrics, /healthz (through the heartbeat), and systemd notify."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        heartbeat: Heartbeat,
        notifier: SystemdNotifier,
        ledger: Ledger,
        clock: Callable[[], datetime],
    ) -> None:
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.notifier = notifier
        self._ledger = ledger
        self._clock = clock
        self._polled: set[str] = set()
        self._ready = False
        self._next_status = 0.0
        self._log = get_logger()

    def polled(self, watch: str, result: PollResult | None, *, folder: bool = False) -> None:
        """``result``: the listing this node made, None when it made none (another node lists
        the watch, its feed triggers it meanwhile); ``folder``: a local-folder watch's round,
        which its last-poll gauge shows as a listing's (alerts on a watch never polled would
        fire for every folder watch otherwise)."""
        at = time.time()
        self._polled.add(watch)
        self.heartbeat.polled(watch, at)
        if folder:
            self.metrics.folder_checked(watch, at)
        if result is not None:
            self.metrics.poll_completed(watch, result.duration_s, at)
            self.metrics.object_detected(watch, result.new + result.baseline)
        observe_ledger(self.metrics, self._ledger, watch, self._clock())

    def outcome(self, watch: str, state: State) -> None:
        self.metrics.submission_result(watch, state)

    def ready_when_polled(self, watches: Iterable[str]) -> None:
        """READY=1 once every watch has had a successful poll (not before: systemd would
        report a service up that has not yet reached its bucket)."""
        if not self._ready and set(watches) <= self._polled:
            self._ready = True
            self.notifier.ready(self._status_text())
            self._log.info("daemon.ready", watches=sorted(self._polled))

    def tick(self) -> None:
        self.heartbeat.pulse(self.notifier)
        if self._ready and time.monotonic() >= self._next_status:
            self._next_status = time.monotonic() + STATUS_EVERY_S
            self.notifier.status(self._status_text())
            self._phases()
            self.metrics.claims_by_node(self._ledger.claims_by_node())

    def stopping(self) -> None:
        self.notifier.stopping()

    def _status_text(self) -> str:
        counts = self._ledger.counts()
        parts = [f"{state.value} {counts[state]}" for state in State if counts.get(state)]
        return "ledger: " + (", ".join(parts) or "empty")

    def _phases(self) -> None:
        phases: Counter[str] = Counter(
            entry.phase or "unknown" for entry in self._ledger.tracking(5000)
        )
        self.metrics.jobs_by_phase(phases)


def ledger_writable(path: Path, displaced: Callable[[], str | None]) -> Callable[[], bool]:
    """``displaced``: the open ledger's :meth:`~dropzone.ledger.Ledger.displaced`. A daemon's
    ledger exists from its start: a file gone or replaced since is no writable ledger."""

    def check() -> bool:
        writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
        return writable and displaced() is None

    return check
