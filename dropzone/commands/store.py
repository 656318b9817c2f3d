"""``dropzone ledger migrate`` and ``dropzone ledger copy``: the ledger's store itself.

``migrate`` brings the configured ledger's schema up to this version and exits (a Kubernetes
Job before a rolling update, say); ``run`` migrates too, so it is never required. ``copy``
moves an SQLite ledger into an empty PostgreSQL one, row for row.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.config.fields import check_ledger_url
from dropzone.ledger import LedgerUnusable, SqliteLedger
from dropzone.ledger.copy import copy_ledger
from dropzone.runtime import UsageError

if TYPE_CHECKING:
    import argparse


def migrate(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    with runtime.open_ledger(settings, create=True) as ledger:
        print(f"ledger {ledger.where}: schema up to date", file=sys.stderr)
    return 0


def copy(args: argparse.Namespace) -> int:
    """The configured SQLite ledger into the empty PostgreSQL database ``--to``."""
    settings = runtime.settings_from(args.config)
    if settings.ledger.url is not None:
        raise UsageError("ledger copy reads an SQLite ledger: this config's [ledger] is url")
    try:
        url = check_ledger_url(args.to)
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from exc
    # None: libpq's own PGPASSWORD or .pgpass, as for [ledger] url.
    password = (
        None
        if args.password_file is None
        else runtime.read_password(Path(args.password_file), "--password-file")
    )
    # As runtime does: psycopg's import is paid by the commands that use it only.
    from dropzone.ledger.postgres import PostgresLedger  # noqa: PLC0415

    if not settings.ledger.path.exists():
        raise UsageError(runtime.no_ledger(settings))
    # Locked as a daemon locks it: a daemon still running on the file would go on changing
    # what is being copied (stop it first; the lock says so).
    source = runtime.open_ledger(settings, daemon=True)
    try:
        assert isinstance(source, SqliteLedger)  # [ledger] url is None
        try:
            with PostgresLedger.open(url, password=password, lock=True) as target:
                watches, entries = copy_ledger(source, target)
        except LedgerUnusable as exc:
            raise UsageError(str(exc)) from exc
    finally:
        source.close()
    print(
        f"copied {watches} watch(es) and {entries} entries from {settings.ledger.path} to"
        f" {target.where}; set [ledger] url to it (and password_file) and start the daemon",
        file=sys.stderr,
    )
    return 0
