"""The ledger: every object a watch has seen, and the state machine of its submission.

The package owns that state machine. The allowed transitions are a pure table
(:data:`TRANSITIONS`, :func:`check_transition`) and every write enforces them again in SQL, so
an entry only moves along the table even when threads or processes race. Each state change is
one committed transaction; a claim is one conditional ``UPDATE ... RETURNING`` statement.

- :mod:`.model`: states, transitions, entries, errors (pure);
- :mod:`dropzone.ledger.diff`: one listing page against the ledger's rows of its key range (pure);
- :mod:`.protocol`: the :class:`Ledger` interface the rest of dropzone is written against;
- :mod:`.sqlite`, :mod:`.schema`, :mod:`.lockfile`: the embedded SQLite implementation.

The SQL is portable (row values, ``RETURNING``, ``ON CONFLICT DO NOTHING``, partial indexes),
so a PostgreSQL ledger claiming with ``FOR UPDATE SKIP LOCKED`` can implement the same
protocol without a redesign.

Times are aware UTC datetimes passed in by the caller (no clock inside), stored as fixed-width
ISO-8601 text (``2024-05-01T12:00:00.000000Z``): it sorts in time order, reads well in
``sqlite3`` and ``dropzone status``, and maps onto PostgreSQL's ``timestamptz``.

Errors (each also under a branch of :mod:`dropzone.errors`, which says what the caller must
do: a ledger that cannot be opened is the operator's configuration, a failed write is not)::

    LedgerError              whatever the ledger raises; the message names the file
    ├── LedgerUnusable       it cannot be made, opened or locked at [ledger] path, is no ledger,
    │   │                    or has a schema this dropzone cannot use (a ConfigurationError)
    │   └── LedgerLocked     another process holds the ledger (the message gives its pid)
    ├── LedgerFailed         the open ledger could not be read or written: a full disk, a
    │                        read-only file (an OperationalError; the change was rolled back)
    ├── EntryNotFound        no entry with that id (forgotten or pruned meanwhile)
    └── InvalidTransition    the entry is not in a state the requested change starts from
"""

from dropzone.ledger.diff import Listed, Page, PageDiff, diff_page
from dropzone.ledger.model import (
    TRANSITIONS,
    Entry,
    EntryNotFound,
    InvalidTransition,
    LedgerError,
    LedgerFailed,
    LedgerLocked,
    LedgerUnusable,
    OnChange,
    RequestCounts,
    ScopeStatus,
    State,
    check_transition,
)
from dropzone.ledger.protocol import Ledger
from dropzone.ledger.schema import SCHEMA_VERSION
from dropzone.ledger.sqlite import SqliteLedger, probe_ledger

__all__ = [
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "Entry",
    "EntryNotFound",
    "InvalidTransition",
    "Ledger",
    "LedgerError",
    "LedgerFailed",
    "LedgerLocked",
    "LedgerUnusable",
    "Listed",
    "OnChange",
    "Page",
    "PageDiff",
    "RequestCounts",
    "ScopeStatus",
    "SqliteLedger",
    "State",
    "check_transition",
    "diff_page",
    "probe_ledger",
]
