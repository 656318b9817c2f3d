"""Logging: structlog, JSON lines when stdout is not a terminal, console rendering when it is.

Exactly this module decides how log lines look. A redaction processor runs last before
rendering: fields whose names say they hold a secret are masked, and any registered secret
value is masked wherever it appears in a string, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

import structlog
from structlog.tracebacks import ExceptionDictTransformer

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
DEFAULT_LEVEL: LogLevel = "info"
MASK = "[secure]"
_SECRET_FIELD_PARTS = ("secret", "password", "token", "authorization")
_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never be printed (a secret key, a session token)."""
    with _registered_lock:
        _registered.update(v for v in values if v and len(v) >= 4)


def _scrub(value: object, secrets: frozenset[str]) -> object:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and registered secret values."""
    with _registered_lock:
        secrets = frozenset(_registered)
    for name in list(event_dict):
        if any(part in name.lower() for part in _SECRET_FIELD_PARTS):
            event_dict[name] = MASK
        elif secrets:
            event_dict[name] = _scrub(event_dict[name], secrets)
    return event_dict


def _renderer(fmt: LogFormat, stream: TextIO) -> structlog.typing.Processor:
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=stream.isatty())
    return structlog.processors.JSONRenderer(ensure_ascii=False)


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
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Frame locals would print the signing key: never show them.
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        redact,
        _renderer(fmt, out),
    ]
    if fmt == "console" or (fmt == "auto" and out.isatty()):
        # The console renderer formats exceptions itself; keep them as exc_info for it.
        processors.pop(3)
    structlog.configure(
        processors=processors,
        wrapper_class=_filtering(level or DEFAULT_LEVEL),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library; keep them quiet.
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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


def get_logger(**context: object) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**context)
    return logger
