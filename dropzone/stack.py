"""Room on the interpreter's frame stack for a command's deep calls (issue 17: start-up CPU).

CPython 3.11 and later keep a thread's Python frames in chunks of 16 KiB: a call that does not
fit in the current chunk maps a new one, and unmaps it when it returns. A call made again and
again right at a chunk's end maps and unmaps a chunk each time, and the kernel zeroes its
pages at every mapping. ``dropzone run --once`` imports botocore from within the command (101
frames deep, the import machinery's five frames a module), and botocore's regular expressions,
compiled there by the recursive ``re`` parser, sat on that line: 1,195 chunks mapped and
unmapped at every start, where the bare loop's top-level import mapped 9
(``strace -e trace=mmap,munmap``, 2,000 objects). Imported 60 frames deep, botocore,
pydantic-settings, structlog and httpx cost 0.022 s more CPU than from within
:func:`with_room` (median of 20 paired processes, 18 of them dearer).

:func:`with_room` calls its argument from a frame too large for any 16 KiB chunk, which gets
one of 64 KiB to itself (the interpreter sizes a new chunk for the frame plus 1,000 slots,
doubling from 16 KiB) and leaves the calls made from it about 39 KiB before the next chunk,
where they had the rest of 16. That chunk lives as long as the call. The frame's size is only
a reservation (``co_stacksize``, which the interpreter reads to size the frame and nothing
else), so an interpreter that lays its frames out otherwise only reserves 25 KiB more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

_T = TypeVar("_T")

# Slots of 8 bytes: more than 3,096 (with the 1,000 the interpreter adds, more than 32 KiB)
# makes the chunk 64 KiB; 3,200 leaves the calls made from the frame 39 KiB of it.
ROOM_SLOTS = 3200


def with_room(call: Callable[[], _T]) -> _T:
    """``call()``, its calls given a frame-stack chunk of their own (module docstring)."""
    return call()


with_room.__code__ = with_room.__code__.replace(
    co_stacksize=with_room.__code__.co_stacksize + ROOM_SLOTS
)
