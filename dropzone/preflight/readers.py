"""Where preflight reads a file from: the bucket (streamed) or the watched local folder.

Read failures raise :class:`SourceError` (the submitter retries); only the file's content can
make it ``invalid``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone.plan import REPORT_SUFFIX
from dropzone.preflight.jsonl import validate_path, validate_stream
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    from pathlib import Path

    from dropzone.ledger import Entry
    from dropzone.preflight.report import Report
    from dropzone.sources.tos import TosBucket


def report_text(entry: Entry, report: Report) -> str:
    document = {"bucket": entry.bucket, "key": entry.key, "etag": entry.etag, **report.to_json()}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


@dataclass(frozen=True)
class BucketPreflight:
    """Validates straight from the S3 body stream, in constant memory."""

    bucket: TosBucket

    def check(self, entry: Entry) -> Report:
        with self.bucket.opened(entry.key, entry.etag) as (body, size):
            return validate_stream(body, declared_size=size)

    def write_report(self, entry: Entry, report: Report) -> str:
        key = entry.key + REPORT_SUFFIX
        self.bucket.put_text(key, report_text(entry, report))
        return f"tos://{entry.bucket}/{key}"


@dataclass(frozen=True)
class FolderPreflight:
    """Validates the local file that stands for the object (cheaper than reading it back)."""

    local_dir: Path
    prefix: str

    def _path(self, entry: Entry) -> Path:
        return self.local_dir / entry.key.removeprefix(self.prefix)

    def check(self, entry: Entry) -> Report:
        path = self._path(entry)
        if not path.is_file():
            raise SourceError(f"reading {path}: the file is gone")
        return validate_path(path)

    def write_report(self, entry: Entry, report: Report) -> str:
        path = self._path(entry).with_name(self._path(entry).name + REPORT_SUFFIX)
        try:
            path.write_text(report_text(entry, report), encoding="utf-8")
        except OSError as exc:
            raise SourceError(f"writing {path}: {exc}") from exc
        return str(path)
