"""A wake-up call that cannot be lost between looking for work and going to sleep.

A plain ``threading.Event`` that each sleeper clears can drop a call: one thread clears it
just after another's ``set`` meant for a third that was about to wait. Here a sleeper notes
the generation *before* it looks for work and sleeps only while no call came since.
"""

from __future__ import annotations

import threading


class Wakeup:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def mark(self) -> int:
        """Take this before looking for work; pass it to :meth:`wait`."""
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, mark: int, timeout: float) -> bool:
        """Sleep up to ``timeout`` unless a call came after ``mark``; True when one did."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != mark, timeout)
