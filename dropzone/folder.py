"""A local-folder watch: files reported by the folder source become ledger entries.

The folder source knows nothing of the ledger; this glue turns each complete file into an
object (uploaded, synced by another tool, or the mounted file itself) and records it. It runs
on the source's worker thread, never on watchdog's observer thread.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from dropzone.ledger import ScopeStatus, State
from dropzone.log import get_logger
from dropzone.scan import start_state
from dropzone.sources.local import (
    FolderWatcher,
    LocalFile,
    key_for,
    local_object,
    stat_file,
    synced_object,
    upload_file,
)
from dropzone.sources.tos import SourceError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from dropzone.config import WatchRule
    from dropzone.ledger import Entry, Ledger
    from dropzone.sources.tos import StoredObject, TosBucket


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
    ) -> None:
        if rule.local_dir is None:
            raise ValueError(f"watch {rule.name} has no local_dir")
        if rule.local_mode != "mounted" and bucket is None:
            raise ValueError(f"watch {rule.name} in {rule.local_mode} mode needs the bucket")
        self.rule = rule
        self._ledger = ledger
        self._bucket = bucket
        self._clock = clock
        self._on_new = on_new
        self._first_listing = False
        self._lock = threading.Lock()
        self._log = get_logger(watch=rule.name, bucket=rule.bucket)
        self.last_scan_at: float | None = None
        self._late: set[int] = set()
        self.watcher = FolderWatcher(
            rule.local_dir,
            ignore=rule.ignore,
            settle_s=rule.settle_s,
            # inotify sees little on FUSE and network mounts: a mounted folder is polled.
            polling=rule.local_mode == "mounted",
            poll_interval_s=poll_interval_s,
            on_ready=self.file_ready,
        )

    def start(self, *, wait_s: float = 60.0) -> bool:
        """Start watching; returns once the first full scan is recorded (or ``wait_s`` passed)."""
        rule = self.rule
        status = self._ledger.begin_watch(rule.name, rule.bucket, rule.prefix, self._clock())
        self._first_listing = status is not ScopeStatus.UNCHANGED or not self._ledger.baseline_done(
            rule.name
        )
        self.watcher.start()
        done = self.watcher.rescan_now().wait(wait_s)
        with self._lock:
            if done and self._first_listing:
                self._ledger.mark_baseline_done(rule.name)
            self._first_listing = False
        self.last_scan_at = time.time()
        return done

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
        key = key_for(self.rule.prefix, file.relpath)
        stored = self._object_for(key, file)
        if stored is None:
            self._record(key, file, self._local_etag(key, file), State.WAITING)
            return
        with self._lock:
            state = start_state(self.rule, first_listing=self._first_listing)
        self._record(key, file, stored.etag, state, size=stored.size)

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

    def _record(
        self, key: str, file: LocalFile, etag: str, state: State, *, size: int | None = None
    ) -> None:
        entry, created = self._ledger.add_object(
            self.rule.name, self.rule.bucket, key, etag, size or file.size, state, self._clock()
        )
        if not created:
            return
        if state is State.BASELINE:
            self._log.info("object.baseline", key=key, etag=etag, size=entry.size, count=1)
            return
        self._log.info(
            "object.detected",
            key=key,
            etag=etag,
            size=entry.size,
            state=entry.state,
            path=str(file.path),
        )
        self._on_new()

    # --- synced mode: waiting entries ---------------------------------------------------------

    def check_waiting(self) -> int:
        """Promote waiting entries whose object has arrived; returns how many moved."""
        if self.rule.local_mode != "synced" or self._bucket is None:
            return 0
        moved = 0
        for entry in list(self._ledger.in_state(State.WAITING, self.rule.name)):
            try:
                moved += self._check_one(entry)
            except SourceError as exc:
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
            self._ledger.record_rejected(entry.id, "the local file disappeared", self._clock())
            return 0
        stored = synced_object(self._bucket, entry.key, file)
        if stored is None:
            self._warn_if_late(entry)
            return 0
        if stored.etag != entry.etag:
            entry = self._ledger.update_waiting(entry.id, stored.etag, stored.size, self._clock())
        self._ledger.promote_waiting(entry.id, self._clock())
        return 1

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
