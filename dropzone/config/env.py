"""Environment overrides laid over the file's values, each string read as its setting's type."""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import (
    TypeAdapter,
    ValidationError,
)

from dropzone.config.locate import Loc, field_at, is_structured
from dropzone.config.model import SECTIONS

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from pydantic.fields import FieldInfo


ENV_PREFIX = "DROPZONE_"


class _EnvProblem(Exception):
    pass


def suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _env_name_form(name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", name.upper())


def _watch_index(data: dict[str, Any], name: str) -> int:
    watches = data.get("watch")
    items = watches if isinstance(watches, list) else []
    names = [w.get("name") if isinstance(w, dict) else None for w in items]
    hits = [i for i, n in enumerate(names) if isinstance(n, str) and _env_name_form(n) == name]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise _EnvProblem(f"the name {name} matches several watches: {[names[i] for i in hits]}")
    known = ", ".join(str(n) for n in names) or "none"
    raise _EnvProblem(f"no watch named {name.lower()!r} (watches: {known})")


def _env_loc(data: dict[str, Any], upper_name: str) -> Loc:
    section, _, rest = upper_name.removeprefix(ENV_PREFIX).partition("__")
    parts = rest.split("__")
    if not all(parts):
        raise _EnvProblem("empty key between '__' separators")
    section = section.lower()
    if section in SECTIONS:
        return (section, *(p.lower() for p in parts))
    if section == "watch":
        if len(parts) < 2:
            raise _EnvProblem("name a watch and a key: DROPZONE_WATCH__<NAME>__<KEY>")
        index = _watch_index(data, _env_name_form(parts[0]))
        return ("watch", index, *(p.lower() for p in parts[1:]))
    choices = [*SECTIONS, "watch"]
    raise _EnvProblem(f"unknown section {section!r}{suggest(section, choices)}")


def _env_value(loc: Loc, raw: str) -> object:
    info = field_at(loc)
    if info is None:
        return raw  # an unknown setting: validation reports it with a suggestion
    if raw == "" and info.default is None:
        return None
    if not is_structured(info.annotation):
        return _typed_env_string(info, raw)
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise _EnvProblem(f"{loc[-1]} takes a JSON list or table") from None


def _typed_env_string(info: FieldInfo, raw: str) -> object:
    """The string read as the setting's type reads one ("5" -> 5, "true" -> true), as TOML
    would have typed it: the file's values are taken strictly, but the environment has only
    strings. One the type cannot read is left as it is, for validation to report."""
    if info.annotation is None or not raw:
        # "" is no value of any type; as a path it would become "." (see _not_empty_path).
        return raw
    try:
        return TypeAdapter(info.annotation).validate_python(raw)
    except ValidationError:
        return raw


def _place(data: dict[str, Any], loc: Loc, value: object) -> None:
    node: Any = data
    for part, following in itertools.pairwise(loc):
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        if not isinstance(node, list if isinstance(following, int) else dict):
            raise _EnvProblem(f"{part!r} in the config file has another shape")
    node[loc[-1]] = value


def _overrides(env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for name in sorted(env):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and "__" in upper:
            yield name, upper


def apply_environment(
    data: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[Loc, str], list[str]]:
    """(data with the overrides laid over it, env var name per overridden setting, problems)."""
    data = copy.deepcopy(data)
    origins: dict[Loc, str] = {}
    problems: list[str] = []
    for name, upper in _overrides(env):
        try:
            loc = _env_loc(data, upper)
            _place(data, loc, _env_value(loc, env[name]))
        except _EnvProblem as exc:
            problems.append(f"environment {name}: {exc}")
        else:
            origins[loc] = name
    return data, origins, problems
