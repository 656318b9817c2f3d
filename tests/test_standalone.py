"""The repository stands alone: nothing tracked reads or links a path outside the checkout.

A user's clone has nothing beside it, so a link to ``../something`` from the top, or a test
that climbs above the repository for its data, works for the developers and breaks for everyone
else. Three angles: relative links and paths written in text, Python code that climbs from
``__file__`` past the root, and a copy of the tracked files, alone in an empty folder, collecting
the whole suite.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A markdown link target, or a path that starts by going up: the two ways text points elsewhere.
_LINK = re.compile(r"\]\(([^)\s#]+)")
_UPWARD = re.compile(r"(?<![\w.{}])((?:\.\./)+[\w./-]*)")
_BINARY = {".png", ".jpg", ".gz", ".whl", ".sqlite3"}


def _tracked() -> list[Path]:
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout.decode()
        return [REPO / name for name in listed.split("\0") if name]
    skipped = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return [
        path
        for path in REPO.rglob("*")
        if path.is_file() and not skipped.intersection(path.relative_to(REPO).parts)
    ]


def _text_files() -> list[Path]:
    return [p for p in _tracked() if p.suffix not in _BINARY and p.exists()]


def _escapes(base: Path, target: str) -> bool:
    if "://" in target or target.startswith(("mailto:", "/")):
        return False
    resolved = Path(os.path.normpath(base / target))
    return not resolved.is_relative_to(REPO)


def _outside_references(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    found = [m for m in _LINK.findall(text) if _escapes(path.parent, m)]
    found += [m for m in _UPWARD.findall(text) if _escapes(path.parent, m)]
    return found


def _parent_steps(node: ast.expr) -> tuple[int, ast.expr]:
    """How many levels ``node`` climbs (``.parent``, ``.parents[k]``), and what it climbs from."""
    steps = 0
    while True:
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            steps, node = steps + 1, node.value
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
        ):
            steps, node = steps + node.slice.value + 1, node.value.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"resolve", "absolute"}
        ):
            node = node.func.value
        else:
            return steps, node


def _is_this_file(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and bool(node.args)
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == "__file__"
    )


def _climbs_out(source: str, to_root: int) -> list[str]:
    """Expressions in Python source that climb from ``__file__`` above the repository's root.

    ``to_root`` is how many ``.parent`` steps from the file reach the root (2 for tests/x.py).
    """
    tree = ast.parse(source)
    heights: dict[str, int] = {}  # a name bound to a climb: how far up it already is
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            steps, origin = _parent_steps(node.value)
            if isinstance(target, ast.Name) and _is_this_file(origin):
                heights[target.id] = steps
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute | ast.Subscript):
            continue
        steps, origin = _parent_steps(node)
        if _is_this_file(origin):
            height = steps
        elif isinstance(origin, ast.Name) and origin.id in heights:
            height = heights[origin.id] + steps
        else:
            continue
        if height > to_root:
            found.append(ast.unparse(node))
    return found


def test_no_tracked_text_links_or_names_a_path_outside_the_repository() -> None:
    """Every relative link and every ``../`` path in a tracked file stays inside the checkout."""
    offenders = {
        str(path.relative_to(REPO)): refs
        for path in _text_files()
        if (refs := _outside_references(path))
    }
    assert offenders == {}


def test_no_python_file_climbs_above_the_repository() -> None:
    """No module, test or benchmark reaches above the root from its own ``__file__``."""
    offenders = {
        str(path.relative_to(REPO)): found
        for path in _text_files()
        if path.suffix == ".py"
        and (
            found := _climbs_out(
                path.read_text(encoding="utf-8"), len(path.relative_to(REPO).parts)
            )
        )
    }
    assert offenders == {}


def test_the_detectors_see_what_they_must() -> None:
    """Both detectors flag the two mistakes this test exists for, and pass their fixes."""
    readme = REPO / "README.md"
    assert _escapes(readme.parent, "../sibling/design.md")
    assert not _escapes(readme.parent, "docs/design.md")
    assert not _escapes(REPO / "docs", "../tests/data/signing-vectors.json")
    assert _UPWARD.findall("open('../sibling/ark/x.json')") == ["../sibling/ark/x.json"]
    code = (
        "from pathlib import Path\n"
        "REPO = Path(__file__).resolve().parent.parent\n"
        "OUT = REPO.parent / 'sibling'\n"
        "DIRECT = Path(__file__).parents[2] / 'sibling'\n"
        "FINE = Path(__file__).resolve().parent.parent / 'bench'\n"
    )
    assert sorted(_climbs_out(code, to_root=2)) == ["Path(__file__).parents[2]", "REPO.parent"]


@pytest.mark.slow
def test_a_copy_with_nothing_beside_it_collects_the_whole_suite(tmp_path: Path) -> None:
    """The tracked files alone, in an empty folder, import and collect every test."""
    alone = tmp_path / "empty" / "dropzone-clone"
    for path in _tracked():
        if path.exists():
            copy = alone / path.relative_to(REPO)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(alone)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=alone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ tests? collected", done.stdout), done.stdout[-500:]
    assert (
        "dropzone-clone"
        in subprocess.run(
            [sys.executable, "-c", "import dropzone; print(dropzone.__file__)"],
            cwd=alone,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
