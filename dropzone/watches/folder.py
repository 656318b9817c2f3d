"""A local-folder watch: files reported by the folder source become ledger entries.

The folder source knows nothing of the ledger; this glue turns each complete file into an
object (uploaded, synced by another tool, or the mounted file itself) and records it. It runs
on the source's worker thread, never on watchdog's observer thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from dropzone import plan
from dropzone.ledger import LedgerError, ScopeStatus, State
from dropzone.ledger.diff import Listed
from dropzone.log import get_logger
from dropzone.sources.base import ObjectRefused, SourceError
from dropzone.sources.local import (
    FileGone,
    FileUnreadable,
    FolderWatcher,
    LocalFile,
    key_for,
    local_object,
    scan,
    stat_file,
    synced_object,
    upload_file,
)
from dropzone.watches.bucket import start_state

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from pathlib import Path

    from dropzone.config import WatchRule
    from dropzone.ledger import Entry, Ledger
    from dropzone.sources.base import StoredObject
    from dropzone.sources.tos import TosBucket
    from dropzone.watches.first_start import FirstStart

# The shortest pause between two looks at the files the start waits for.
_MIN_CHECK_S = 0.05


class FolderWatch:
    """One ``local_dir`` watch: the watcher, its first-start baseline and its waiting files."""

    def __init__(
        self,
        *,
        rule: WatchRule,
        ledger: Ledger,
        bucket: TosBucket | None,
        clock: Callable[[], datetime],
        poll_interval_s: float,
        on_new: Callable[[], None],
        first_start: FirstStart | None = None,
    ) -> None:
        """``first_start``: asked before a first start baselines the files there."""
        if rule.local_dir is None:
            raise ValueError(f"watch {rule.name} has no local_dir")
        if rule.local_mode != "mounted" and bucket is None:
            raise ValueError(f"watch {rule.name} in {rule.local_mode} mode needs the bucket")
        self.rule = rule
        self._ledger = ledger
        self._bucket = bucket
        self._clock = clock
        self._on_new = on_new
        self._first_start = first_start
        # Files there at the first start (relpath -> size, mtime), until each is recorded.
        self._first_versions: dict[str, tuple[int, int]] = {}
        # Files there at this start that the start still waits for.
        self._unreported: dict[str, LocalFile] = {}
        self._all_reported = threading.Event()
        # While the start runs, baseline entries are counted for one summary line.
        self._baseline_count: int | None = None
        self._lock = threading.Lock()
        self._log = get_logger(watch=rule.name, bucket=rule.bucket)
        self.last_scan_at: float | None = None
        self._late: set[int] = set()
        self.watcher = FolderWatcher(
            rule.local_dir,
            ignore=rule.folder_ignore,
            settle_s=rule.settle_s,
            # inotify sees little on FUSE and network mounts: a mounted folder is polled.
            polling=rule.local_mode == "mounted",
            poll_interval_s=poll_interval_s,
            on_ready=self.file_ready,
            on_ready_many=self.files_ready,
        )

    def start(self, *, wait_s: float = 60.0) -> bool:
        """Start watching; returns once the files already there are recorded (or ``wait_s`` passed).

        Files already in the folder are seen by scans only, so each counts once it has stayed
        unchanged for ``settle_s``; the start waits for that too (not for files still being
        written), so that ``run --once`` finds them in the ledger, and on a first start with
        ``on_start = "skip-existing"`` they are recorded as ``baseline``, however long the
        settle takes.
        """
        rule = self.rule
        assert rule.local_dir is not None
        deadline = time.monotonic() + wait_s
        status = self._ledger.begin_watch(rule.name, rule.bucket, rule.prefix, self._clock())
        first_listing = status is not ScopeStatus.UNCHANGED or not self._ledger.baseline_done(
            rule.name
        )
        if first_listing and self._first_start is not None:
            self._first_start.check(rule)  # raises FirstStartHeld
        present = _present(rule.local_dir, rule.folder_ignore)
        with self._lock:
            # Baseline is what was there at the first start, in the version seen then: a file
            # changed since is a new version (as a bucket poller would see a new ETag).
            self._first_versions = (
                {relpath: (f.size, f.mtime_ns) for relpath, f in present.items()}
                if first_listing
                else {}
            )
            self._unreported = dict(present)
            self._all_reported.clear()
            self._baseline_count = 0
        try:
            self.watcher.start()
            done = self.watcher.rescan_now().wait(wait_s) and self._await_present(deadline)
        finally:
            with self._lock:
                self._unreported.clear()
                baseline, self._baseline_count = self._baseline_count or 0, None
        if done and first_listing:
            self._ledger.mark_baseline_done(rule.name)
        if baseline:
            self._log.info("object.baseline", count=baseline, on_start=rule.on_start)
        self._log.info(
            "local.started",
            folder=str(rule.local_dir),
            mode=rule.local_mode,
            files=len(present),
            first_start=first_listing,
            complete=done,
        )
        self.last_scan_at = time.time()
        return done

    def _await_present(self, deadline: float) -> bool:
        """Wait until each file seen at start is recorded, or changed (then it is not there yet)."""
        step = max(self.rule.settle_s, _MIN_CHECK_S)
        while True:
            with self._lock:
                left = list(self._unreported.items())
            for relpath, seen in left:
                if _version_of(seen.path) != (seen.size, seen.mtime_ns):
                    with self._lock:
                        self._unreported.pop(relpath, None)
            with self._lock:
                if not self._unreported:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._all_reported.wait(min(step, remaining))

    def stop(self) -> None:
        self.watcher.stop()

    def rescan(self, wait_s: float = 60.0) -> bool:
        done = self.watcher.rescan_now().wait(wait_s)
        if done:
            self.last_scan_at = time.time()
        return done

    # --- the source's callback ---------------------------------------------------------------

    def file_ready(self, file: LocalFile) -> None:
        """A complete file: record it (uploading or waiting for the sync as the mode says)."""
        if self.files_ready([file]):
            raise SourceError(f"{file.path}: the store could not be reached; seen again later")

    def files_ready(self, files: list[LocalFile]) -> list[LocalFile]:
        """Complete files, recorded in one transaction (a flood is thousands at once);
        returns those to be seen again (the store could not be reached for them this time)."""
        again: list[LocalFile] = []
        found: list[_Found] = []
        recorded = False
        try:
            for file in files:
                try:
                    one = self._found(file)
                except SourceError as exc:
                    self._log.warning("local.report_failed", relpath=file.relpath, error=str(exc))
                    again.append(file)
                    continue
                if one is not None:
                    found.append(one)
            self._record_all(found)
            recorded = True
            return again
        finally:
            # Reported, or failed (retried at the next sighting): the start waits no longer.
            # A first start's version stays one until recorded: a file whose upload failed
            # for a moment is still baseline when it is seen again.
            seen_again = {file.relpath for file in again}
            with self._lock:
                for file in files:
                    self._unreported.pop(file.relpath, None)
                    if recorded and file.relpath not in seen_again:
                        self._first_versions.pop(file.relpath, None)
                if not self._unreported:
                    self._all_reported.set()

    def _found(self, file: LocalFile) -> _Found | None:
        """What to record for a file: its object's version and start state, or, for a file
        that cannot be read or an upload the store refuses, a ``rejected`` entry saying why
        (one line, once; a changed file is a new version and is tried again)."""
        key = key_for(self.rule.prefix, file.relpath)
        if not plan.is_candidate(self.rule, key):
            # Not input (the pattern, an error report, the watch's own results): as a bucket
            # watch skips such keys, a folder watch neither uploads nor records them.
            return None
        try:
            stored = self._object_for(key, file)
        except FileGone:
            return None  # gone since it was seen: nothing to record
        except FileUnreadable as exc:
            return _Found(key, file, _unread_etag(file), file.size, State.REJECTED, str(exc))
        except ObjectRefused as exc:
            etag = _unread_etag(file)
            with contextlib.suppress(SourceError):
                etag = self._local_etag(key, file)
            return _Found(key, file, etag, file.size, State.REJECTED, str(exc))
        if stored is None:
            return _Found(key, file, self._local_etag(key, file), file.size, State.WAITING, None)
        state, note = self._state_for(key, file, stored.etag)
        return _Found(key, file, stored.etag, stored.size, state, note)

    def _state_for(self, key: str, file: LocalFile, etag: str) -> tuple[State, str | None]:
        """Baseline for a file there at the first start (skip-existing) or an ignored change."""
        with self._lock:
            first = self._first_versions.get(file.relpath) == (file.size, file.mtime_ns)
        state = start_state(self.rule, first_listing=first)
        if state is State.PENDING and self.rule.on_change == "ignore":
            known = self._ledger.find(self.rule.name, self.rule.bucket, key)
            if any(entry.etag != etag for entry in known):
                # A new version of a known file, recorded only (as the bucket poller does).
                return State.BASELINE, "on_change=ignore"
        return state, None

    def _object_for(self, key: str, file: LocalFile) -> StoredObject | None:
        mode = self.rule.local_mode
        if mode == "mounted":
            return local_object(key, file)
        assert self._bucket is not None
        if mode == "upload":
            return upload_file(self._bucket, key, file)
        return synced_object(self._bucket, key, file)

    def _local_etag(self, key: str, file: LocalFile) -> str:
        # A waiting entry needs an identity before the object exists: the file's own MD5.
        return local_object(key, file).etag

    def _record_all(self, found: list[_Found]) -> None:
        items = [(Listed(f.key, f.etag, f.size), f.state, f.note) for f in found]
        created = self._ledger.add_objects(self.rule.name, self.rule.bucket, items, self._clock())
        by_version = {(f.key, f.etag): f for f in found}
        woke = False
        for entry in created:
            one = by_version[(entry.key, entry.etag)]
            woke = self._tell(entry, one) or woke
        if woke:
            self._on_new()

    def _tell(self, entry: Entry, found: _Found) -> bool:
        """Log a newly recorded entry; True when it is work for the submitters."""
        if entry.state is State.REJECTED:
            self._log.warning(
                "job.rejected",
                key=entry.key,
                etag=entry.etag,
                reason=found.note,
                path=str(found.file.path),
            )
            return False
        if entry.state is State.BASELINE and found.note is None:
            with self._lock:
                if self._baseline_count is not None:
                    self._baseline_count += 1  # one summary line at the end of the start
                    return False
            self._log.info(
                "object.baseline", key=entry.key, etag=entry.etag, size=entry.size, count=1
            )
            return False
        extra = {} if found.note is None else {"note": found.note}
        self._log.info(
            "object.detected",
            key=entry.key,
            etag=entry.etag,
            size=entry.size,
            state=entry.state,
            path=str(found.file.path),
            **extra,
        )
        return entry.state is not State.BASELINE

    # --- synced mode: waiting entries ---------------------------------------------------------

    def check_waiting(self) -> int:
        """Promote waiting entries whose object has arrived; returns how many moved."""
        if self.rule.local_mode != "synced" or self._bucket is None:
            return 0
        moved = 0
        for entry in list(self._ledger.in_state(State.WAITING, self.rule.name)):
            try:
                moved += self._check_one(entry)
            except (SourceError, LedgerError) as exc:
                # LedgerError: the entry moved or was forgotten meanwhile (dropzone forget).
                self._log.warning("object.sync_check_failed", key=entry.key, error=str(exc))
        if moved:
            self._on_new()
        return moved

    def _check_one(self, entry: Entry) -> int:
        assert self._bucket is not None
        assert self.rule.local_dir is not None
        relpath = entry.key.removeprefix(self.rule.prefix)
        path = self.rule.local_dir / relpath
        file = stat_file(path, relpath, self.rule.local_dir.resolve())
        if file is None:
            self._reject(entry, "the local file disappeared before its object reached the bucket")
            return 0
        stored = synced_object(self._bucket, entry.key, file)
        if stored is None:
            self._warn_if_late(entry)
            return 0
        if stored.etag != entry.etag:
            versions = self._ledger.find(entry.watch, entry.bucket, entry.key)
            if any(other.etag == stored.etag for other in versions):
                # The file changed before this version reached the bucket, and the version
                # that did arrive has an entry of its own: this one will never arrive.
                self._reject(
                    entry, "superseded: the file changed before this version reached the bucket"
                )
                return 0
            entry = self._ledger.update_waiting(entry.id, stored.etag, stored.size, self._clock())
        self._ledger.promote_waiting(entry.id, self._clock())
        return 1

    def _reject(self, entry: Entry, reason: str) -> None:
        # Logged as the submitter logs an object it will never submit (deleted, replaced).
        self._ledger.record_rejected(entry.id, reason, self._clock())
        self._log.warning("job.rejected", key=entry.key, etag=entry.etag, reason=reason)

    def _warn_if_late(self, entry: Entry) -> None:
        waited = self._clock() - entry.first_seen_at
        # One clear line per entry when the wait passes the limit, not one per check.
        if waited >= timedelta(seconds=self.rule.sync_timeout_s) and entry.id not in self._late:
            self._late.add(entry.id)
            self._log.warning(
                "object.sync_late",
                key=entry.key,
                waited_s=round(waited.total_seconds()),
                note="the object is not in the bucket yet; still waiting",
            )


@dataclass(frozen=True)
class _Found:
    """A file as it is to be recorded: key, version, start state (``note``: why, for a
    rejected one the reason, for an ignored change that it was ignored)."""

    key: str
    file: LocalFile
    etag: str
    size: int
    state: State
    note: str | None


def _unread_etag(file: LocalFile) -> str:
    # A file that cannot be read has no content hash; its size and time tell a changed one.
    return f"unread-{file.size}-{file.mtime_ns}"


def _present(root: Path, ignore: Sequence[str]) -> dict[str, LocalFile]:
    """Every file in the folder now, as the watcher's walk sees it, by relpath."""
    if not root.is_dir():
        return {}  # the watcher's start says why
    return {file.relpath: file for file in scan(root, ignore)}


def _version_of(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns
