"""One error tree: every exception dropzone defines is in it and in the command line's table,
the tree drawn in dropzone/errors.py is the tree the classes make, and a ledger that fails a
write ends a command with exit 1, not 2.

Modelled on httpx's tests/test_exceptions.py, which fails when an httpcore exception has no
httpx class to map to: here, when a class has no branch or no row in ``exits.EXITS``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tomli_w

import dropzone
from dropzone import errors
from dropzone.commands import exit_codes, exits
from dropzone.errors import ConfigurationError, DropzoneError, OperationalError
from dropzone.ledger import LedgerFailed, SqliteLedger, State
from tests.harness import ACCESS_KEY, SECRET_KEY, load_scale
from tests.test_hostile import fill, tiny_filesystem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PACKAGE = Path(dropzone.__file__).parent
BRANCHES = (ConfigurationError, OperationalError)

# Defined by dropzone, and never seen by a command's caller: outside the tree on purpose.
NEVER_ESCAPE = {
    "dropzone.emulator.wire.ApiError": "the emulator's error answer: its server sends it as the "
    "HTTP status and envelope Ark would, so it never leaves a request handler",
    "dropzone.emulator.cli._StopServing": "control flow: the signal handler's way out of the "
    "emulator's serving loop, caught by the function that serves",
    "dropzone.config.env._EnvProblem": "one environment override's problem, caught in its "
    "module and made a line of the ConfigError that lists them all",
    "dropzone.ledger.store._NothingToCommit": "control flow: a claim that changed nothing worth "
    "keeping rolls its transaction back by it, caught by the claim itself",
    "dropzone.notify.targets.DeliveryFailed": "one try of one notice that did not deliver: the "
    "notifier puts the notice off (or gives it up) and logs why, so it never leaves a round",
}


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _modules() -> Iterator[str]:
    for info in pkgutil.walk_packages([str(PACKAGE)], "dropzone."):
        # Importing a __main__ runs the command.
        if not info.name.endswith(".__main__"):
            yield info.name


def _defined() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of dropzone, by its full name."""
    found: dict[str, type[BaseException]] = {}
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module_name:
                found[_name(value)] = value
    return found


def _tree() -> dict[str, type[DropzoneError]]:
    """The classes of the tree, by their short names (which the drawing uses)."""
    return {kind.__name__: kind for kind in _defined().values() if issubclass(kind, DropzoneError)}


def _raised_names() -> set[str]:
    """The names of the classes some ``raise`` in dropzone's sources makes an instance of."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                made = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(made, ast.Name):
                    names.add(made.id)
                elif isinstance(made, ast.Attribute):
                    names.add(made.attr)
    return names


def test_every_exception_dropzone_defines_has_a_branch_and_a_row() -> None:
    """Each class is a DropzoneError under exactly one branch, and a row of ``exits.EXITS``
    decides its exit code; a class under neither branch (a family, such as LedgerError) is
    never raised itself, so every error that escapes a command has its row."""
    defined = _defined()
    assert set(NEVER_ESCAPE) <= set(defined), "NEVER_ESCAPE names a class that is gone"
    raised = _raised_names()
    problems: list[str] = []
    for name, kind in sorted(defined.items()):
        if name in NEVER_ESCAPE:
            assert not issubclass(kind, DropzoneError), f"{name} is in the tree: unlist it here"
            continue
        if not issubclass(kind, DropzoneError):
            problems.append(f"{name}: not a DropzoneError")
            continue
        if kind in {DropzoneError, *BRANCHES}:
            continue
        branches = [branch.__name__ for branch in BRANCHES if issubclass(kind, branch)]
        if len(branches) > 1:
            problems.append(f"{name}: under both branches")
        elif not branches and kind.__name__ in raised:
            problems.append(f"{name}: raised, but under no branch")
        elif branches and exits.exit_for(kind) is None:
            problems.append(f"{name}: no row in exits.EXITS")
    assert not problems, "\n".join(problems)


def test_the_table_keeps_the_exit_codes_meanings() -> None:
    """Every row's code is its branch's (2 for a ConfigurationError, 1 for an OperationalError,
    as the README says), and no row is hidden behind an earlier, more general one."""
    codes = {ConfigurationError: exit_codes.EXIT_CONFIG, OperationalError: exit_codes.EXIT_PROBLEMS}
    for index, row in enumerate(exits.EXITS):
        [branch] = [b for b in BRANCHES if issubclass(row.kind, b)]
        assert row.code == codes[branch], row
        earlier = [r.kind.__name__ for r in exits.EXITS[:index] if issubclass(row.kind, r.kind)]
        assert not earlier, f"{row.kind.__name__} comes after {earlier}: it is never reached"


_NODE = re.compile(r"(?P<name>[A-Z]\w*)(?: \[\+(?P<also>[A-Z]\w*)\])?")


def _drawing() -> dict[str, set[str]]:
    """The tree drawn in errors.py's docstring: each class's name and the names of its parents
    (the one it is drawn under, and the one marked ``[+Name]`` after it)."""
    assert errors.__doc__ is not None
    block = errors.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    drawn: dict[str, set[str]] = {}
    path: list[str] = []
    for number, line in enumerate(block):
        if number > 0 and "── " not in line:
            continue  # a description going on under its class
        depth = 0 if number == 0 else (line.index("── ") - 1) // 4
        found = _NODE.match(line, 4 if number == 0 else line.index("── ") + 3)
        assert found, line
        name = found["name"]
        assert name not in drawn, f"{name} is drawn twice"
        del path[depth:]
        drawn[name] = {*path[-1:], *filter(None, [found["also"]])}
        path.append(name)
    return drawn


def test_the_drawn_tree_is_the_tree_of_the_classes() -> None:
    """errors.py's docstring names exactly the classes of the tree, each under its parent."""
    tree = _tree()
    classes = [kind for kind in _defined().values() if issubclass(kind, DropzoneError)]
    assert len(tree) == len(classes), "two classes of the tree share a name"
    drawn = _drawing()
    missing, stale = sorted(set(tree) - set(drawn)), sorted(set(drawn) - set(tree))
    assert not missing, f"not drawn: {missing}"
    assert not stale, f"drawn, but no such class: {stale}"
    for name, parents in drawn.items():
        bases = {base.__name__ for base in tree[name].__bases__ if base is not Exception}
        assert parents == bases, f"{name} is drawn under {parents}, its bases are {bases}"


# --- real runs --------------------------------------------------------------------------------


def _config(tmp_path: Path, ledger: Path, name: str = "dropzone.toml", **more: str) -> Path:
    """A config whose watch and services a ledger command never contacts (closed ports)."""
    closed = "http://127.0.0.1:9"
    text = tomli_w.dumps(
        {
            "ark": {"endpoint": closed},
            "tos": {"endpoint": closed, "region": "us-east-1", "addressing_style": "path"},
            "ledger": {"path": str(ledger), **more},
            "daemon": {"listen": ""},
            "watch": [
                {
                    "name": "chat",
                    "bucket": "bucket",
                    "prefix": "in/",
                    "model": {"name": "doubao-pro-32k", "version": "240615"},
                }
            ],
        }
    )
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _dropzone(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLC", "AWS_", "DROPZONE_"))}
    env.update(VOLCENGINE_ACCESS_KEY=ACCESS_KEY, VOLCENGINE_SECRET_KEY=SECRET_KEY)
    return subprocess.run(
        [sys.executable, "-m", "dropzone", *args, "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * load_scale(),
        check=False,
    )


def _rejected_entry(ledger: Path) -> None:
    """A ledger as a daemon leaves it: the watch begun, one entry rejected."""
    now = datetime.now(UTC)
    with SqliteLedger.open(ledger, lock=False) as opened:
        opened.begin_watch("chat", "bucket", "in/", now)
        opened.mark_baseline_done("chat")
        entry, _ = opened.add_object("chat", "bucket", "in/a.jsonl", "e1", 10, State.PENDING, now)
        assert opened.claim_one(entry.id, now) is not None
        opened.record_rejected(entry.id, "InvalidParameter: seeded by the test", now)


def _states(ledger: Path) -> list[State]:
    with SqliteLedger.open(ledger, readonly=True) as opened:
        return [entry.state for entry in opened.entries()]


# An unwritable ledger: its path, and what makes it writable again.
Unwritable = tuple[Path, "Callable[[], None]"]


@contextlib.contextmanager
def _full_disk(tmp_path: Path) -> Iterator[Unwritable]:
    """The ledger on a filesystem filled up while another connection holds it open, as a daemon
    beside the command does: its log and index files are there, so the command opens the
    ledger and its write is what fails (without them its opening would, and that is exit 2)."""
    with tiny_filesystem(tmp_path / "state", "1m") as state:
        ledger = state / "ledger.sqlite3"
        _rejected_entry(ledger)
        beside = sqlite3.connect(ledger, isolation_level=None)
        try:
            beside.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            filler = fill(state)
            yield ledger, lambda: filler.unlink(missing_ok=True)
        finally:
            filler.unlink(missing_ok=True)
            beside.close()


@contextlib.contextmanager
def _read_only_file(tmp_path: Path) -> Iterator[Unwritable]:
    """The ledger's file made immutable (``chattr +i``: a mode of 0o444 does not stop root);
    its folder stays writable, so the command opens it and its write is refused."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("no chattr here to make a file read-only for root too")
    ledger = tmp_path / "state" / "ledger.sqlite3"
    _rejected_entry(ledger)
    done = subprocess.run([chattr, "+i", str(ledger)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot make the ledger immutable: {done.stderr.strip()}")

    def writable() -> None:
        subprocess.run([chattr, "-i", str(ledger)], check=True)

    try:
        yield ledger, writable
    finally:
        writable()


@pytest.mark.parametrize(
    ("how", "cause"),
    [("full disk", "database or disk is full"), ("read-only", "attempt to write a readonly")],
)
def test_a_ledger_write_that_fails_during_retry_exits_1(
    tmp_path: Path, how: str, cause: str
) -> None:
    """A full disk or a read-only ledger file under `dropzone retry`: exit 1 (the command ran;
    nothing is wrong with its config), one line saying what failed and that nothing is
    half-done, no traceback; the entry is as it was, and once the ledger can be written, the
    same command moves it."""
    make = _full_disk if how == "full disk" else _read_only_file
    [row] = [r for r in exits.EXITS if r.kind is LedgerFailed]
    with make(tmp_path) as (ledger, make_writable):
        config = _config(tmp_path, ledger)
        done = _dropzone(config, "retry")
        assert (done.returncode, done.stdout) == (1, ""), done.stderr
        assert done.stderr.startswith(f"dropzone retry: ledger {ledger}: {cause}"), done.stderr
        assert done.stderr.endswith(f"; {row.then}\n")
        assert done.stderr.count("\n") == 1
        make_writable()
        assert _states(ledger) == [State.REJECTED]
        again = _dropzone(config, "retry")
        assert (again.returncode, again.stdout) == (0, "1 entry -> pending\n"), again.stderr
        assert _states(ledger) == [State.PENDING]


def test_a_locked_ledger_and_a_bad_config_still_exit_2(tmp_path: Path) -> None:
    """What the command was given is wrong: a ledger another dropzone holds (here, this test's
    process) stops `run` before it calls anything, and a misspelt setting stops `retry`; each
    exit 2 with one line naming the ledger or the file and the setting."""
    ledger = tmp_path / "state" / "ledger.sqlite3"
    _rejected_entry(ledger)
    config = _config(tmp_path, ledger)
    with SqliteLedger.open(ledger):
        held = _dropzone(config, "run", "--once")
    assert (held.returncode, held.stdout) == (2, ""), held.stderr
    assert held.stderr == (
        f"dropzone run: another dropzone (pid {os.getpid()}) is using {ledger};"
        " stop it or use another ledger.path\n"
    )
    bad = _config(tmp_path, ledger, "bad.toml", pth="elsewhere.sqlite3")
    refused = _dropzone(bad, "retry")
    assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
    assert refused.stderr.startswith(f"dropzone retry: {bad}: ledger.pth: "), refused.stderr
    assert _states(ledger) == [State.REJECTED]
