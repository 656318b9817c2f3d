"""The effective configuration as a person reads it: TOML, with unset settings shown.

``dropzone check`` prints this on a terminal (JSON for scripts). It is TOML that ``tomllib``
reads back, so what is shown can be pasted into a config file; a setting that is unset is a
comment, because TOML has no null.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _value(value: object) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    # JSON's strings, numbers and booleans are TOML's, written the same way.
    return json.dumps(value, ensure_ascii=False)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _table(values: dict[str, Any]) -> list[str]:
    return [
        f"# {_key(key)} is unset" if value is None else f"{_key(key)} = {_value(value)}"
        for key, value in values.items()
    ]


def config_text(config: dict[str, Any]) -> str:
    """``config`` (the redacted settings, JSON-ready) as TOML text."""
    lines: list[str] = []
    for section, values in config.items():
        if isinstance(values, dict):
            lines += [f"[{section}]", *_table(values), ""]
        elif isinstance(values, list):
            for item in values:
                lines += [f"[[{section}]]", *_table(item), ""]
        else:
            lines.insert(0, f"{_key(section)} = {_value(values)}")
    return "\n".join(lines)
