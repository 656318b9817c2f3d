"""What every source reports, whatever it reads: stored objects, listing pages, and its errors.

The watches, the submitter and the daemon speak these types; only a source's own module knows
the client behind them (boto3 for a bucket, watchdog and the disk for a folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone.errors import OperationalError

if TYPE_CHECKING:
    from datetime import datetime


class SourceError(OperationalError):
    """The store could not be read this time (network, 5xx); the next poll tries again."""


class SourceConfigError(SourceError):
    """The store refused us for a reason only configuration fixes (no bucket, no access).

    Still an OperationalError: only the store's answer tells, so a command has run to learn it
    (``dropzone check`` reports it with exit 1), and the message names the bucket."""


class ObjectRefused(SourceError):
    """The store refused this one object (a key it will not take): nothing but a change to
    the file, its name or the store makes it go through, so it is not tried again as is."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class ListingPage:
    """One ListObjectsV2 page: its objects, the raw key range, and the server's clock."""

    objects: tuple[StoredObject, ...]
    last_key: str | None
    is_last: bool
    server_time: datetime
