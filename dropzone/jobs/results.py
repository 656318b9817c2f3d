"""A job's result files fetched from its output folder into a local one.

Ark writes a job's files under ``<OutputDir><job id>/`` (``output/results.jsonl``,
``error/errors.jsonl``). Each is downloaded to a temporary name beside its place and renamed
into it once whole, so a reader of the folder never sees half a file, and a file already
there with the object's size is not fetched again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_s3 import S3Client

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    fresh: bool  # False: it was there already


def job_folder(output_dir: str, job_id: str) -> str:
    return f"{output_dir}{job_id}/"


class ResultStore(Protocol):
    """Where a job's output folder is read: TOS (:class:`S3Results`) or, for the demo, a
    folder standing in for the bucket (:class:`FolderResults`)."""

    def listing(self, bucket: str, folder: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``folder``."""
        ...

    def copy_to(self, bucket: str, key: str, out: BinaryIO) -> None: ...


class S3Results:
    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def listing(self, bucket: str, folder: str) -> Iterator[tuple[str, int]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"], item["Size"]

    def copy_to(self, bucket: str, key: str, out: BinaryIO) -> None:
        body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        out.writelines(iter(lambda: body.read(_CHUNK), b""))


class FolderResults:
    """Objects as files at ``root/bucket/key``: what the emulator writes with
    :func:`dropzone.emulator.results.folder_writer` where there is no S3 (the demo)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def listing(self, bucket: str, folder: str) -> Iterator[tuple[str, int]]:
        base = (self._root / bucket).resolve()
        top = (base / folder).resolve()
        if not top.is_relative_to(base) or not top.is_dir():
            return  # a folder climbing out of the bucket holds nothing of it
        for path in sorted(top.rglob("*")):
            if path.is_file() and not path.name.startswith("."):  # not one being written
                yield path.relative_to(base).as_posix(), path.stat().st_size

    def copy_to(self, bucket: str, key: str, out: BinaryIO) -> None:
        base = (self._root / bucket).resolve()
        path = (base / key).resolve()
        if not path.is_relative_to(base):
            raise SourceError(f"tos://{bucket}/{key}: not in the bucket")
        with path.open("rb") as source:
            shutil.copyfileobj(source, out, _CHUNK)


def fetch_results(store: ResultStore, bucket: str, folder: str, into: Path) -> list[Fetched]:
    """Every object under ``folder`` into ``into``, by its path below ``folder``; a
    :class:`SourceError` (saying which object) when the bucket cannot be read."""
    fetched: list[Fetched] = []
    try:
        for key, size in store.listing(bucket, folder):
            relative = key[len(folder) :]
            if not relative or relative.endswith("/"):
                continue  # a folder marker
            fetched.append(_fetch_one(store, bucket, key, size, into / _safe(relative)))
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"tos://{bucket}/{folder}: cannot fetch the results ({exc})") from exc
    return fetched


def _safe(relative: str) -> Path:
    """A key's path below the folder, never climbing out of it."""
    parts = [part for part in relative.split("/") if part not in {"", ".", ".."}]
    return Path(*parts)


def _fetch_one(store: ResultStore, bucket: str, key: str, size: int, path: Path) -> Fetched:
    if path.is_file() and path.stat().st_size == size:
        return Fetched(path, size, fresh=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            store.copy_to(bucket, key, out)
        Path(partial).replace(path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return Fetched(path, size, fresh=True)
