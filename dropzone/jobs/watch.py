"""What a submitter is given: each watch with its object lookup and preflight, and the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dropzone.ark.client import SignedCreate
    from dropzone.ark.models import CreateJobRequest, Job
    from dropzone.config import WatchRule
    from dropzone.ledger import Entry
    from dropzone.preflight.report import Report
    from dropzone.sources.base import StoredObject


class JobApi(Protocol):
    """The part of ArkClient the submitter needs (the tests' fakes implement it too)."""

    def sign_create(self, request: CreateJobRequest) -> SignedCreate: ...

    def send_create(self, signed: SignedCreate) -> str: ...

    def find_by_tag(self, key: str, value: str, project_name: str | None) -> list[Job]: ...


class ObjectLookup(Protocol):
    """Where an entry's object is now: its current version, or None when it is gone."""

    def __call__(self, key: str) -> StoredObject | None: ...


class Preflight(Protocol):
    """Validates an entry's file (streamed) and, when asked, leaves a report beside it."""

    def check(self, entry: Entry) -> Report: ...

    def write_report(self, entry: Entry, report: Report) -> str: ...


@dataclass(frozen=True)
class Watch:
    """A watch rule with what its source provides: the object lookup (None: trust the
    listing) and the preflight reader (None: the watch does not validate)."""

    rule: WatchRule
    lookup: ObjectLookup | None = None
    preflight: Preflight | None = None
