"""Validation errors in a person's words: which file, which setting, what to do."""

from __future__ import annotations

import json
import tomllib
from typing import TYPE_CHECKING, Any, get_args

import annotated_types
from pydantic.fields import FieldInfo

from dropzone.config.env import suggest
from dropzone.config.locate import Loc, field_at, fields_by_key, model_at
from dropzone.config.model import (
    CREDENTIAL_SETTINGS,
    LEDGER_SECRETS,
    NO_WATCH,
    NOT_SHOWN,
    REMOVED_SETTINGS,
    ArkSettings,
    DaemonSettings,
    LedgerSettings,
)
from dropzone.config.notify import NOTIFY_SECRETS, NotifySettings
from dropzone.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

    from pydantic import (
        ValidationError,
    )
    from pydantic_core import ErrorDetails


class ConfigError(ConfigurationError):
    """The configuration cannot be used; ``problems`` lists every reason found, not the first."""

    def __init__(self, path: Path | None, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return "\n".join(where + problem for problem in self.problems)


def _setting_path(loc: Loc, data: dict[str, Any]) -> str:
    text = ""
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            if loc[:depth] == ("watch",):
                text += _watch_label(data, part)
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _watch_label(data: dict[str, Any], index: int) -> str:
    watches: Any = data.get("watch")
    try:
        name = watches[index]["name"]
    except (TypeError, LookupError):
        return ""
    return f" (name {json.dumps(name, ensure_ascii=False)})" if isinstance(name, str) else ""


def _origin(loc: Loc, origins: Mapping[Loc, str]) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return f" (from environment {origins[loc[:end]]})"
    return ""


# pydantic's words for a value of the wrong type name Python's types ("a valid tuple", "instance
# of ModelSpec", "<class 'pathlib.Path'>"); these are TOML's.
_EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "path_type": "expected a path (a string)",
    "tuple_type": "expected an array",
    "list_type": "expected an array",
    "dict_type": "expected a table",
    "model_type": "expected a table",
}


_UNQUOTED = {"int_type", "float_type", "bool_type"}
_MAX_SHAPE_KEYS = 3


def _expected(error: ErrorDetails) -> str:
    loc, kind = error["loc"], error["type"]
    if loc == ("watch",) and kind == "tuple_type":
        return "expected [[watch]] tables (an array of tables), not one [watch] table"
    expected = _EXPECTED[kind]
    model = model_at(loc) if kind == "model_type" else None
    keys = list(fields_by_key(model)) if model else []
    if 0 < len(keys) <= _MAX_SHAPE_KEYS:
        expected += " { " + ", ".join(f"{key} = ..." for key in keys) + " }"
    return expected


def _quoted_scalar(value: object) -> bool:
    """Whether ``value`` is a string that, without its quotes, TOML reads as a number or boolean
    ("5", "true"; not "soon")."""
    if not isinstance(value, str):
        return False
    try:
        unquoted = tomllib.loads(f"value = {value}").get("value")
    except tomllib.TOMLDecodeError:
        return False
    return isinstance(unquoted, int | float | bool)


_RANGE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "finite_number",
}


def _constraints(annotation: object, metadata: Sequence[object]) -> Iterator[object]:
    yield from metadata
    for arg in get_args(annotation):  # `Annotated[int, Field(ge=1)] | None` holds them inside
        if isinstance(arg, FieldInfo):
            yield from arg.metadata
        else:
            yield from _constraints(arg, ())


def range_text(info: FieldInfo) -> str | None:
    """A numeric setting's range in words: "from 1 to 3650", "above 0, at most 3600"."""
    low = high = None
    for item in _constraints(info.annotation, info.metadata):
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = item
        elif isinstance(item, annotated_types.Le):
            high = item.le
    if low is None or high is None:
        return None
    if isinstance(low, annotated_types.Ge):
        return f"from {low.ge:g} to {high:g}"
    return f"above {low.gt:g}, at most {high:g}"


def _range_message(error: ErrorDetails) -> str:
    info = field_at(error["loc"])
    span = range_text(info) if info is not None else None
    if span is None:
        return str(error["msg"])
    if error["type"] == "finite_number":
        return f"must be a finite number {span}"
    return f"out of range: must be {span}"


def _message(error: ErrorDetails, *, from_file: bool) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        if loc[-1] in REMOVED_SETTINGS and model_at(loc[:-1]) is DaemonSettings:
            return REMOVED_SETTINGS[str(loc[-1])]
        model = model_at(loc[:-1])
        keys = list(fields_by_key(model)) if model else []
        return "unknown setting" + suggest(str(loc[-1]), keys)
    if error["type"] == "missing":
        return NO_WATCH if loc == ("watch",) else "required setting is missing"
    if error["type"] in _EXPECTED:
        message = _expected(error)
    elif error["type"] in _RANGE_ERRORS:
        message = _range_message(error)
    else:
        message = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    holder = model_at(loc[:-1])
    if (
        (holder is ArkSettings and loc[-1] in CREDENTIAL_SETTINGS)
        or (holder is LedgerSettings and loc[-1] in LEDGER_SECRETS)
        or (holder is NotifySettings and loc[-1] in NOTIFY_SECRETS)
        # A webhook's URL given in place of its table: the URL may hold a token.
        or model_at(loc) is NotifySettings
    ):
        return f"{message} {NOT_SHOWN}"
    # pydantic's own messages do not show the value; ours (value_error) say what they need to.
    if isinstance(shown, str | int | float | bool) and error["type"] != "value_error":
        message += f" (got {json.dumps(shown, ensure_ascii=False)[:80]})"
        if from_file and error["type"] in _UNQUOTED and _quoted_scalar(shown):
            message += "; in TOML, numbers and true/false are written without quotes"
    return message


def describe_errors(
    exc: ValidationError, data: dict[str, Any], origins: Mapping[Loc, str]
) -> list[str]:
    """One line per validation error: ``setting.path (from environment X): what is wrong``."""
    described = []
    for error in exc.errors(include_url=False):
        origin = _origin(error["loc"], origins)
        message = _message(error, from_file=not origin)
        described.append(f"{_setting_path(error['loc'], data)}{origin}: {message}")
    return described
