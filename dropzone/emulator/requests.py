"""Create and List bodies validated field by field, in the documented order.

Pure: a body in, a spec or a query out, or an ApiError naming the field as the platform does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone.ark.models import Phase
from dropzone.emulator.wire import ApiError, Json, invalid, missing

if TYPE_CHECKING:
    from collections.abc import Mapping


DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
DEFAULT_COMPLETION_WINDOW = "28d"
_NAME = re.compile(r"[0-9A-Za-z_\u3400-\u4dbf\u4e00-\u9fff-]{1,200}")
_WINDOW = re.compile(r"([1-9]|1[0-9]|2[0-8])d")


@dataclass(frozen=True)
class Location:
    bucket: str
    key: str

    def wire(self) -> Json:
        return {"BucketName": self.bucket, "ObjectKey": self.key}


@dataclass(frozen=True)
class CreateSpec:
    """A validated CreateBatchInferenceJob body."""

    name: str
    model_reference: Json
    input: Location
    output: Location
    project: str
    description: str | None
    completion_window: str
    tags: tuple[tuple[str, str], ...]
    dry_run: bool


def parse_create(body: Mapping[str, object]) -> CreateSpec:
    """Validate a Create body, field by field in the documented order; raises ApiError."""
    return CreateSpec(
        name=_name(body.get("Name")),
        model_reference=_model_reference(body.get("ModelReference")),
        input=_location(body.get("InputFileTosLocation"), "InputFileTosLocation"),
        output=_output_location(body.get("OutputDirTosLocation")),
        project=_optional_text(body.get("ProjectName"), "ProjectName") or "default",
        description=_description(body.get("Description")),
        completion_window=_completion_window(body.get("CompletionWindow")),
        tags=_tags(body.get("Tags")),
        dry_run=body.get("DryRun") is True,
    )


def required_text(value: object, field: str) -> str:
    if value is None:
        raise missing(field)
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be a non-empty string")
    return value


def _optional_text(value: object, field: str) -> str | None:
    return None if value is None else required_text(value, field)


def _object(value: object, field: str) -> dict[str, object]:
    if value is None:
        raise missing(field)
    if not isinstance(value, dict):
        raise invalid(field, "must be an object")
    return value


def _name(value: object) -> str:
    if value is None:
        raise missing("Name")
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise invalid("Name", "use 1 to 200 letters, digits, Chinese characters, '-' or '_'")
    return value


def _model_reference(value: object) -> Json:
    reference = _object(value, "ModelReference")
    foundation = reference.get("FoundationModel")
    custom = reference.get("CustomModelId")
    if (foundation is None) == (custom is None):
        raise invalid("ModelReference", "give exactly one of FoundationModel or CustomModelId")
    if custom is not None:
        return {"CustomModelId": required_text(custom, "ModelReference.CustomModelId")}
    model = _object(foundation, "ModelReference.FoundationModel")
    wire: Json = {"Name": required_text(model.get("Name"), "ModelReference.FoundationModel.Name")}
    version = _optional_text(
        model.get("ModelVersion"), "ModelReference.FoundationModel.ModelVersion"
    )
    if version is not None:
        wire["ModelVersion"] = version
    return {"FoundationModel": wire}


def _location(value: object, field: str) -> Location:
    location = _object(value, field)
    return Location(
        required_text(location.get("BucketName"), f"{field}.BucketName"),
        required_text(location.get("ObjectKey"), f"{field}.ObjectKey"),
    )


def _output_location(value: object) -> Location:
    location = _location(value, "OutputDirTosLocation")
    if not location.key.endswith("/"):
        raise invalid("OutputDirTosLocation.ObjectKey", "must be a folder prefix ending in '/'")
    return location


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 300:
        raise invalid("Description", "must be 1 to 300 characters")
    return value


def _completion_window(value: object) -> str:
    if value is None:
        return DEFAULT_COMPLETION_WINDOW
    if not isinstance(value, str) or not _WINDOW.fullmatch(value):
        raise invalid("CompletionWindow", "must be whole days from '1d' to '28d'")
    return value


def _tags(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("Tags", "must be a list of {Key, Value}")
    tags = tuple(_tag(item) for item in value)
    seen: set[str] = set()
    for key, _ in tags:
        if key in seen:
            raise ApiError(400, "Duplicate.Tags.Key", f"The tag key {key!r} is repeated.")
        seen.add(key)
    return tags


def _tag(item: object) -> tuple[str, str]:
    tag = _object(item, "Tags")
    key = required_text(tag.get("Key"), "Tags.Key")
    if key.startswith("sys:"):
        raise invalid("Tags.Key", "the 'sys:' prefix is reserved for the platform")
    value = tag.get("Value", "")
    if not isinstance(value, str):
        raise invalid("Tags.Value", "must be a string")
    return key, value


def named_input(body: Mapping[str, object]) -> str | None:
    """``bucket/key`` of the input a Create body names, read leniently (even if it is invalid)."""
    location = body.get("InputFileTosLocation")
    if not isinstance(location, dict):
        return None
    bucket, key = location.get("BucketName"), location.get("ObjectKey")
    if isinstance(bucket, str) and isinstance(key, str):
        return f"{bucket}/{key}"
    return None


@dataclass(frozen=True)
class ListQuery:
    project: str = "default"
    page_number: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    descending: bool = True
    ids: frozenset[str] | None = None
    name: str | None = None
    phases: frozenset[Phase] | None = None
    custom_model_ids: frozenset[str] | None = None
    foundation_models: tuple[tuple[str, frozenset[str]], ...] | None = None
    tag_filters: tuple[tuple[str, frozenset[str]], ...] = ()


def parse_list(body: Mapping[str, object]) -> ListQuery:
    """Validate a List body; raises ApiError."""
    criteria = _list_filter(body.get("Filter"))
    return ListQuery(
        project=_optional_text(body.get("ProjectName"), "ProjectName") or "default",
        page_number=_bounded_int(body.get("PageNumber"), "PageNumber", 1, None),
        page_size=_bounded_int(body.get("PageSize"), "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        descending=_descending(body.get("SortBy"), body.get("SortOrder")),
        ids=_text_set(criteria.get("Ids"), "Filter.Ids"),
        name=_optional_text(criteria.get("Name"), "Filter.Name"),
        phases=_phases(criteria.get("Phases")),
        custom_model_ids=_text_set(criteria.get("CustomModelIds"), "Filter.CustomModelIds"),
        foundation_models=_foundation_filters(criteria.get("FoundationModels")),
        tag_filters=_tag_filters(body.get("TagFilters")),
    )


def _list_filter(value: object) -> dict[str, object]:
    return {} if value is None else _object(value, "Filter")


def _bounded_int(value: object, field: str, default: int, maximum: int | None) -> int:
    if value is None:
        return default
    # bool is an int in Python, not in JSON.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid(field, "must be a positive integer")
    if maximum is not None and value > maximum:
        raise invalid(field, f"must be at most {maximum}")
    return value


def _descending(sort_by: object, sort_order: object) -> bool:
    if sort_by not in {None, "CreateTime"}:
        raise invalid("SortBy", "only CreateTime is supported")
    if sort_order not in {None, "Asc", "Desc"}:
        raise invalid("SortOrder", "must be Asc or Desc")
    return sort_order != "Asc"


def _text_list(value: object, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(field, "must be a list of strings")
    return value


def _text_set(value: object, field: str) -> frozenset[str] | None:
    items = _text_list(value, field)
    # An empty list filters nothing out, as an absent one.
    return frozenset(items) if items else None


def _phases(value: object) -> frozenset[Phase] | None:
    names = _text_set(value, "Filter.Phases")
    if names is None:
        return None
    known = {phase.value for phase in Phase}
    unknown = sorted(names - known)
    if unknown:
        raise invalid("Filter.Phases", f"unknown phase {unknown[0]!r}")
    return frozenset(Phase(name) for name in names)


def _key_values(item: object, field: str, names: tuple[str, str]) -> tuple[str, frozenset[str]]:
    """A ``{Key, Values}``-like entry: ``names`` are its key and values field names."""
    entry = _object(item, field)
    key_name, values_name = names
    key = required_text(entry.get(key_name), f"{field}.{key_name}")
    values = _text_list(entry.get(values_name), f"{field}.{values_name}") or []
    return key, frozenset(values)


def _foundation_filters(value: object) -> tuple[tuple[str, frozenset[str]], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("Filter.FoundationModels", "must be a list")
    return (
        tuple(
            _key_values(item, "Filter.FoundationModels", ("Name", "ModelVersions"))
            for item in value
        )
        or None
    )


def _tag_filters(value: object) -> tuple[tuple[str, frozenset[str]], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("TagFilters", "must be a list of {Key, Values}")
    return tuple(_key_values(item, "TagFilters", ("Key", "Values")) for item in value)
