"""Every exit code a command ends with, and what it means: ``--help``'s epilog and the README's
table (tests/test_readme.py compares them) are made from :data:`EXIT_CODES`."""

from __future__ import annotations

import signal

EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
EXIT_READER_GONE = 128 + signal.SIGPIPE

# Every exit code a command ends with, and what it means: --help's epilog and the README's
# table (tests/test_readme.py compares them) are made from this one list.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "done; nothing wrong found"),
    (
        EXIT_PROBLEMS,
        (
            "the command ran and met problems: invalid files, failed submissions, a check"
            " that failed, a ledger write that failed (rolled back whole)"
        ),
    ),
    (
        EXIT_CONFIG,
        (
            "usage or configuration error: the message names the setting or argument to"
            " fix; nothing was changed"
        ),
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    (EXIT_READER_GONE, "stdout's reader went away (piped to `head`, say): stopped quietly"),
)
