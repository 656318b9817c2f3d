"""Logging: structlog, JSON lines when stdout is not a terminal, console rendering when it is.

Exactly this module decides how log lines look. A redaction processor runs last before
rendering, on every path: fields whose names say they hold a secret are masked, and any
registered secret value (raw or URL-encoded) is masked wherever it appears in a string or in
the repr of a value the renderer would print. For that to hold, nothing is left for the
renderer to format itself: an exception becomes text (JSON: dicts; console: a traceback)
before redaction, and never with frame locals, which would hold the signing key and the
session token (structlog's console renderer shows them by default when ``rich`` is installed).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import quote, quote_plus

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from dropzone.levels import DEFAULT_LEVEL, LogFormat, LogLevel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, MutableMapping

    from structlog.typing import ExceptionTransformer, ExcInfo

MASK = "[secure]"
_SECRET_FIELD_PARTS = ("secret", "password", "token", "authorization")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_MIN_SECRET_CHARS = 4  # shorter "secrets" (test values) would mask common words
_registered: set[str] = set()
_registered_lock = threading.Lock()


@dataclass(frozen=True)
class _Secrets:
    """The registered values, as one pattern: every log line is scrubbed, so the pattern is
    built once per registration rather than the values sorted and searched one by one for
    every field of every line (two thirds of a line's cost, profiled)."""

    values: frozenset[str] = frozenset()
    # Longest first: a secret's encoded spelling may contain its raw one.
    pattern: re.Pattern[str] | None = None

    @classmethod
    def of(cls, values: Iterable[str]) -> _Secrets:
        ordered = sorted(set(values), key=len, reverse=True)
        if not ordered:
            return cls()
        return cls(frozenset(ordered), re.compile("|".join(map(re.escape, ordered))))


_current = [_Secrets()]


def _spellings(value: str) -> set[str]:
    # A token also travels URL-encoded (a query string, a form), and shows so in errors.
    return {
        value,
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        quote_plus(value, safe=""),
    }


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never be printed (a secret key, a session token)."""
    with _registered_lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET_CHARS:
                _registered.update(_spellings(value))
        _current[0] = _Secrets.of(_registered)


def _secrets() -> _Secrets:
    return _current[0]


def _masked(text: str, secrets: _Secrets) -> str:
    return text if secrets.pattern is None else secrets.pattern.sub(MASK, text)


@functools.lru_cache(maxsize=4096)
def _names_a_secret(field: str) -> bool:
    lowered = field.lower()
    return any(part in lowered for part in _SECRET_FIELD_PARTS)


def _scrub(value: object, secrets: _Secrets) -> object:
    if isinstance(value, str):
        return _masked(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    if value is None or isinstance(value, int | float):
        return value
    # Any other object is printed through its repr (both renderers): check what would show.
    shown = repr(value)
    masked = _masked(shown, secrets)
    return value if masked == shown else masked


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and registered secret values."""
    secrets = _secrets()
    texts: list[str] = []
    for name, value in event_dict.items():
        if _names_a_secret(name):
            event_dict[name] = MASK
        elif type(value) is str:
            texts.append(value)
        elif secrets.pattern is not None and value is not None:
            event_dict[name] = _scrub(value, secrets)
    # Nearly every line holds no secret: its text fields are searched at once, and scrubbed
    # one by one only on a hit (a hit across two fields' join is a false alarm, not a miss).
    if secrets.pattern is not None and secrets.pattern.search("\0".join(texts)) is not None:
        for name, value in event_dict.items():
            if type(value) is str:
                event_dict[name] = _masked(value, secrets)
    return event_dict


def _console_traceback(*, colors: bool) -> ExceptionTransformer:
    """An exception as the console shows it, as text (so that redaction sees it): rich's
    traceback on a colour terminal when rich is installed, else structlog's plain one;
    never with frame locals."""
    formatter: Callable[[TextIO, ExcInfo], None] = structlog.dev.plain_traceback
    if colors and importlib.util.find_spec("rich") is not None:
        formatter = structlog.dev.RichTracebackFormatter(show_locals=False)

    def render(exc_info: ExcInfo) -> str:
        text = io.StringIO()
        formatter(text, exc_info)
        shown = text.getvalue().lstrip("\n")
        plain = _ANSI_ESCAPE.sub("", shown)
        # Highlighting cuts a secret in the message into coloured pieces that redaction
        # would not recognise: then the traceback goes without colour, and is masked.
        return plain if _masked(plain, _secrets()) != plain else shown

    return render


def _rendering(fmt: Literal["json", "console"], stream: TextIO) -> list[structlog.typing.Processor]:
    """The processors that make a line of an event: its level, timestamp and exception as
    text, then redaction, then the renderer. JSON does all of it in one (``_json_rendering``)."""
    if fmt == "json":
        return [_json_rendering]
    # https://no-color.org: a NO_COLOR that is set and not empty turns colour off.
    colors = stream.isatty() and not os.environ.get("NO_COLOR")
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.ExceptionRenderer(_console_traceback(colors=colors)),
        redact,  # last before the renderer, which gets nothing left to format but text
        # plain_traceback: the renderer then takes the text made above as it is.
        structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        ),
    ]


def _shown(value: object) -> object:
    # What redaction let through as an object is printed as its repr, as structlog does.
    structlog_form = getattr(value, "__structlog__", None)
    return structlog_form() if callable(structlog_form) else repr(value)


# One encoder for every line: json.dumps with options builds a new one each call.
_encode_line = json.JSONEncoder(ensure_ascii=False, default=_shown).encode


_exception_dicts = structlog.processors.ExceptionRenderer(
    ExceptionDictTransformer(show_locals=False)
)


def _json_rendering(logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """A JSON line's level, timestamp, exception, redaction and rendering in one processor,
    as structlog's add_log_level, TimeStamper(fmt="iso", utc=True), ExceptionRenderer and
    JSONRenderer write them: a worker writes a line for every job, and each processor is one
    more call in it (a line cost 7.1 us in one thread; six processors' calls 1.5 us of it)."""
    event_dict["level"] = _LEVEL_OF_METHOD.get(method_name, method_name)
    event_dict["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if "exc_info" in event_dict:
        _exception_dicts(logger, method_name, event_dict)
    return _encode_line(redact(logger, method_name, event_dict))


# structlog's names for two methods: warn is the stdlib's alias, exception() an error's.
_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}


@dataclass
class _Levels:
    configured: bool = False
    # --log-level: when given, it wins over the config file's [daemon] log_level.
    chosen: LogLevel | None = None


_levels = _Levels()


def _filtering(level: LogLevel) -> type[structlog.typing.FilteringBoundLogger]:
    return structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()])


def configure(
    fmt: LogFormat = "auto", *, level: LogLevel | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog for the process (call once, from the CLI).

    ``level`` is the command line's choice; None logs at info until :func:`use_setting`
    applies the config file's.
    """
    _levels.configured, _levels.chosen = True, level
    out = stream if stream is not None else sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_rendering(fmt, out)],
        wrapper_class=_filtering(level or DEFAULT_LEVEL),
        # WriteLogger: a line written and flushed as PrintLogger's print(flush=True) does,
        # without print's two writes and its keyword handling.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library; keep them quiet.
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The ledger's pool retries a lost server in the background and would say so at each try,
    # in plain text; the store reports every transaction that fails, once, as a JSON line.
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)


def use_setting(level: LogLevel) -> None:
    """The config file's log level, unless the command line chose one or logging was not
    set up by :func:`configure` (code using dropzone as a library keeps its own)."""
    if _levels.configured and _levels.chosen is None:
        structlog.configure(wrapper_class=_filtering(level))


def reset() -> None:
    """Back to structlog's defaults and no registered secrets (for tests)."""
    _levels.configured, _levels.chosen = False, None
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    with _registered_lock:
        _registered.clear()
        _current[0] = _Secrets()


def get_logger(**context: object) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**context)
    return logger
