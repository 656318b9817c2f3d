"""Watching a folder: watchdog events for speed, full rescans for certainty.

The observer's callbacks run on its own thread and only enqueue small signals. One worker
thread per watcher owns everything else (stats, the settle tracker, the ``on_ready`` calls),
so no state is shared between threads but the queue.

A full rescan runs at start (files dropped while the daemon was down) and every
``poll_interval_s`` (inotify queues overflow, and watchdog does not always say so). With
``polling=True`` watchdog's ``PollingObserver`` runs at the same interval: inotify sees little on
FUSE and network mounts. inotify runs beside it where it can be set up, for the writes the
kernel does see (a local or bind mount, files written through this host): those count at once
rather than at the next poll. The rescan stays on in every case, because a polling emitter
stops for good when its folder vanishes (an unmounted share) and the rescan does not.
"""

from __future__ import annotations

import enum
import errno
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from dropzone.log import get_logger
from dropzone.sources.base import SourceConfigError
from dropzone.sources.local.files import is_ignored, relpath_of, scan, stat_file
from dropzone.sources.local.overflow import on_overflow, stop_hearing
from dropzone.sources.local.settle import SettleTracker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType

    from watchdog.observers.api import BaseObserver

    from dropzone.sources.local.files import LocalFile

# Signals taken off the queue in one go, de-duplicated: a large write is thousands of
# modified events for the same path, and one stat answers them all.
_BATCH = 1024
# After an unexpected error in the worker, wait before the next round rather than spin.
_ERROR_PAUSE_S = 1.0


class _Kind(enum.Enum):
    CLOSED = "closed"  # a completion event: close after write, or renamed into place
    CHANGED = "changed"  # created, modified or deleted: stat it and let it settle
    TREE = "tree"  # a folder appeared: walk it
    RESCAN = "rescan"
    STOP = "stop"


@dataclass(frozen=True)
class _Signal:
    kind: _Kind
    path: str = ""
    done: threading.Event | None = None


def _signals_for(event: FileSystemEvent) -> list[_Signal]:
    """What the worker must do about one watchdog event (pure; runs on the observer's thread)."""
    src = os.fsdecode(event.src_path)
    dest = os.fsdecode(event.dest_path)
    if isinstance(event, FileClosedEvent):
        return [_Signal(_Kind.CLOSED, src)]
    if isinstance(event, FileMovedEvent):
        # The source is gone (or was a temp name); the destination was renamed into place.
        moved = [_Signal(_Kind.CHANGED, src)] if src else []
        return moved + ([_Signal(_Kind.CLOSED, dest)] if dest else [])
    if isinstance(event, FileCreatedEvent | FileModifiedEvent | FileDeletedEvent):
        return [_Signal(_Kind.CHANGED, src)]
    if isinstance(event, DirCreatedEvent):
        return [_Signal(_Kind.TREE, src)]
    if isinstance(event, DirMovedEvent) and dest:
        return [_Signal(_Kind.TREE, dest)]
    return []


class _Enqueue(FileSystemEventHandler):
    def __init__(self, put: Callable[[_Signal], None]) -> None:
        super().__init__()
        self._put = put

    def dispatch(self, event: FileSystemEvent) -> None:
        for signal in _signals_for(event):
            self._put(signal)


class FolderWatcher:
    """Reports each complete file version in a folder once, to ``on_ready``, on its own thread.

    ``on_ready`` should be quick (record the file, hand it on): it runs on the worker, and
    ``stop()`` waits for it. If it raises, the error is logged and the file is forgotten, so the
    next sighting (at the latest the next rescan) reports it again.
    """

    def __init__(  # noqa: PLR0913 - keywords, each an independent knob of the watch
        self,
        root: Path,
        *,
        ignore: Sequence[str],
        settle_s: float,
        polling: bool,
        poll_interval_s: float,
        on_ready: Callable[[LocalFile], None],
        on_ready_many: Callable[[list[LocalFile]], list[LocalFile]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        events: bool = True,
    ) -> None:
        """``events=False`` with ``polling``: no inotify beside the polling (what a mount whose
        kernel reports nothing amounts to; tests use it to reach that path).
        ``on_ready_many``: given, the files that became ready in one turn go to it together
        (up to 1,024 at a time), so that a flood is recorded in few transactions, not one each;
        it deals with each file's own problems and returns the files to see again later (all
        of them, if it raises)."""
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, not {poll_interval_s}")
        self.root = Path(root).absolute()
        self._ignore = tuple(ignore)
        self._polling = polling
        self._events = events or not polling
        self._poll_interval_s = poll_interval_s
        self._on_ready = on_ready
        self._on_ready_many = on_ready_many
        self._ready: list[LocalFile] = []
        self._clock = clock
        self._tracker = SettleTracker(settle_s)
        self._signals: queue.SimpleQueue[_Signal] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._observers: list[BaseObserver] = []
        self._worker: threading.Thread | None = None
        self._real_root = self.root
        self._next_rescan = 0.0
        self._listing_failed = False
        self._overflow_token: int | None = None
        self._overflows = 0
        self._overflow_rescan_pending = threading.Event()
        self._log = get_logger(source="local", folder=str(self.root))

    # --- the owner's side -------------------------------------------------------------------

    def start(self) -> None:
        """Watch the folder, then rescan it: a file dropped meanwhile is seen by one or both."""
        if self._worker is not None:
            raise RuntimeError("the watcher is already running")
        if not self.root.is_dir():
            raise SourceConfigError(f"local_dir {self.root} is not a folder")
        self._real_root = self.root.resolve()
        self._overflow_token = on_overflow(self._overflowed)
        observers = self._start_observers()
        self._stopping.clear()
        self._next_rescan = self._clock()
        worker = threading.Thread(target=self._run, name=f"dropzone-local-{self.root.name}")
        worker.daemon = True
        worker.start()
        self._observers, self._worker = observers, worker

    def stop(self) -> None:
        """Stop watching; waits for the observer and for a report in progress."""
        observers, worker = self._observers, self._worker
        self._observers, self._worker = [], None
        if self._overflow_token is not None:
            stop_hearing(self._overflow_token)
            self._overflow_token = None
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join()
        if worker is not None:
            self._stopping.set()
            self._signals.put(_Signal(_Kind.STOP))
            worker.join()

    def _overflowed(self) -> None:
        """The kernel dropped events (on watchdog's thread): rescan now, said once."""
        self._overflows += 1
        if self._overflows == 1:
            self._log.warning(
                "local.events_overflowed",
                note="the kernel's inotify queue overflowed and events were lost (a flood of "
                "files; fs.inotify.max_queued_events): the folder is rescanned now, and after "
                "each further overflow, without another line",
            )
        if not self._overflow_rescan_pending.is_set():
            self._overflow_rescan_pending.set()
            self._signals.put(_Signal(_Kind.RESCAN))

    def rescan_now(self) -> threading.Event:
        """Ask for a full rescan; the event is set once it and its reports are done."""
        if self._worker is None:
            raise RuntimeError("the watcher is not running")
        done = threading.Event()
        self._signals.put(_Signal(_Kind.RESCAN, done=done))
        return done

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_observers(self) -> list[BaseObserver]:
        if not self._polling:
            try:
                return [self._started(Observer())]
            except OSError as exc:
                # Typically the inotify watch or instance limit: a host setting, not a retry.
                raise SourceConfigError(
                    f"cannot watch {self.root}: {exc} (raise fs.inotify.max_user_watches"
                    " / max_user_instances, or poll the folder)"
                ) from exc
        try:
            polling = self._started(PollingObserver(timeout=self._poll_interval_s))
        except OSError as exc:
            raise SourceConfigError(f"cannot watch {self.root}: {exc}") from exc
        if not self._events:
            return [polling]
        try:
            return [polling, self._started(Observer())]
        except OSError as exc:
            # The polling observer and the rescans still see everything, only later.
            self._log.info("local.events_unavailable", error=str(exc), note="polled only")
            return [polling]

    def _started(self, observer: BaseObserver) -> BaseObserver:
        observer.schedule(_Enqueue(self._signals.put), str(self.root), recursive=True)
        observer.start()
        return observer

    # --- the worker's side ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self._round():
                    return
            except Exception:  # noqa: BLE001 - the watch must outlive a bug; it is logged
                self._log.exception("local.watcher_error")
                self._stopping.wait(_ERROR_PAUSE_S)

    def _round(self) -> bool:
        """One turn of the worker: rescan if due, settle, handle signals; False on STOP."""
        if self._clock() >= self._next_rescan:
            self._rescan()
        for file in self._tracker.due(self._clock()):
            self._recheck(file)
        self._flush()
        for signal in self._take(self._wait_s()):
            if signal.kind is _Kind.STOP:
                self._flush()  # what was found before the stop is recorded, not left
                return False
            self._handle(signal)
        self._flush()
        return True

    def _take(self, timeout: float) -> list[_Signal]:
        try:
            batch = [self._signals.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < _BATCH:
            try:
                batch.append(self._signals.get_nowait())
            except queue.Empty:
                break
        return list(dict.fromkeys(batch))

    def _wait_s(self) -> float:
        wake = self._next_rescan
        due = self._tracker.next_due()
        if due is not None:
            wake = min(wake, due)
        return max(0.0, wake - self._clock())

    def _handle(self, signal: _Signal) -> None:
        if signal.kind is _Kind.RESCAN:
            self._rescan()
            if signal.done is not None:
                signal.done.set()
        elif signal.kind is _Kind.TREE:
            self._observe_all(scan(self.root, self._ignore, under=Path(signal.path)))
        else:
            self._handle_path(signal)

    def _handle_path(self, signal: _Signal) -> None:
        relpath = relpath_of(self.root, signal.path)
        if relpath is None or is_ignored(relpath, self._ignore):
            return
        file = stat_file(signal.path, relpath, self._real_root)
        if file is None:
            self._tracker.forget(relpath)
        elif signal.kind is _Kind.CLOSED:
            self._report(self._tracker.closed(file))
        else:
            self._report(self._tracker.observe(file, self._clock()))

    def _recheck(self, seen: LocalFile) -> None:
        # The settle window passed with no news: look again, since no event may ever come.
        file = stat_file(seen.path, seen.relpath, self._real_root)
        if file is None:
            self._tracker.forget(seen.relpath)
        else:
            self._report(self._tracker.observe(file, self._clock()))

    def _rescan(self) -> None:
        self._overflow_rescan_pending.clear()
        self._listing_failed = False
        self._observe_all(scan(self.root, self._ignore, on_error=self._scan_error))
        # A folder that could not be listed would make its files look deleted: no sweep then.
        if not self._listing_failed:
            self._tracker.end_sweep()
        self._flush()
        self._next_rescan = self._clock() + self._poll_interval_s

    def _scan_error(self, exc: OSError) -> None:
        if exc.errno != errno.EILSEQ:
            self._listing_failed = True
        self._log.warning("local.scan_error", path=str(exc.filename), error=exc.strerror)

    def _observe_all(self, files: Iterable[LocalFile]) -> None:
        for file in files:
            self._report(self._tracker.observe(file, self._clock()))

    def _report(self, file: LocalFile | None) -> None:
        if file is None:
            return
        if self._on_ready_many is not None:
            self._ready.append(file)
            if len(self._ready) >= _BATCH:
                self._flush()
            return
        try:
            self._on_ready(file)
        except Exception:  # noqa: BLE001 - the caller's failure is logged and retried later
            self._log.exception("local.report_failed", relpath=file.relpath)
            self._tracker.forget(file.relpath)

    def _flush(self) -> None:
        batch, self._ready = self._ready, []
        if not batch or self._on_ready_many is None:
            return
        try:
            again = self._on_ready_many(batch)
        except Exception:  # noqa: BLE001 - the caller's failure is logged and retried later
            self._log.exception("local.report_failed", files=len(batch))
            again = batch
        for file in again:
            self._tracker.forget(file.relpath)
