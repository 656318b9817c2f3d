"""Room on the frame stack: calls repeated across a 16 KiB chunk's end map no chunk each time.

The kernel's count of this thread's minor page faults tells: a chunk mapped anew is zeroed
pages faulted in at its first touch, and one the interpreter keeps mapped is not.
"""

from __future__ import annotations

import resource
import threading
from typing import TYPE_CHECKING

import pytest

from dropzone.stack import with_room

if TYPE_CHECKING:
    from collections.abc import Callable

# About 110 bytes a frame of _down: 200 deep crosses the first 16 KiB, and is far within the
# room with_room gives (about 39 KiB).
DEPTH = 200
TIMES = 300


def _down(depth: int) -> int:
    return _down(depth - 1) + 1 if depth else 0


def _faults_calling_deep() -> int:
    """Minor page faults of this thread while it makes TIMES calls DEPTH frames deep."""
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(TIMES):
        assert _down(DEPTH) == DEPTH
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


def _in_a_thread(work: Callable[[], int]) -> int:
    """In a new thread: its frame stack starts with one fresh chunk, whatever pytest's depth."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join(timeout=60)
    assert result, "the thread did not finish"
    return result[0]


def test_deep_calls_within_the_room_map_no_chunk_each() -> None:
    without = _in_a_thread(_faults_calling_deep)
    if without < TIMES:
        pytest.skip(f"this interpreter maps no frame chunk per deep call ({without} faults)")
    with_it = _in_a_thread(lambda: with_room(_faults_calling_deep))
    assert with_it < TIMES // 10, (without, with_it)


def test_the_call_is_made_as_given() -> None:
    assert with_room(lambda: 41 + 1) == 42

    def fails() -> int:
        raise LookupError("passed on")

    with pytest.raises(LookupError, match="passed on"):
        with_room(fails)
