"""The conventions of a command-line tool: completion scripts made from the parser, the
version, and one table of exit codes behind --help and the README."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib.metadata import version
from typing import TYPE_CHECKING

import pytest

from dropzone.cli import build_parser
from dropzone.commands.exit_codes import EXIT_CODES

if TYPE_CHECKING:
    from pathlib import Path


def dropzone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dropzone", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def bash_completes(script: Path, line: str) -> list[str]:
    """What bash's completion offers for ``line`` (the word under the cursor last), by the
    function the script registers, in a real bash."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_shtab_dropzone dropzone\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return sorted(filter(None, (w.strip() for w in done.stdout.splitlines())))


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    made = dropzone("completion", "bash")
    assert made.returncode == 0, made.stderr
    script = tmp_path / "dropzone.bash"
    script.write_text(made.stdout, encoding="utf-8")
    assert bash_completes(script, "dropzone st") == ["status"]
    assert bash_completes(script, "dropzone check --of") == ["--offline"]
    assert bash_completes(script, "dropzone completion ") == ["bash", "tcsh", "zsh"]
    assert "--nodes" in bash_completes(script, "dropzone status --")


def test_zsh_and_tcsh_scripts_name_every_command() -> None:
    (subcommands,) = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    commands = sorted(subcommands.choices)
    assert {"run", "status", "check", "completion", "ledger"} <= set(commands)
    for shell in ("zsh", "tcsh"):
        made = dropzone("completion", shell)
        assert made.returncode == 0, made.stderr
        missing = [command for command in commands if command not in made.stdout]
        assert missing == [], f"{shell}: {missing}"
    zsh = dropzone("completion", "zsh").stdout
    assert zsh.startswith("#compdef dropzone")
    if shutil.which("zsh"):
        checked = subprocess.run(
            ["zsh", "-n"], input=zsh, capture_output=True, text=True, timeout=60, check=False
        )
        assert checked.returncode == 0, checked.stderr


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = dropzone("completion", "fish-and-chips")
    assert done.returncode == 2
    assert "invalid choice: 'fish-and-chips'" in done.stderr


def test_version_is_the_installed_one() -> None:
    done = dropzone("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"dropzone {version('dropzone')}"


def test_help_lists_every_exit_code() -> None:
    done = dropzone("--help")
    assert done.returncode == 0
    listed = done.stdout.partition("exit codes:\n")[2]
    rows = [line.split()[0] for line in listed.splitlines() if line[:3].strip().isdigit()]
    assert rows == [str(code) for code, _ in EXIT_CODES]
