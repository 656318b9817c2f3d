"""Numbers at their edges, empty paths and credentials of the wrong kind, through the real
command line (issue 12 items 6, 7 and 2 in part).

Each value here was taken by the config on the day the issue was filed and then crashed the
daemon with a traceback, mid-run: an OverflowError from a timer, a clock or a date
(1e300 seconds, a million days), a UnicodeEncodeError in every worker (a credential a header or
the signer cannot carry), or "unable to open database file" (an empty ledger path, which was
the config file's own folder). Now each stops the command at load with exit 2 and one line
naming the setting; nothing is created and no call is made.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from typing import TYPE_CHECKING, Any

import pytest
import tomli_w

from tests.harness import SECRET_KEY, Stage, assert_no_traceback

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

TOKEN = "STS-session-token-that-must-never-show-0123456789"


def _config(stage: Stage, name: str, section: str, values: Mapping[str, Any]) -> Path:
    data = tomllib.loads(stage.config_text())
    target = data["watch"][0] if section == "watch" else data[section]
    target.update(values)
    path = stage.tmp / f"{name}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _run_all(
    stage: Stage, runs: Sequence[tuple[Sequence[str], Mapping[str, str]]]
) -> list[subprocess.CompletedProcess[str]]:
    """The command lines side by side (a child costs most of a second to start)."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dropzone", *args],
            env={**stage.env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, env in runs
    ]
    done = []
    for (args, _), child in zip(runs, children, strict=True):
        out, err = child.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(list(args), child.returncode, out, err))
    return done


# (section, setting, value, the error's words after "setting: ")
EDGES = [
    ("ledger", "retention_days", 1_000_000, "out of range: must be from 1 to 3650 (got 1000000)"),
    ("watch", "min_age_s", 1e12, "out of range: must be from 0 to 86400 (got 1000000000000.0)"),
    ("ark", "timeout_s", 1e300, "out of range: must be above 0, at most 3600 (got 1e+300)"),
    (
        "ark",
        "max_requests_per_second",
        1e-300,
        "out of range: must be from 0.01 to 100000 (got 1e-300)",
    ),
    ("daemon", "drain_timeout_s", 1e300, "out of range: must be from 0 to 3600 (got 1e+300)"),
    (
        "ark",
        "connect_timeout_s",
        float("inf"),
        "must be a finite number above 0, at most 3600 (got Infinity)",
    ),
    ("tos", "timeout_s", 1e300, "out of range: must be above 0, at most 3600 (got 1e+300)"),
    (
        "daemon",
        "poll_interval_s",
        float("nan"),
        "must be a finite number from 0.1 to 86400 (got NaN)",
    ),
    ("ledger", "path", "", "must not be empty: give a path, or leave the setting out"),
]


def _setting(section: str, key: str) -> str:
    return f'watch[0] (name "chat").{key}' if section == "watch" else f"{section}.{key}"


@pytest.mark.slow
def test_numbers_at_the_edges_stop_the_command_naming_the_setting(stage: Stage) -> None:
    """`run --once` and `run` (the daemon: the million days crashed its first prune, the
    1e300 s drain its SIGTERM) with each edge value exit 2 with exactly one line naming the
    file, the setting and its range; no ledger is made and Ark is not called."""
    stage.put("a.jsonl")
    runs: list[tuple[list[str], dict[str, str]]] = []
    expected: list[str] = []
    for section, key, value, words in EDGES:
        config = _config(stage, f"{section}-{key}", section, {key: value})
        for command in (["run", "--once"], ["run"]):
            runs.append(([*command, "-c", str(config)], {}))
            expected.append(f"dropzone run: {config}: {_setting(section, key)}: {words}\n")
    for done, line in zip(_run_all(stage, runs), expected, strict=True):
        assert_no_traceback(done)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", line), done.args
    assert not stage.ledger_path.exists()
    assert stage.create_calls() == {}


def test_an_empty_ledger_path_from_the_environment_is_refused(stage: Stage) -> None:
    """`DROPZONE_LEDGER__PATH=""` was taken as the config file's folder ("unable to open
    database file", "disk I/O error"); now the variable is named and the command stops."""
    [done] = _run_all(stage, [(["run", "--once"], {"DROPZONE_LEDGER__PATH": ""})])
    assert_no_traceback(done)
    assert done.returncode == 2
    assert done.stderr.endswith(
        ": ledger.path (from environment DROPZONE_LEDGER__PATH): must not be empty: give a "
        "path, or leave the setting out\n"
    )


HEADER = "must be printable ASCII without spaces (it is sent in an HTTP header)"
BAD_CREDENTIALS = [
    # os.environ holds a byte that is not UTF-8 as a lone surrogate; the child gets the byte.
    ("VOLCENGINE_SECRET_KEY", SECRET_KEY + "\udcff", "is not valid UTF-8 text"),
    ("VOLCENGINE_ACCESS_KEY", "AKLTdaemontesté", HEADER),
    ("VOLCENGINE_SESSION_TOKEN", TOKEN + "é", HEADER),
]


def test_credentials_the_signer_cannot_use_stop_the_command(stage: Stage) -> None:
    """A secret with a byte that is not UTF-8, an access key or a session token with a letter
    outside ASCII: each made every Create a UnicodeEncodeError traceback (`worker.failed`, for
    ever). Now `run --once` stops at once with exit 2 naming the variable, never its value."""
    stage.put("a.jsonl")
    runs = [(["run", "--once"], {name: value}) for name, value, _ in BAD_CREDENTIALS]
    for done, (name, value, words) in zip(_run_all(stage, runs), BAD_CREDENTIALS, strict=True):
        assert_no_traceback(done)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr == f"dropzone run: {name}: {words} (the value is not shown)\n"
        assert value.encode("utf-8", "surrogateescape").decode(errors="replace") not in (
            done.stderr
        )
    assert not stage.ledger_path.exists()
    assert stage.create_calls() == {}


@pytest.mark.parametrize("command", [("status",), ("run", "--once"), ("retry",)])
def test_a_ledger_path_naming_a_folder_is_refused(stage: Stage, command: tuple[str, ...]) -> None:
    """`status` said "disk I/O error" for a ledger path that is a folder; every command now
    says which setting and what to give instead."""
    done = stage.dropzone(*command, env={"DROPZONE_LEDGER__PATH": str(stage.tmp)})
    assert done.returncode == 2
    assert f"[ledger] path {stage.tmp} is a folder: name a file in it" in done.stderr
    assert "Traceback" not in done.stderr
