"""The ledger: every object a watch has seen, and the state machine of its submission.

The package owns that state machine. The allowed transitions are a pure table
(:data:`TRANSITIONS`, :func:`check_transition`) and every write enforces them again in SQL, so
an entry only moves along the table even when threads or processes race. Each state change is
one committed transaction; a claim is one conditional ``UPDATE ... RETURNING`` statement.

- :mod:`.model`: states, transitions, entries, errors (pure);
- :mod:`.diff`: one listing page against the ledger's rows of its key range (pure);
- :mod:`.protocol`: :class:`LedgerWrites` (the daemon's side), :class:`LedgerReads` and
  :class:`Ledger`, the interfaces the rest of dropzone is written against;
- :mod:`.sql`: the portable statements; the state-guarded writes made from the table's moves;
- :mod:`.store` (with :mod:`.queries`, :mod:`.operator`, :mod:`.rows`): :class:`LedgerStore`,
  every ledger's logic written once over the few primitives a store supplies
  (:mod:`.primitives`: a transaction, rows by column name);
- :mod:`.sqlite`, :mod:`.schema`, :mod:`.lockfile`: the embedded SQLite store.

The SQL is portable (row values, ``RETURNING``, ``ON CONFLICT DO NOTHING``, partial indexes):
the PostgreSQL store (:mod:`.postgres`, :mod:`.pg_schema`) supplies transactions and its own
claim statement (``FOR UPDATE SKIP LOCKED``) and passes the same contract suite.

Times are aware UTC datetimes passed in by the caller (no clock inside), stored as fixed-width
ISO-8601 text (``2024-05-01T12:00:00.000000Z``) in both stores: it sorts in time order (in
PostgreSQL under ``COLLATE "C"``), reads well in ``sqlite3`` and ``dropzone status``, and lets
one set of statements compare times in either engine.

Errors (each also under a branch of :mod:`dropzone.errors`, which says what the caller must
do: a ledger that cannot be opened is the operator's configuration, a failed write is not)::

    LedgerError              whatever the ledger raises; the message names the file
    ├── LedgerUnusable       it cannot be made, opened or locked at [ledger] path, is no ledger,
    │   │                    or has a schema this dropzone cannot use (a ConfigurationError)
    │   ├── LedgerLocked     another process holds the ledger (the message gives its pid)
    │   └── LedgerMissing    no ledger where the config points (nothing has run with it)
    ├── LedgerFailed         the open ledger could not be read or written: a full disk, a
    │                        read-only file (an OperationalError; the change was rolled back)
    ├── EntryNotFound        no entry with that id (forgotten or pruned meanwhile)
    ├── InvalidTransition    the entry is not in a state the requested change starts from
    └── ClaimLost            an attempt's write whose claim another node took over since
"""

from dropzone.ledger.diff import Listed, Page, PageDiff, diff_page
from dropzone.ledger.model import (
    TRANSITIONS,
    Claim,
    ClaimLost,
    Entry,
    EntryNotFound,
    InvalidTransition,
    JobMade,
    LedgerError,
    LedgerFailed,
    LedgerLocked,
    LedgerMissing,
    LedgerUnusable,
    NodeLease,
    OnChange,
    Recorded,
    RequestCounts,
    ScopeStatus,
    State,
    Stranded,
    Version,
    check_transition,
)
from dropzone.ledger.protocol import Ledger, LedgerReads, LedgerWrites
from dropzone.ledger.schema import SCHEMA_VERSION
from dropzone.ledger.sqlite import SqliteLedger, probe_ledger
from dropzone.ledger.store import LedgerStore

__all__ = [
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "Claim",
    "ClaimLost",
    "Entry",
    "EntryNotFound",
    "InvalidTransition",
    "JobMade",
    "Ledger",
    "LedgerError",
    "LedgerFailed",
    "LedgerLocked",
    "LedgerMissing",
    "LedgerReads",
    "LedgerStore",
    "LedgerUnusable",
    "LedgerWrites",
    "Listed",
    "NodeLease",
    "OnChange",
    "Page",
    "PageDiff",
    "Recorded",
    "RequestCounts",
    "ScopeStatus",
    "SqliteLedger",
    "State",
    "Stranded",
    "Version",
    "check_transition",
    "diff_page",
    "probe_ledger",
]
