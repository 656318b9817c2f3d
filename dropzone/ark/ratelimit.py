"""A client-side request-rate cap shared by every thread that calls the API."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart, across threads.

    Slots are handed out in order under a lock and waited for outside it, so a caller never
    holds the lock while sleeping. Spacing (rather than a bursty token bucket) keeps the
    platform's unpublished QPS limit from seeing a burst after an idle spell.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def set_rate(self, rate: float) -> None:
        """A new rate from the next slot on (replicas share the cap as their number changes)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        with self._lock:
            self._interval = 1.0 / rate

    def reserve(self) -> float:
        """Take the next slot; returns how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
            return slot - now

    def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
