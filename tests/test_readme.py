"""The README's promises that CI depends on."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dropzone.config import ArkSettings, DaemonSettings, LedgerSettings, TosSettings, WatchRule
from tests.conftest import REPO

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo


def _shell_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run ends with the README's second command, character for character."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    test_command = _shell_blocks(readme)[1]
    assert "pytest" in test_command
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci_lines[-1] == test_command


def test_readme_opens_with_the_trial_command() -> None:
    """The first command a newcomer sees installs dropzone and starts something local."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = _shell_blocks(readme)[0]
    assert first.startswith("python3 -m venv .venv")
    assert "dropzone " in first


def _reference_tables(text: str) -> dict[str, dict[str, str]]:
    """README section heading (`[ark]`, `[[watch]]`, ...) -> {key: default column}."""
    tables: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        heading = re.match(r"### `(\[\[?\w+\]\]?)`", line)
        if heading:
            section = heading.group(1)
            tables[section] = {}
            continue
        row = re.match(r"\| `(\w+)` \| (.+?) \| .+ \|$", line)
        if row and section:
            tables[section][row.group(1)] = row.group(2)
    return tables


def _default_of(field: FieldInfo) -> object:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


@pytest.mark.parametrize(
    ("section", "model"),
    [
        ("[ark]", ArkSettings),
        ("[tos]", TosSettings),
        ("[ledger]", LedgerSettings),
        ("[daemon]", DaemonSettings),
        ("[[watch]]", WatchRule),
    ],
)
def test_configuration_reference_matches_the_models(section: str, model: type[BaseModel]) -> None:
    """Every setting is documented with its true default, and nothing undocumented exists."""
    documented = _reference_tables((REPO / "README.md").read_text(encoding="utf-8"))[section]
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    assert set(documented) == set(fields)
    for key, shown in documented.items():
        field = fields[key]
        if shown == "required":
            assert field.is_required(), key
        elif shown == "unset":
            assert _default_of(field) is None, key
        elif shown != "derived":
            value = tomllib.loads(f"v = {shown.strip('`')}")["v"]
            default = _default_of(field)
            expected = str(default) if isinstance(default, Path) else default
            if isinstance(expected, tuple):
                expected = list(expected)
            assert value == expected, key
