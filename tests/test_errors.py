"""One error tree: every exception dropzone defines is in it, and the tree drawn in
dropzone/errors.py is the tree the classes make.

Modelled on httpx's tests/test_exceptions.py, which fails when an httpcore exception has no
httpx class to map to: here, when a class has no branch.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import TYPE_CHECKING

import dropzone
from dropzone import errors
from dropzone.errors import ConfigurationError, DropzoneError, OperationalError

if TYPE_CHECKING:
    from collections.abc import Iterator

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


def test_every_exception_dropzone_defines_has_a_branch() -> None:
    """Each class is a DropzoneError under exactly one branch; a class under neither branch (a
    family, such as LedgerError) is never raised itself."""
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
    assert not problems, "\n".join(problems)


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
