"""When a local file counts as complete: a pure tracker fed with observations and times.

Two ways to be ready:

- **A completion event** (:meth:`SettleTracker.closed`): the writer closed the file after
  writing, or renamed it into place. The file is ready at once, whatever ``settle_s`` is: that
  is what keeps detection within a few milliseconds for the common writers.
- **Stability** (:meth:`SettleTracker.observe`): the fallback for files seen only by scans and
  created/modified events (polling observers, files that arrived while the daemon was down,
  writers that never close, moves in from outside the folder). A file is ready once the same
  (size, mtime_ns) has been observed ``settle_s`` apart with no other version seen in between;
  ``settle_s = 0`` counts a file at first sight.

Each (relpath, size, mtime_ns) version is reported once; a new version of the same relpath is
reported again. The caller re-observes :meth:`SettleTracker.due` files (with a fresh stat) when
their window has passed, since no event may ever come for a file that stopped changing.

Sweeps bound the memory: after a full rescan :meth:`SettleTracker.end_sweep` forgets every
file not observed since the previous sweep (deleted while no event said so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dropzone.sources.local.files import LocalFile


@dataclass(frozen=True)
class _Seen:
    file: LocalFile
    since: float  # when this version was first observed
    sweep: int  # the sweep in which the file was last observed

    @property
    def version(self) -> tuple[int, int]:
        return (self.file.size, self.file.mtime_ns)


class SettleTracker:
    """Decides which observed files are complete. Not thread-safe: one thread feeds it."""

    def __init__(self, settle_s: float) -> None:
        if settle_s < 0:
            raise ValueError(f"settle_s must be >= 0, not {settle_s}")
        self.settle_s = settle_s
        self._pending: dict[str, _Seen] = {}
        # Only the version per reported file: this table holds every file in the folder.
        self._reported: dict[str, tuple[int, int, int]] = {}  # relpath -> size, mtime, sweep
        self._sweep = 0

    def observe(self, file: LocalFile, now: float) -> LocalFile | None:
        """Record a stat of ``file`` at ``now``; return it if that makes it ready."""
        if self._already_reported(file):
            return None
        seen = self._pending.get(file.relpath)
        if seen is None or seen.version != (file.size, file.mtime_ns):
            self._pending[file.relpath] = _Seen(file, now, self._sweep)
            if self.settle_s > 0:
                return None
        elif now < seen.since + self.settle_s:  # the same sum as next_due(), float for float
            self._pending[file.relpath] = _Seen(seen.file, seen.since, self._sweep)
            return None
        return self._ready(file)

    def closed(self, file: LocalFile) -> LocalFile | None:
        """A completion event was seen and ``file`` is its stat: ready unless reported already."""
        if self._already_reported(file):
            return None
        return self._ready(file)

    def forget(self, relpath: str) -> None:
        """The file is gone, or its report failed: drop it; a later sighting is new."""
        self._pending.pop(relpath, None)
        self._reported.pop(relpath, None)

    def due(self, now: float) -> list[LocalFile]:
        """Files waiting to settle whose window has passed: stat them again and observe."""
        return [s.file for s in self._pending.values() if now >= s.since + self.settle_s]

    def next_due(self) -> float | None:
        """The earliest time at which :meth:`due` may return something, if anything waits."""
        if not self._pending:
            return None
        return min(s.since for s in self._pending.values()) + self.settle_s

    def end_sweep(self) -> None:
        """A full rescan finished: forget files not observed since the previous sweep."""
        stale = [relpath for relpath, s in self._pending.items() if s.sweep < self._sweep]
        for relpath in stale:
            del self._pending[relpath]
        gone = [relpath for relpath, v in self._reported.items() if v[2] < self._sweep]
        for relpath in gone:
            del self._reported[relpath]
        self._sweep += 1

    @property
    def waiting(self) -> int:
        """How many files are waiting to settle."""
        return len(self._pending)

    def _already_reported(self, file: LocalFile) -> bool:
        reported = self._reported.get(file.relpath)
        if reported is None:
            return False
        # The relpath was seen, whatever its version: the sweep must not forget its report.
        size, mtime_ns, _ = reported
        self._reported[file.relpath] = (size, mtime_ns, self._sweep)
        if (size, mtime_ns) != (file.size, file.mtime_ns):
            return False
        self._pending.pop(file.relpath, None)
        return True

    def _ready(self, file: LocalFile) -> LocalFile:
        self._pending.pop(file.relpath, None)
        self._reported[file.relpath] = (file.size, file.mtime_ns, self._sweep)
        return file
