"""Where a setting lives in the model, from its place in the file (``loc``): its field, its type."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Annotated, Union, get_args, get_origin

from pydantic import (
    BaseModel,
)

from dropzone.config.model import Settings

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

Loc = tuple[str | int, ...]


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that holds the settings at ``loc`` (indexes of lists are stepped over)."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        info = fields_by_key(model).get(part) if model else None
        model = _model_in(info.annotation) if info else None
    return model


def field_at(loc: Loc) -> FieldInfo | None:
    model = model_at(loc[:-1])
    return fields_by_key(model).get(str(loc[-1])) if model else None


def is_structured(annotation: object) -> bool:
    """Whether a setting holds a list or table (given as JSON in the environment)."""
    if get_origin(annotation) in {Union, types.UnionType, Annotated}:
        return any(is_structured(arg) for arg in get_args(annotation))
    return get_origin(annotation) in {dict, tuple, list} or _model_in(annotation) is not None
