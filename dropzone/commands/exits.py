"""How an error that escapes a command ends it: :data:`EXITS` maps dropzone's error tree
(:mod:`dropzone.errors`) to exit codes and to each error's one message line.

Apart from :mod:`dropzone.cli` because its rows name the ledger's errors, and the ledger is
not imported by a command that never fails (``dropzone --help``: issue 17, start-up).
"""

from __future__ import annotations

from dataclasses import dataclass

from dropzone.commands.exit_codes import EXIT_CONFIG, EXIT_PROBLEMS
from dropzone.errors import ConfigurationError, DropzoneError, OperationalError
from dropzone.ledger import ClaimLost, EntryNotFound, InvalidTransition, LedgerFailed


@dataclass(frozen=True)
class Exit:
    """How an error that escapes a command ends it: the exit code, and what the message line
    adds to the error's own words (which say what failed)."""

    kind: type[DropzoneError]
    code: int
    then: str = ""


# Most specific first: the first row whose class the error is an instance of decides. A class
# of the tree that no row covers fails tests/test_errors.py.
EXITS: tuple[Exit, ...] = (
    Exit(
        LedgerFailed,
        EXIT_PROBLEMS,
        "the change was rolled back whole (each change to the ledger is one transaction), so "
        "nothing is half-done; run the command again once the ledger can be written",
    ),
    Exit(
        EntryNotFound,
        EXIT_PROBLEMS,
        "it was forgotten or pruned meanwhile: `dropzone status` shows what the ledger holds",
    ),
    Exit(
        ClaimLost,
        EXIT_PROBLEMS,
        "another dropzone node holds the entry now and settles it: `dropzone status` shows it",
    ),
    Exit(
        InvalidTransition,
        EXIT_PROBLEMS,
        "it changed meanwhile: `dropzone status` shows where it stands",
    ),
    Exit(ConfigurationError, EXIT_CONFIG),
    Exit(OperationalError, EXIT_PROBLEMS),
)


def exit_for(kind: type[DropzoneError]) -> Exit | None:
    """The row of :data:`EXITS` that decides how an error of ``kind`` ends a command (None:
    no row does)."""
    return next((row for row in EXITS if issubclass(kind, row.kind)), None)


def ending(command: str, exc: DropzoneError) -> tuple[int, str] | None:
    """The exit code and the message line for ``exc`` escaping ``command``; None when the
    table has no row for it (a bug, shown with its traceback)."""
    row = exit_for(type(exc))
    if row is None:
        return None
    message = f"{exc}; {row.then}" if row.then else str(exc)
    return row.code, f"dropzone {command}: {message}"
