"""The sub-commands behind ``dropzone``: each takes parsed arguments and returns an exit code.

One module per command (or family): ``run`` (the daemon, ``--dry-run``), ``check`` (with
``probes``, what it tries), ``submit``, ``ledger`` (status, backfill, retry, forget),
``validate`` and ``demo``. ``preview`` is the one read-only walk of a watch's listing that
``run --dry-run`` prints and ``check --list`` counts; ``output``, ``options`` and
``status_view`` are what the commands print and how they read their arguments. A command
builds only the parts it uses, through :mod:`dropzone.runtime`.
"""
