"""The daemon: a main loop that polls, workers that submit, and the wiring that builds them.

- :mod:`~dropzone.daemon.loop`: :class:`Daemon`, the poll loop, reconciliation, tracking, drain;
- :mod:`~dropzone.daemon.work`: the submit workers, claims and the in-flight set;
- :mod:`~dropzone.daemon.parts`: what a daemon is given (its watches, do-nothing collaborators);
- :mod:`~dropzone.daemon.build`: every part made from settings (``dropzone run``);
- :mod:`~dropzone.daemon.wakeup`: the one-shot signal between the loops.
"""

from dropzone.daemon.loop import Daemon, DaemonOptions

__all__ = ["Daemon", "DaemonOptions"]
