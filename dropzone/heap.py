"""Python's cyclic garbage collector while a command loads (issue 17: the CPU a run costs).

A command's first moments import boto3, pydantic and the models built on it, structlog and
the daemon: some 100,000 objects the collector tracks, which live as long as the process. With
the collector on, every collection their making triggered walked all those made so far, and
every full collection of a long run walked them all again: ``dropzone run --once`` over one
file cost 0.45 s of CPU here, 0.36 s without that (``bench/job_cost.py``, issue 17).
:func:`loading` keeps the collector off while a command loads, then moves what loaded into the
permanent generation (``gc.freeze``), which no collection visits. Once a process: what loads
once a process is what is worth freezing (a test calling ``main`` many times freezes at its
first call only, not each test's leftovers). A command that goes on loading after the command
line's block (``run``: its settings, the listings it asks for ahead, the daemon's modules and
parts) defers the freeze to a block of its own (:meth:`Load.defer`): the daemon's parts made
with the collector on cost ``run --once`` over 500 objects 0.06 s of CPU (``bench/ab.py``).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

_frozen = False


class Load:
    """One loading block; :meth:`defer` leaves its freeze to the next."""

    def __init__(self) -> None:
        self.freezes = True

    def defer(self) -> None:
        """The command goes on loading in a block of its own: the freeze is that block's."""
        self.freezes = False


@contextmanager
def loading() -> Iterator[Load]:
    """The collector off for the block (as it was after it), and what the block's first use
    in this process loaded frozen out of later collections, unless it deferred the freeze."""
    global _frozen  # noqa: PLW0603 - once a process, by definition process-wide
    load = Load()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield load
    finally:
        if not _frozen and load.freezes:
            gc.freeze()
            _frozen = True
        if enabled:
            gc.enable()
