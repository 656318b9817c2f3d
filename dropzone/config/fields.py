"""The kinds of value a setting holds, and the checks each kind makes at load."""

from __future__ import annotations

import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from dropzone import plan

MAX_TAGS = 20
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
WATCH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
COMPLETION_WINDOW = re.compile(r"([1-9][0-9]?)d")  # "01d" is no window the platform takes
_PORT = re.compile(r"[0-9]{1,5}")


def check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    # Checked first: the other messages show the value, and this one must not.
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; they come from the environment or files")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not http(s)://host[:port]")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError("must be scheme://host[:port] with no path, query or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"has an invalid port: {exc}") from exc
    return value.rstrip("/")


def check_ledger_url(value: str) -> str:
    """A PostgreSQL url with no password in it (it comes from a file or ``PGPASSWORD``)."""
    parts = urlsplit(value)
    # Checked first: the other messages show the value, and this one must not. The query's
    # names are decoded as libpq decodes them (``%70assword`` is ``password``).
    names = {name.strip().lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if parts.password is not None or "password" in names:
        raise ValueError(
            "holds a password: give it in [ledger] password_file (or libpq's PGPASSWORD)"
            " instead, so that the config can be shown and shared"
        )
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError("must be postgresql://[user@]host[:port]/database")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"has an invalid port: {exc}") from exc
    return value


def check_listen(value: str) -> str:
    if value == "":
        return value
    host, _, port = value.rpartition(":")
    bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not host or bare_ipv6 or not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(
            f'{value!r} is not "host:port" (e.g. "127.0.0.1:9464", "[::1]:9464"); "" disables'
        )
    return value


def as_folder(value: str) -> str:
    if value.startswith("/"):
        raise ValueError("must not start with '/': object keys are relative to the bucket")
    return value if not value or value.endswith("/") else value + "/"


def default_output_prefix(prefix: str) -> str:
    """Beside the watched folder: ``a/in/`` -> ``a/output/``; ``data/`` or ``""`` -> ``output/``."""
    parent = prefix.rstrip("/").rpartition("/")[0]
    return f"{parent}/output/" if parent else "output/"


def _from_config_folder(value: Path) -> Path:
    """A relative path means the config file's folder, not wherever the command was started.

    Otherwise ``run --once`` from another folder makes a second, empty ledger beside it (and
    escapes the one-daemon lock that guards the first).
    """
    value = value.expanduser()
    base = config_folder.get()
    if value.is_absolute() or base is None:
        return value
    return base / value


# Set by load_settings while it validates. A context variable, not pydantic's validation
# context: BaseSettings has its own __init__, through which pydantic drops that context.
config_folder: ContextVar[Path | None] = ContextVar("config_folder", default=None)
NonEmpty = Annotated[str, Field(min_length=1)]


# Every number has a range, checked at load: wide enough for any real deployment, narrow
# enough for the clocks, timers and sockets that take it (1e300 seconds overflows them all,
# mid-run, as a traceback). Documented beside each setting, in the README (checked by
# tests/test_readme.py) and config/dropzone.toml.
HOUR_S = 3600
DAY_S = 86400
MAX_RETENTION_DAYS = 3650
MAX_ACTIVE_JOBS = 10_000
Timeout = Annotated[float, Field(gt=0, le=HOUR_S)]


# Settings are strict: TOML has types, and `validate = "yes"` or `min_age_s = "5"` is a mistake
# to report, not a string to guess at (environment strings are typed before validation, see
# _typed_env_string). TOML has no path and no tuple type: those alone are taken from strings
# and arrays, as lax validation takes them.
FromToml = Field(strict=False)


def _not_empty_path(value: object) -> object:
    # Before the conversion: Path("") is Path("."), which would quietly mean the config
    # file's own folder (a ledger that "cannot open", a watched folder nobody meant).
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty: give a path, or leave the setting out")
    return value


TomlPath = Annotated[Path, FromToml, BeforeValidator(_not_empty_path)]


# Relative paths are the config file's folder's (see _from_config_folder).
ConfigPath = Annotated[TomlPath, AfterValidator(_from_config_folder)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)


def check_template(value: str) -> str:
    problem = plan.template_error(value)
    if problem:
        raise ValueError(problem)
    return value
