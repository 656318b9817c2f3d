"""The README's promises that CI depends on."""

from __future__ import annotations

import re

from tests.conftest import REPO


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
