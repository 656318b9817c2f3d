"""What a daemon is given at construction: its watches, and collaborators that may do nothing.

A collaborator the daemon can run without (operations, job tracking, a config reload) is given
as a do-nothing implementation rather than ``None``, so the loops never ask whether it is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from dropzone.ledger import State
    from dropzone.watches.bucket import BucketWatch, PollResult
    from dropzone.watches.folder import FolderWatch


@dataclass(frozen=True)
class WatchSet:
    """The watches of one configuration; a reload builds a new set and the daemon swaps it in
    between two rounds of its main loop. ``caps``: ``max_active_jobs`` per watch that has one."""

    buckets: tuple[BucketWatch, ...] = ()
    folders: tuple[FolderWatch, ...] = ()
    caps: Mapping[str, int] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [w.rule.name for w in self.buckets] + [f.rule.name for f in self.folders]


class OpsEvents(Protocol):
    """What the daemon tells operations (metrics, /healthz, systemd): see ``ops.DaemonOps``."""

    def polled(self, watch: str, result: PollResult | None, *, folder: bool = False) -> None: ...
    def outcome(self, watch: str, state: State) -> None: ...
    def ready_when_polled(self, watches: Iterable[str]) -> None: ...
    def tick(self) -> None: ...
    def stopping(self) -> None: ...


class NoOps:
    """Operations for a daemon nobody watches (``run --once``, ``submit``, tests)."""

    def polled(self, watch: str, result: PollResult | None, *, folder: bool = False) -> None:
        pass

    def outcome(self, watch: str, state: State) -> None:
        pass

    def ready_when_polled(self, watches: Iterable[str]) -> None:
        pass

    def tick(self) -> None:
        pass

    def stopping(self) -> None:
        pass


class JobTracking(Protocol):
    def track_once(self) -> int: ...


class NoTracking:
    """Tracking for a daemon that does not follow its jobs' phases."""

    def track_once(self) -> int:
        return 0


class Notices(Protocol):
    """The outbox's delivery (``notify.NotifyService``)."""

    def active(self) -> bool: ...
    def deliver_due(self, stopping: Callable[[], bool]) -> int: ...
    def close(self) -> None: ...


class NoNotices:
    """Notifications for a daemon whose watches tell nobody."""

    def active(self) -> bool:
        return False

    def deliver_due(self, stopping: Callable[[], bool]) -> int:  # noqa: ARG002
        return 0

    def close(self) -> None:
        pass


class Reload(Protocol):
    """The watches of a configuration read again (SIGHUP), given the running ones (a folder
    watch whose rule is unchanged goes on running); None keeps them (a bad config is
    refused, and said so, by the reload itself)."""

    def __call__(self, running: WatchSet) -> WatchSet | None: ...


def no_reload(running: WatchSet) -> WatchSet | None:  # noqa: ARG001 - a Reload that keeps them
    return None


NO_OPS = NoOps()
NO_TRACKING = NoTracking()
NO_NOTICES = NoNotices()
