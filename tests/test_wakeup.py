"""Wakeup: a call made after a sleeper looked for work always wakes it."""

from __future__ import annotations

import threading

from dropzone.daemon.wakeup import Wakeup


def test_a_call_between_looking_and_sleeping_is_not_lost() -> None:
    wakeup = Wakeup()
    mark = wakeup.mark()
    wakeup.notify()  # arrives after the sleeper looked, before it sleeps
    assert wakeup.wait(mark, timeout=30) is True


def test_a_call_before_looking_does_not_cut_the_sleep_short() -> None:
    wakeup = Wakeup()
    wakeup.notify()
    mark = wakeup.mark()
    assert wakeup.wait(mark, timeout=0.01) is False


def test_one_call_wakes_every_sleeper_even_when_one_of_them_is_late() -> None:
    """The lost-wake-up an Event that sleepers clear allows: one sleeper's clear swallowing the
    call meant for a second sleeper that had looked but not yet gone to sleep."""
    wakeup = Wakeup()
    marks = [wakeup.mark() for _ in range(3)]
    woke: list[bool] = []
    early = [
        threading.Thread(target=lambda m=m: woke.append(wakeup.wait(m, 30))) for m in marks[:2]
    ]
    for thread in early:
        thread.start()
    wakeup.notify()
    for thread in early:
        thread.join()
    assert wakeup.wait(marks[2], timeout=30) is True  # the late one still sees the call
    assert woke == [True, True]
