"""Local folder sources: a watched folder whose files stand for objects in a bucket.

The source only reports what it sees; it knows nothing of the ledger or the Ark API. A file's
object key is the watch's prefix plus its relpath below the folder (POSIX, NFC). What makes
the file an object depends on ``local_mode``:

- ``upload``: dropzone uploads it (:func:`upload_file`);
- ``synced``: another tool copies the folder; wait for the object (:func:`synced_object`);
- ``mounted``: the folder is a mount of the bucket, the file is the object
  (:func:`local_object`); such folders are watched by polling.

The pieces live in small modules: ``files`` (names, keys, the walk), ``settle`` (when a file is
complete, pure), ``watch`` (watchdog and rescans, one worker thread), ``overflow`` (a lost
inotify event turned into a rescan) and ``objects`` (the bucket side). This module is the one
to import.
"""

from __future__ import annotations

from dropzone.ignore import DEFAULT_IGNORE
from dropzone.sources.local.files import (
    LocalFile,
    is_ignored,
    key_for,
    relpath_of,
    scan,
    stat_file,
)
from dropzone.sources.local.objects import (
    FileGone,
    FileUnreadable,
    file_md5,
    is_md5_etag,
    local_object,
    synced_object,
    upload_file,
)
from dropzone.sources.local.settle import SettleTracker
from dropzone.sources.local.watch import FolderWatcher

__all__ = [
    "DEFAULT_IGNORE",
    "FileGone",
    "FileUnreadable",
    "FolderWatcher",
    "LocalFile",
    "SettleTracker",
    "file_md5",
    "is_ignored",
    "is_md5_etag",
    "key_for",
    "local_object",
    "relpath_of",
    "scan",
    "stat_file",
    "synced_object",
    "upload_file",
]
