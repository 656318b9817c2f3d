"""The buffer of jobs made: taken whole, in the order made; given back first in line."""

from __future__ import annotations

from datetime import UTC, datetime

from dropzone.jobs.made import JobsMade
from dropzone.ledger import JobMade

AT = datetime(2024, 5, 1, tzinfo=UTC)


def job(number: int) -> JobMade:
    return JobMade(number, f"bi-{number}", f"out/{number}/", AT, fence=number)


def test_taken_whole_in_the_order_made() -> None:
    made = JobsMade()
    for number in (1, 2, 3):
        made.add(job(number))
    assert len(made) == 3
    assert made.take() == [job(1), job(2), job(3)]
    assert (len(made), made.take()) == (0, [])


def test_a_failed_write_gives_them_back_ahead_of_those_made_since() -> None:
    made = JobsMade()
    made.add(job(1))
    taken = made.take()
    made.add(job(2))
    made.give_back(taken)
    assert made.take() == [job(1), job(2)]
