"""Stand-ins for tests of dropzone and of code built on it: clocks a test moves, and a recorder
of the calls an Ark client makes.

Like httpx's ``MockTransport`` and dramatiq's ``StubBroker``, they sit next to what they stand
in for and speak its interface exactly (:data:`dropzone.ark.client.CallObserver`, the
``clock`` and ``sleep`` parameters of the parts that take them), so a test swaps them in at
construction and nothing is patched. The network is never faked: Ark is the emulator on
loopback (:mod:`dropzone.emulator`), S3 a real server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A fixed moment, so that what a test records (names, dates in keys) is the same on every run.
START = datetime(2025, 1, 15, 9, 49, 23, tzinfo=UTC)


class FakeClock:
    """Aware UTC time that moves only when told to; safe to read from a server's threads."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class FakeTimer:
    """A monotonic clock in seconds whose ``sleep`` moves it instead of waiting, and which
    remembers each sleep (what a rate limiter or a heartbeat waits is then exact)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class Call:
    """One call an Ark client made, as its observer heard it."""

    action: str
    outcome: str
    seconds: float
    detail: str = ""


class CallRecorder:
    """A :data:`~dropzone.ark.client.CallObserver` that keeps every call, in order; give it
    as ``observer=`` to an :class:`~dropzone.ark.client.ArkClient` (thread-safe: the
    daemon's workers share one client)."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def __call__(self, action: str, outcome: str, seconds: float, detail: str = "") -> None:
        with self._lock:
            self._calls.append(Call(action, outcome, seconds, detail))

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def heard(self) -> list[tuple[str, str]]:
        """(action, outcome) of each call, in order."""
        return [(call.action, call.outcome) for call in self.calls]

    def count(self, action: str) -> int:
        return sum(1 for call in self.calls if call.action == action)
