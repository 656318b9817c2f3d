"""The ``dropzone`` command: a thin layer that parses arguments and calls the pieces.

Exit codes: 0 ok; 1 the command ran and found problems (an OperationalError among them: a
ledger write that failed, a full disk say, with nothing half-done); 2 usage or configuration
error (a ConfigurationError: a bad config or argument, or a ledger that cannot be opened at
``[ledger] path`` or is held by another daemon). :data:`EXITS` maps dropzone's error tree
(:mod:`dropzone.errors`) to these codes and to each error's one message line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import textwrap
from typing import TYPE_CHECKING

from dropzone import __version__, heap
from dropzone.commands.completion import HOW_TO_INSTALL, SHELLS, completes_files
from dropzone.commands.exit_codes import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_READER_GONE,
)
from dropzone.emulator.options import configure_parser as configure_emulator_parser
from dropzone.errors import DropzoneError
from dropzone.levels import LOG_LEVELS
from dropzone.stack import with_room

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def _config_option(parser: argparse.ArgumentParser) -> None:
    completes_files(
        parser.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help="config file (default: $DROPZONE_CONFIG, else /etc/dropzone/dropzone.toml)",
        )
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="log rendering (default: console on a terminal, JSON lines otherwise)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="least severe level logged (default: [daemon] log_level, else info)",
    )


def _watch_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--watch", metavar="W", help="only this watch")


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="the daemon: poll, submit, track")
    _config_option(run)
    run.add_argument(
        "--once", action="store_true", help="scan every watch once, submit all that is due, exit"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the requests that would be sent; change nothing",
    )
    run.add_argument(
        "--baseline-anyway",
        action="store_true",
        help="a watch's first start records what is there as baseline even when Ark already "
        "holds jobs of the watch (a new or restored ledger); without it such a start waits",
    )


def _add_ledger_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status", help="what the ledger knows: a table on a terminal, else one entry per line"
    )
    _config_option(status)
    _watch_option(status)
    status.add_argument("--json", action="store_true", help="one JSON object per line")
    status.add_argument("--state", metavar="S", help="only entries in this state")
    status.add_argument(
        "--nodes",
        action="store_true",
        help="the nodes (replicas) instead: each one's lease, its attempts in flight and the roles"
        " it holds",
    )

    submit = sub.add_parser("submit", help="submit one object now, through the ledger")
    _config_option(submit)
    _watch_option(submit)
    submit.add_argument("url", metavar="tos://BUCKET/KEY")

    backfill = sub.add_parser("backfill", help="baseline entries -> pending")
    _config_option(backfill)
    _watch_option(backfill)

    retry = sub.add_parser("retry", help="rejected, invalid (or duplicate) entries -> pending")
    _config_option(retry)
    retry.add_argument(
        "--state",
        choices=["rejected", "invalid", "duplicate"],
        action="append",
        help="default: rejected and invalid, and duplicate too for the KEYs given",
    )
    retry.add_argument("keys", nargs="*", metavar="KEY")

    forget = sub.add_parser("forget", help="drop entries (the objects will count as new)")
    _config_option(forget)
    _watch_option(forget)
    forget.add_argument("keys", nargs="+", metavar="KEY")

    fetch = sub.add_parser(
        "results", help="fetch the result files of an object's job from its output folder"
    )
    _config_option(fetch)
    _watch_option(fetch)
    fetch.add_argument("key", metavar="KEY", help="the object key, as `dropzone status` shows it")
    completes_files(
        fetch.add_argument(
            "--to", metavar="DIR", help="where to put them (default: results/<stem of KEY>/)"
        )
    )

    store = sub.add_parser("ledger", help="the ledger's store: migrate its schema, copy it")
    store_sub = store.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    migrate = store_sub.add_parser("migrate", help="bring the schema up to this version, exit")
    _config_option(migrate)
    copy = store_sub.add_parser(
        "copy", help="copy the SQLite ledger into an empty PostgreSQL database"
    )
    _config_option(copy)
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db")
    copy.add_argument("--password-file", metavar="FILE", help="its password (default: $PGPASSWORD)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropzone",
        description="Turns each new .jsonl in a TOS bucket or folder into one Ark batch job.",
        epilog=exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dropzone {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_ledger_commands(sub)

    validate = sub.add_parser("validate", help="preflight JSONL files; exit 1 if any is invalid")
    completes_files(validate.add_argument("files", nargs="+", metavar="FILE"))

    check = sub.add_parser(
        "check", help="show the effective config and try everything the daemon will use"
    )
    _config_option(check)
    check.add_argument(
        "--list", action="store_true", help="one trial listing per watch, writing nothing"
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="check this machine only: contact neither Ark nor TOS",
    )
    check.add_argument(
        "--json", action="store_true", help="the effective config as JSON, also on a terminal"
    )

    emu = sub.add_parser("emulator", help="a local stand-in of the Ark batch API")
    configure_emulator_parser(emu)

    trial = sub.add_parser("demo", help="a self-contained trial: emulator + local folder")
    trial.add_argument("--dir", metavar="DIR", help="demo folder (default: a new temporary one)")
    trial.add_argument(
        "--quick", action="store_true", help="tell the story once and exit (used by the tests)"
    )

    complete = sub.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or tcsh",
        epilog=HOW_TO_INSTALL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    complete.add_argument("shell", choices=SHELLS)
    return parser


def exit_codes_text() -> str:
    rows = [
        textwrap.fill(meaning, 88, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
        for code, meaning in EXIT_CODES
    ]
    return "exit codes:\n" + "\n".join(rows)


# Each command's module, imported when the command runs: `dropzone --help`, `--version` and a
# short command do not pay for boto3, pydantic's models and the daemon (issue 17: start-up).
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("dropzone.commands.run", "run"),
    "status": ("dropzone.commands.ledger", "status"),
    "submit": ("dropzone.commands.submit", "submit"),
    "backfill": ("dropzone.commands.ledger", "backfill"),
    "retry": ("dropzone.commands.ledger", "retry"),
    "forget": ("dropzone.commands.ledger", "forget"),
    "results": ("dropzone.commands.results", "results"),
    "ledger migrate": ("dropzone.commands.store", "migrate"),
    "ledger copy": ("dropzone.commands.store", "copy"),
    "validate": ("dropzone.commands.validate", "validate"),
    "check": ("dropzone.commands.check", "check"),
    "emulator": ("dropzone.emulator.cli", "command"),
    "demo": ("dropzone.commands.demo", "demo"),
}


# Commands that go on loading in a heap.loading() block of their own (the collector off, then
# what they loaded frozen there): run builds a daemon before it runs it.
_LOADING_ON = frozenset({"run"})


def _command(action: str) -> Callable[[argparse.Namespace], int]:
    if action == "completion":
        from dropzone.commands.completion import completion  # noqa: PLC0415 - see _COMMANDS

        return lambda args: completion(build_parser(), args.shell)
    module, name = _COMMANDS[action]
    found: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # Deep imports and calls beyond the frame stack's first chunk (dropzone.stack).
        return with_room(lambda: _main(argv))
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """Stop quietly, as a program killed by SIGPIPE would, when stdout's reader has gone away
    (``dropzone status --json | head -1``): the reader asked for no more."""
    # What is still buffered would be flushed onto the closed pipe at exit, and Python would
    # print "Exception ignored ... BrokenPipeError" about it.
    # (A stdout that is no file descriptor, such as a caller's buffer, is not flushed there.)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_READER_GONE


def _main(argv: Sequence[str] | None) -> int:
    action = ""
    try:
        with heap.loading() as load:
            args = build_parser().parse_args(argv)
            from dropzone import log  # noqa: PLC0415 - structlog only once a command runs

            log.configure(
                getattr(args, "log_format", "auto"), level=getattr(args, "log_level", None)
            )
            action = args.command
            if action == "ledger":
                action = f"ledger {args.ledger_command}"
            command = _command(action)
            if action in _LOADING_ON:
                load.defer()
        return command(args)
    except DropzoneError as exc:
        from dropzone.commands import exits  # noqa: PLC0415 - only a failed command needs it

        ended = exits.ending(action, exc)
        if ended is None:
            raise
        code, line = ended
        print(line, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        sys.stdout.flush()
