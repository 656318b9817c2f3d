"""A local stand-in for the Ark batch inference management API, for development and trial.

It speaks the wire format of Ark's batch API (envelopes, error codes, Volcengine request
signing) over plain HTTP on loopback, keeps jobs in memory and moves them through their phases
by the time of an injectable clock. Faults are injected on demand (500s, 429s, latency,
"created but the answer was lost", and Creates carried out late) so tests can prove that
dropzone submits each input exactly once; the inspection endpoint counts what the faults did.
Other faults give answers the platform may give and the default never does: job objects with
both model fields, and jobs in a phase this API version does not document.

Layers, from the inside out (each module imports only those above it):

- :mod:`~dropzone.emulator.wire`: actions, paths, the envelope and error answers;
- :mod:`~dropzone.emulator.requests`: Create and List bodies validated (pure);
- :mod:`~dropzone.emulator.jobs`: the lifecycle (``phase_at``), list filtering and
  ``JobBook``, the jobs and per-input Create counts, with no clock, randomness or I/O;
- :mod:`~dropzone.emulator.auth`: the signature check (pure);
- :mod:`~dropzone.emulator.faults`: which fault a request meets (pure), and what faults did;
- :mod:`~dropzone.emulator.inputs`: where a job's input file is read, to count its requests;
- :mod:`~dropzone.emulator.engine`: one lock around the book, the dice and the keys; a
  received request in, a reply out;
- :mod:`~dropzone.emulator.server`: the stdlib HTTP server and ``Emulator``, which owns its
  lifetime; :mod:`~dropzone.emulator.cli`: ``dropzone emulator``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dropzone.emulator.faults import Faults
    from dropzone.emulator.jobs import Timing
    from dropzone.emulator.server import Emulator
    from dropzone.emulator.wire import STATE_PATH

# Imported when first asked for: `dropzone --help` builds the emulator's options from
# wire's constants and should not pay for its server and models (issue 17: start-up).
_LAZY = {
    "Emulator": "dropzone.emulator.server",
    "Faults": "dropzone.emulator.faults",
    "STATE_PATH": "dropzone.emulator.wire",
    "Timing": "dropzone.emulator.jobs",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["STATE_PATH", "Emulator", "Faults", "Timing"]
