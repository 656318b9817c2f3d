"""The README's promises that CI depends on."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dropzone.config import (
    ArkSettings,
    DaemonSettings,
    EventsSettings,
    LedgerSettings,
    TosSettings,
    WatchRule,
    range_text,
)
from dropzone.config.notify import NotifySettings
from tests.conftest import REPO
from tests.harness import free_port, load_scale, log_events

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


SECTIONS = [
    ("[ark]", ArkSettings),
    ("[tos]", TosSettings),
    ("[ledger]", LedgerSettings),
    ("[daemon]", DaemonSettings),
    ("[events]", EventsSettings),
    ("[[watch]]", WatchRule),
    ("[watch.notify]", NotifySettings),
]


def _reference_tables(text: str) -> dict[str, dict[str, str]]:
    """README section heading (`[ark]`, `[[watch]]`, ...) -> {key: default column}."""
    tables: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        heading = re.match(r"### `(\[\[?[\w.]+\]\]?)`", line)
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


@pytest.mark.parametrize(("section", "model"), SECTIONS)
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


def _meanings(text: str, section: str) -> dict[str, str]:
    body = text.split(f"### `{section}`", 1)[1].split("\n### ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| .+? \| (.+) \|$", body, flags=re.MULTILINE))


@pytest.mark.parametrize(("section", "model"), SECTIONS)
def test_configuration_reference_states_each_range(section: str, model: type[BaseModel]) -> None:
    """Every numeric setting's row states the range the settings model checks, word for word
    as its error does (and config/dropzone.toml's comment above it too)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = (REPO / "config" / "dropzone.toml").read_text(encoding="utf-8")
    # A table the example leaves commented out (it tells nobody) is documented all the same.
    opening = f"\n{section}\n" if f"\n{section}\n" in example else f"\n# {section}\n"
    body = example.split(opening, 1)[1].split("\n[", 1)[0]
    meanings = _meanings(readme, section)
    for name, field in model.model_fields.items():
        span = range_text(field)
        if span is None:
            continue
        assert span in meanings[field.alias or name], (section, name)
        comment = re.search(rf"((?:^#.*\n)+)^#? ?{name} = ", body, flags=re.MULTILINE)
        assert comment, (section, name)
        assert span in " ".join(comment.group(1).replace("#", " ").split()), (section, name)


@pytest.mark.slow
def test_the_trial_runs_as_written(tmp_path: Path) -> None:
    """The README's local trial, run by bash as written (on free ports, with this test's
    virtual environment): check passes, the file is submitted once and shows `submitted`."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [trial] = [block for block in _shell_blocks(readme) if "dropzone emulator --port" in block]
    ark_port, s3_port = free_port(), free_port()
    script = (
        trial.replace(". .venv/bin/activate", f". {Path(sys.prefix) / 'bin' / 'activate'}")
        .replace("8765", str(ark_port))
        .replace("9000", str(s3_port))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLC", "DROPZONE_"))}
    shell = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the servers it starts in the background die with it
    )
    try:
        out, err = shell.communicate(timeout=240 * load_scale())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, out[-3000:] + err[-3000:]
    assert "FAILED" not in err
    assert f"ark http://127.0.0.1:{ark_port} project 'default': ok" in err
    submitted = [e for e in log_events(out) if e.get("event") == "job.submitted"]
    assert [e["key"] for e in submitted] == ["dataset/hello.jsonl"]
    assert "submitted" in out.splitlines()[-1]
    assert (tmp_path / "trial-ledger.sqlite3").exists()


def test_the_readme_exit_code_table_is_the_cli_s() -> None:
    """One table of exit codes: the README's rows are cli.EXIT_CODES, in order, word for word."""
    from dropzone.commands.exit_codes import EXIT_CODES  # noqa: PLC0415 - this test alone

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.partition("| exit code | meaning |\n|---|---|\n")[2].partition("\n\n")[0]
    rows = [
        tuple(cell.strip() for cell in line.strip("|").split(" | ")) for line in table.splitlines()
    ]
    assert rows == [(str(code), meaning) for code, meaning in EXIT_CODES]
