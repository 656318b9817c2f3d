"""Typed shapes of the Ark batch-inference management API (Version 2024-01-01).

Field names follow the wire format (PascalCase) through aliases, so a model dumps to exactly the
JSON the API expects and parses what it answers, while Python code uses snake_case.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_pascal

API_VERSION = "2024-01-01"
# Lookarounds, not \b: in Chinese text the ID touches other word characters ("任务bi-...").
# Case-insensitive: a message may be upper-cased on its way; IDs are lower case on the platform.
JOB_ID_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])bi-[0-9]+-[0-9a-z]+(?![A-Za-z0-9_])", re.IGNORECASE)


class Phase(StrEnum):
    QUEUED = "Queued"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    COMPLETED = "Completed"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PHASES

    @property
    def is_active(self) -> bool:
        """Active in the guard's sense: the job holds its input (Queued or Running)."""
        return self in ACTIVE_PHASES


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.TERMINATED, Phase.FAILED})
ACTIVE_PHASES = frozenset({Phase.QUEUED, Phase.INITIALIZING, Phase.RUNNING})


class WireModel(BaseModel):
    """Base for API shapes: PascalCase on the wire, snake_case in Python, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_pascal, populate_by_name=True, frozen=True, extra="allow"
    )

    def wire(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TosLocation(WireModel):
    bucket_name: str
    object_key: str


class FoundationModel(WireModel):
    name: str
    model_version: str | None = None


class ModelReference(WireModel):
    foundation_model: FoundationModel | None = None
    custom_model_id: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelReference:
        if (self.foundation_model is None) == (self.custom_model_id is None):
            raise ValueError("exactly one of FoundationModel or CustomModelId is required")
        return self


class Tag(WireModel):
    key: str
    value: str


class CreateJobRequest(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    model_reference: ModelReference
    input_file_tos_location: TosLocation
    output_dir_tos_location: TosLocation
    project_name: str = "default"
    description: str | None = None
    completion_window: str | None = None
    tags: tuple[Tag, ...] = ()
    dry_run: bool | None = None

    def tag(self, key: str) -> str | None:
        return next((t.value for t in self.tags if t.key == key), None)


class JobStatus(WireModel):
    phase: Phase
    phase_time: str | None = None
    message: str | None = None


class RequestCounts(WireModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class Job(WireModel):
    id: str
    name: str | None = None
    description: str | None = None
    project_name: str | None = None
    model_reference: ModelReference | None = None
    input_file_tos_location: TosLocation | None = None
    output_dir_tos_location: TosLocation | None = None
    completion_window: str | None = None
    status: JobStatus
    request_counts: RequestCounts | None = None
    tags: tuple[Tag, ...] = ()
    create_time: str | None = None
    update_time: str | None = None
    expire_time: str | None = None

    @property
    def phase(self) -> Phase:
        return self.status.phase

    def tag(self, key: str) -> str | None:
        return next((t.value for t in self.tags if t.key == key), None)


class TagFilter(WireModel):
    key: str
    values: tuple[str, ...]


class ListFilter(WireModel):
    ids: tuple[str, ...] | None = None
    name: str | None = None
    phases: tuple[Phase, ...] | None = None
    custom_model_ids: tuple[str, ...] | None = None


class ListJobsRequest(WireModel):
    project_name: str | None = None
    page_number: int = 1
    page_size: Annotated[int, Field(ge=1, le=100)] = 100
    sort_by: str | None = "CreateTime"
    sort_order: str | None = "Desc"
    filter: ListFilter | None = None
    tag_filters: tuple[TagFilter, ...] | None = None


class JobPage(WireModel):
    total_count: int
    page_number: int
    page_size: int
    items: tuple[Job, ...] = ()


def find_job_id(message: str) -> str | None:
    """The first batch job ID (``bi-<digits>-<suffix>``) in a message, in any language."""
    found = JOB_ID_PATTERN.search(message)
    return found.group(0).lower() if found else None
