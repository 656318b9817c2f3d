"""From a local file to the object it stands for, in each ``local_mode``.

- ``upload``: :func:`upload_file` puts the file in the bucket (boto3's managed transfer,
  multipart above a threshold) unless the same content is already there, then checks it.
- ``synced``: :func:`synced_object` answers whether the sync tool has delivered it yet.
- ``mounted``: :func:`local_object` describes the file as the object it is.

Every botocore and boto3 error is translated by :func:`dropzone.sources.tos.translate`, chained;
a local read error becomes a :class:`SourceError` too, so callers handle one kind.

ETags: a single-part upload's ETag is the content's MD5 (32 hex digits). A multipart upload's
is ``md5(part md5s)-N`` on S3; whether TOS computes it the same way is not documented, so a
multipart ETag is used only to *skip* an upload when it matches what this file would give
(a mismatch merely costs an upload), and an upload that went multipart is verified by size.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import S3Transfer, TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.utils import ChunksizeAdjuster

from dropzone.sources.base import ObjectRefused, SourceError, StoredObject
from dropzone.sources.tos import refuses_the_object, translate

if TYPE_CHECKING:
    from pathlib import Path

    from dropzone.sources.local.files import LocalFile
    from dropzone.sources.tos import TosBucket

_READ_CHUNK = 1024 * 1024
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class _Fingerprint:
    md5: str
    size: int
    multipart_etag: str | None  # what a multipart upload with our part size would give


def is_md5_etag(etag: str) -> bool:
    """Whether an ETag is the content's MD5 (single-part upload), not a multipart digest."""
    return _MD5_ETAG.fullmatch(etag.lower()) is not None


class FileGone(SourceError):
    """The file was deleted (or renamed away) between its sighting and its reading."""


class FileUnreadable(SourceError):
    """The file is there and cannot be read (permissions, an I/O error): until it changes,
    reading it again tells the same."""


def file_md5(path: Path) -> str:
    """The file's MD5 as 32 lowercase hex digits, read in chunks (constant memory)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_object(key: str, file: LocalFile) -> StoredObject:
    """A mounted file as the object it is: ETag = MD5 (as for a single-part upload)."""
    try:
        etag = file_md5(file.path)
    except FileNotFoundError as exc:
        raise FileGone(f"reading {file.path}: {exc}") from exc
    except OSError as exc:
        raise FileUnreadable(f"the file {file.path} cannot be read: {exc.strerror or exc}") from exc
    modified = datetime.fromtimestamp(file.mtime_ns / 1e9, UTC)
    return StoredObject(key=key, etag=etag, size=file.size, last_modified=modified)


def synced_object(bucket: TosBucket, key: str, file: LocalFile) -> StoredObject | None:
    """The object once the sync tool has delivered this file, else None (still waiting).

    Same size is required; when the object's ETag is an MD5, the content must match too, so an
    older version of equal size in the bucket is not taken for the new one. The file is only
    read when the sizes already agree. How long to wait (``sync_timeout_s``) is the caller's.
    """
    found = bucket.head(key)
    if found is None or found.size != file.size:
        return None
    if is_md5_etag(found.etag):
        try:
            md5 = file_md5(file.path)
        except OSError as exc:
            raise SourceError(f"reading {file.path}: {exc}") from exc
        if found.etag.lower() != md5:
            return None
    return found


def upload_file(
    bucket: TosBucket, key: str, file: LocalFile, *, transfer: TransferConfig | None = None
) -> StoredObject:
    """Put the file at ``key`` unless the bucket already holds this content; return the object.

    The file is read as it is now (a newer version than ``file`` describes is uploaded as it
    stands: the returned object says what the bucket holds). After the upload the object is
    read back and checked: size always, MD5 when its ETag is one. A mismatch (the file changed
    during the upload, or a damaged transfer) raises :class:`SourceError` naming the key.
    """
    config = transfer if transfer is not None else TransferConfig()
    where = f"s3://{bucket.bucket}/{key}"
    fingerprint = _fingerprint(file.path, config)
    existing = bucket.head(key)
    if existing is not None and _same_content(existing, fingerprint):
        return existing
    try:
        # S3Transfer, not the client's upload_file: the client is botocore's (sources/tos.py).
        # boto3-stubs types the config as botocore's Config; boto3's upload_file passes this.
        with S3Transfer(bucket.s3, config) as transferring:  # type: ignore[arg-type]
            transferring.upload_file(str(file.path), bucket.bucket, key)
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        # boto3 wraps the ClientError without chaining it explicitly; its context has it.
        cause = exc.__context__ if isinstance(exc, S3UploadFailedError) else exc
        error = cause if isinstance(cause, ClientError | BotoCoreError) else exc
        if isinstance(error, ClientError) and refuses_the_object(error):
            raise ObjectRefused(f"the store refused the upload of {where}: {error}") from exc
        raise translate(error, f"uploading {where}") from exc
    except OSError as exc:
        raise SourceError(f"uploading {where} from {file.path}: {exc}") from exc
    stored = bucket.head(key)
    if stored is None or not _verified(stored, fingerprint):
        found = "nothing" if stored is None else f"size {stored.size}, ETag {stored.etag}"
        raise SourceError(
            f"uploading {where}: the bucket holds {found}, the file gave size"
            f" {fingerprint.size}, MD5 {fingerprint.md5}"
        )
    return stored


def _same_content(obj: StoredObject, fingerprint: _Fingerprint) -> bool:
    etag = obj.etag.lower()
    if obj.size != fingerprint.size:
        return False
    return etag in {fingerprint.md5, fingerprint.multipart_etag}


def _verified(obj: StoredObject, fingerprint: _Fingerprint) -> bool:
    if obj.size != fingerprint.size:
        return False
    return not is_md5_etag(obj.etag) or obj.etag.lower() == fingerprint.md5


def _fingerprint(path: Path, config: TransferConfig) -> _Fingerprint:
    """MD5, size and would-be multipart ETag in one read of the file."""
    try:
        size = path.stat().st_size
        if size < config.multipart_threshold:
            return _Fingerprint(file_md5(path), size, None)
        part_size = ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size)
        return _read_parts(path, part_size)
    except FileNotFoundError as exc:
        raise FileGone(f"reading {path}: {exc}") from exc
    except OSError as exc:
        raise FileUnreadable(f"the file {path} cannot be read: {exc.strerror or exc}") from exc


def _read_parts(path: Path, part_size: int) -> _Fingerprint:
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    size = 0
    with path.open("rb") as stream:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            left = part_size
            while left and (chunk := stream.read(min(left, _READ_CHUNK))):
                whole.update(chunk)
                part.update(chunk)
                left -= len(chunk)
            if left == part_size:
                break
            size += part_size - left
            parts.append(part.digest())
    combined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return _Fingerprint(whole.hexdigest(), size, f"{combined}-{len(parts)}")
