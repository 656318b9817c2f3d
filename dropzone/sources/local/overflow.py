"""Telling folder watchers that the kernel's inotify queue overflowed.

When more events arrive than the kernel queues (``fs.inotify.max_queued_events``, 16,384 by
default: a flood of files written at once), events are lost. watchdog notices the kernel's
overflow event but tells its handlers nothing; it only logs a warning through the standard
``logging`` module. This filter on that logger is the one place to hear of it: every watcher
registered is told, and rescans its folder at once instead of at its next periodic rescan.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

WATCHDOG_LOGGER = "watchdog.observers.inotify_c"
# watchdog 7 also tells the recursive watches' rebuild after an overflow, on this one.
WATCHDOG_LOGGERS = (WATCHDOG_LOGGER, "watchdog.observers.inotify")
OVERFLOW_MESSAGE = "Inotify queue overflowed"


class _OverflowFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._listeners: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def listen(self, callback: Callable[[], None]) -> int:
        with self._lock:
            token = id(callback)
            self._listeners[token] = callback
            return token

    def forget(self, token: int) -> None:
        with self._lock:
            self._listeners.pop(token, None)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(OVERFLOW_MESSAGE):
            return True
        with self._lock:
            listeners = list(self._listeners.values())
        for callback in listeners:
            callback()
        return False  # the watchers say it in their own words, once


_FILTER = _OverflowFilter()
for _name in WATCHDOG_LOGGERS:
    logging.getLogger(_name).addFilter(_FILTER)


def on_overflow(callback: Callable[[], None]) -> int:
    """Call ``callback`` (on watchdog's thread) at each overflow; returns a token to stop."""
    return _FILTER.listen(callback)


def stop_hearing(token: int) -> None:
    _FILTER.forget(token)
