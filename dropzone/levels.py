"""The log levels and formats a command takes, apart from :mod:`dropzone.log` so that the
command line's parser is built without importing structlog."""

from __future__ import annotations

from typing import Literal, get_args

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
DEFAULT_LEVEL: LogLevel = "info"
