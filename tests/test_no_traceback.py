"""No command answers with a traceback, and each answers in the user's words.

Every sub-command runs as a child process (``python -m dropzone``) with bad arguments, with bad
configs, with a stdout whose reader has gone, and against services on closed ports; each group
runs its children side by side, since a child costs most of a second to start. Beside "no
traceback", each message of issue 10 item 8 is checked word for word.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tomllib
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import tomli_w

from dropzone.ledger import SqliteLedger, State
from tests.harness import Stage, assert_no_traceback, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

SIGPIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for `... | head -1`
WATCH_TEXT = """
[[watch]]
name = "chat"
bucket = "b"
prefix = "in/"
model = { name = "m", version = "1" }
"""


def run_all(
    stage: Stage,
    invocations: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    stdout: int = subprocess.PIPE,
) -> list[subprocess.CompletedProcess[str]]:
    """Run the command lines side by side; each finished child, in the order given."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dropzone", *args],
            env={**stage.env(), **(env or {})},
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in invocations
    ]
    done = []
    for args, child in zip(invocations, children, strict=True):
        out, err = child.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(list(args), child.returncode, out or "", err))
    return done


def assert_refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, no traceback, and the expected words on stderr."""
    assert_no_traceback(done)
    assert done.returncode == 2, (done.args, done.stderr)
    for words in expected:
        assert words in done.stderr, (done.args, done.stderr)


def write_config(stage: Stage, change: Mapping[str, Any] | None = None) -> Path:
    """The stage's config with ``change`` laid over its first watch, as a file for ``-c``."""
    data = tomllib.loads(stage.config_text())
    data["watch"][0].update(change or {})
    path = stage.tmp / "edited.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def fill_ledger(stage: Stage, watch: str, count: int) -> None:
    now = datetime.now(UTC)
    with SqliteLedger.open(stage.ledger_path) as ledger:
        for i in range(count):
            key = f"{stage.prefix}{'long-name-' * 20}{i}.jsonl"
            ledger.add_object(watch, stage.bucket, key, f"etag{i}", 100, State.BASELINE, now)


# --- bad arguments -------------------------------------------------------------------------

BAD_ARGUMENTS: list[tuple[list[str], str]] = [
    ([], "the following arguments are required: COMMAND"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["--bogus"], "the following arguments are required: COMMAND"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["status", "--state", "nosuch"], "--state 'nosuch' is not a state"),
    (["submit", "not-a-url"], "'not-a-url' is not tos://BUCKET/KEY"),
    (["submit"], "the following arguments are required: tos://BUCKET/KEY"),
    (["backfill", "--watch", "nosuch"], "--watch 'nosuch': no such watch"),
    (["retry", "--state", "pending"], "argument --state: invalid choice: 'pending'"),
    (["forget"], "the following arguments are required: KEY"),
    (["validate"], "the following arguments are required: FILE"),
    (["check", "--bogus"], "unrecognized arguments: --bogus"),
    (["emulator", "--port", "99999"], "argument --port: a port is 0-65535 (0 picks a free one)"),
    (["emulator", "--port", "http"], "argument --port: a port is 0-65535"),
    (["emulator", "--latency-ms", "-5"], "argument --latency-ms: must be a whole number, 0 or"),
    (["emulator", "--queue-s", "nan"], "argument --queue-s: seconds are a number, 0 or more"),
    (["emulator", "--host", "nosuch.invalid", "--port", "0"], "cannot listen on nosuch.invalid"),
    (["demo", "--dir", "/proc/nope"], "--dir /proc/nope: cannot make the demo folder there"),
]


def test_bad_arguments_get_a_message_and_exit_2(stage: Stage) -> None:
    """Each command with arguments it cannot take exits 2 with a message saying which."""
    for done, (_, expected) in zip(
        run_all(stage, [args for args, _ in BAD_ARGUMENTS]), BAD_ARGUMENTS, strict=True
    ):
        assert_refused(done, expected)


def test_a_missing_demo_folder_is_named(stage: Stage) -> None:
    """`demo --dir` where no folder can be made says which and what to do, and exits 2."""
    [done] = run_all(stage, [["demo", "--dir", "/proc/nope"]])
    assert_refused(done)
    assert done.stderr == (
        "dropzone demo: --dir /proc/nope: cannot make the demo folder there (No such file or "
        "directory); give a folder you can write to, or leave out --dir for a temporary one\n"
    )


def test_validate_with_missing_files_and_folders(stage: Stage) -> None:
    """`validate` on a missing file and on a folder reports both as unreadable, exit 1."""
    [done] = run_all(stage, [["validate", "/nonexistent.jsonl", str(stage.tmp)]])
    assert_no_traceback(done)
    assert done.returncode == 1
    assert "/nonexistent.jsonl: invalid" in done.stdout
    assert f"{stage.tmp}: invalid" in done.stdout


# --- bad configs ---------------------------------------------------------------------------

CONFIG_COMMANDS = [
    ["run"],
    ["status"],
    ["submit", "tos://b/in/x.jsonl"],
    ["backfill"],
    ["retry"],
    ["forget", "in/x.jsonl"],
    ["check", "--list"],
    ["ledger", "migrate"],
    ["ledger", "copy", "--to", "postgresql://dropzone@127.0.0.1:9/dropzone"],
]

BAD_CONFIGS: list[tuple[str, str | bytes | None, list[str]]] = [
    ("missing", None, ["config file not found (give -c FILE or set DROPZONE_CONFIG)"]),
    ("directory", "", ["cannot read the config file: Is a directory"]),
    ("not TOML", "[watch\nname = 'x'", ["TOML syntax error"]),
    ("not UTF-8", b"name = '\xff'", ["not UTF-8 text"]),
    (
        "wrong types",
        '[daemon]\nconcurrency = "4"\n' + WATCH_TEXT + 'validate = "yes"\nmin_age_s = "5"\n',
        [
            (
                'daemon.concurrency: expected an integer (got "4"); in TOML, numbers and '
                "true/false are written without quotes"
            ),
            'watch[0] (name "chat").validate: expected true or false (got "yes")',
            'watch[0] (name "chat").min_age_s: expected a number (got "5")',
        ],
    ),
    (
        "Python types",
        '[ark]\naccess_key_file = 5\n[[watch]]\nname = "chat"\nbucket = "b"\nmodel = "m"\n',
        [
            "ark.access_key_file: expected a path (a string) (the value is not shown)",
            (
                'watch[0] (name "chat").model: expected a table { name = ..., version = ... } '
                '(got "m")'
            ),
        ],
    ),
    ("a [watch] table", '[watch]\nname = "chat"\n', ["watch: expected [[watch]] tables"]),
    (
        "unknown keys",
        "[daemon]\nconcurency = 4\n" + WATCH_TEXT + 'patern = "*.jsonl"\n',
        [
            "daemon.concurency: unknown setting (did you mean 'concurrency'?)",
            "patern: unknown setting (did you mean 'pattern'?)",
        ],
    ),
]


def bad_config(stage: Stage, name: str, content: str | bytes | None) -> Path:
    """A config file (or folder, or nothing) at a path of its own, from BAD_CONFIGS."""
    path = stage.tmp / f"{name.replace(' ', '-')}.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "":
        path.mkdir()
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def assert_config_refused(
    done: subprocess.CompletedProcess[str], path: Path, expected: list[str]
) -> None:
    # `dropzone ledger migrate` names its action too, as cli names it in its error lines.
    command = " ".join(done.args[:2]) if done.args[0] == "ledger" else done.args[0]
    assert_refused(done, f"dropzone {command}: {path}: ", *expected)
    assert "<class" not in done.stderr
    assert "instance of" not in done.stderr


def test_bad_configs_get_messages_in_toml_words(stage: Stage) -> None:
    """Each bad config is refused with exit 2, naming the file and each setting in TOML's words
    (no Python type names)."""
    paths = [bad_config(stage, name, content) for name, content, _ in BAD_CONFIGS]
    finished = run_all(stage, [["check", "-c", str(path)] for path in paths])
    for done, path, (_, _, expected) in zip(finished, paths, BAD_CONFIGS, strict=True):
        assert_config_refused(done, path, expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "content", "expected"), BAD_CONFIGS, ids=[name for name, _, _ in BAD_CONFIGS]
)
def test_bad_configs_are_refused_by_every_command(
    stage: Stage, name: str, content: str | bytes | None, expected: list[str]
) -> None:
    """Every command that reads the config refuses a bad one the same way, and does nothing."""
    path = bad_config(stage, name, content)
    for done in run_all(stage, [[*args, "-c", str(path)] for args in CONFIG_COMMANDS]):
        assert_config_refused(done, path, expected)
    assert not stage.ledger_path.exists()
    assert stage.create_calls() == {}


def test_environment_strings_are_still_parsed(stage: Stage) -> None:
    """What TOML must type, the environment gives as strings: "5" and "yes" are taken there."""
    env = {"DROPZONE_WATCH__CHAT__MIN_AGE_S": "5", "DROPZONE_WATCH__CHAT__VALIDATE": "yes"}
    [done] = run_all(stage, [["check"]], env=env)
    assert done.returncode == 0, done.stderr
    [watch] = json.loads(done.stdout)["watch"]
    assert (watch["min_age_s"], watch["validate"]) == (5, True)


def test_a_bad_environment_string_names_the_variable(stage: Stage) -> None:
    """An environment string its setting cannot read is an error naming the variable, with no
    advice about TOML quotes."""
    [done] = run_all(stage, [["check"]], env={"DROPZONE_DAEMON__CONCURRENCY": "many"})
    assert_refused(
        done,
        "daemon.concurrency (from environment DROPZONE_DAEMON__CONCURRENCY): "
        'expected an integer (got "many")\n',
    )
    assert "quotes" not in done.stderr


# --- a closed stdout -----------------------------------------------------------------------


@contextmanager
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe whose reader is gone: the first write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        yield write_end
    finally:
        os.close(write_end)


def test_every_command_stops_quietly_on_a_closed_stdout(stage: Stage) -> None:
    """With nobody reading stdout, each command stops at its first line as SIGPIPE would stop
    it: exit 141 and not a word on stderr."""
    stage.put("a.jsonl")
    key = stage.put("b.jsonl")
    fill_ledger(stage, "chat", 3)
    data = stage.tmp / "ok.jsonl"
    data.write_bytes(b'{"custom_id": "a", "body": {}}\n')
    invocations = [
        ["--help"],
        ["--version"],
        ["status"],
        ["status", "--json"],
        ["check"],
        ["run", "--dry-run"],
        ["run", "--once"],
        ["validate", str(data)],
        ["emulator", "--port", "0"],
        ["demo", "--quick", "--dir", str(stage.tmp / "demo")],
    ]
    with closed_pipe() as stdout:
        finished = run_all(stage, invocations, stdout=stdout)
        # Not beside `run --once`, which holds the ledger while it runs.
        finished += run_all(stage, [["submit", f"tos://{stage.bucket}/{key}"]], stdout=stdout)
    for done in finished:
        # argparse's --help and --version pass over a failed write and exit 0: quiet as well.
        quiet_exit = 0 if done.args[0].startswith("--") else SIGPIPE_EXIT
        assert (done.returncode, done.stderr) == (quiet_exit, ""), done.args


def test_status_piped_into_head_stops_quietly(stage: Stage) -> None:
    """`dropzone status --json | head -1`: the reader takes one line and goes; status stops
    with exit 141 and an empty stderr (its output is far more than a pipe holds)."""
    fill_ledger(stage, "chat", 400)
    python = shlex.quote(sys.executable)
    command = f"{python} -m dropzone status --json | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(
        ["bash", "-c", command],
        env=stage.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (SIGPIPE_EXIT, "")
    assert json.loads(done.stdout)["watch"] == "chat"


# --- services on closed ports --------------------------------------------------------------


def test_unreachable_services_get_messages_not_tracebacks(stage: Stage) -> None:
    """TOS or Ark on a closed loopback port: each command says what failed, no traceback."""
    key = stage.put("a.jsonl")
    closed = f"http://127.0.0.1:{free_port()}"
    no_tos = {"DROPZONE_TOS__ENDPOINT": closed, "AWS_MAX_ATTEMPTS": "1"}
    no_ark = {"DROPZONE_ARK__ENDPOINT": closed, "DROPZONE_DAEMON__ONCE_MAX_WAIT_S": "0.5"}
    url = f"tos://{stage.bucket}/{key}"
    without_tos = run_all(
        stage,
        [["run", "--once"], ["run", "--dry-run"], ["submit", url], ["check", "--list"]],
        env=no_tos,
    )
    # One after the other: side by side, the two raced for the entry's claim, and which of
    # them said what depended on which started faster.
    without_ark = [
        *run_all(stage, [["run", "--once"]], env=no_ark),
        *run_all(stage, [["submit", url]], env=no_ark),
    ]
    for done in [*without_tos, *without_ark]:
        assert_no_traceback(done)
        assert done.returncode in {1, 2}, (done.args, done.returncode, done.stderr)
    once, dry_run, submit, listing = without_tos
    assert "Could not connect to the endpoint URL" in once.stdout
    assert "Could not connect to the endpoint URL" in dry_run.stderr
    assert "dropzone submit: " in submit.stderr
    assert "Could not connect to the endpoint URL" in listing.stderr
    held = without_ark[1]
    assert "not submitted yet (ConnectError" in held.stderr
    assert "the entry is pending" in held.stderr


# --- the emulator's port -------------------------------------------------------------------


def test_emulator_on_a_taken_port_says_so(stage: Stage) -> None:
    """A port another program listens on: exit 2, naming the port and what to do."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [done] = run_all(stage, [["emulator", "--port", str(port)]])
    assert_refused(done)
    assert done.stderr == (
        f"dropzone emulator: cannot listen on 127.0.0.1:{port}: port {port} is already in use "
        "(another emulator?); stop what uses it or give another --port (--port 0 picks a free "
        "one)\n"
    )


# --- status --watch ------------------------------------------------------------------------


def test_status_of_an_unknown_watch_lists_the_watches(stage: Stage) -> None:
    """`status --watch nosuch` exits 2 naming the configured watches, with or without a ledger."""
    before = run_all(stage, [["status", "--watch", "nosuch"]])
    fill_ledger(stage, "chat", 1)
    after = run_all(stage, [["status", "--watch", "nosuch"]])
    for done in [*before, *after]:
        assert_refused(
            done,
            "dropzone status: --watch 'nosuch': no such watch, and none of its entries in the "
            "ledger; the configured watches: chat\n",
        )


def test_status_of_a_removed_watch_shows_its_entries(stage: Stage) -> None:
    """A watch gone from the config whose entries stay in the ledger: status shows them."""
    fill_ledger(stage, "old", 2)
    fill_ledger(stage, "chat", 1)
    [done] = run_all(stage, [["status", "--json", "--watch", "old"]])
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["watch"] for line in done.stdout.splitlines()] == ["old", "old"]
    assert "watch 'old' is not in the configuration; its entries:" in done.stderr


# --- submit of an object no watch covers -----------------------------------------------------


def test_submit_outside_every_watch_says_what_they_cover(stage: Stage) -> None:
    """An object outside every watch: the message lists what the watches cover, not --watch."""
    [done] = run_all(stage, [["submit", "tos://other/x.jsonl"]])
    assert_refused(
        done,
        "dropzone submit: tos://other/x.jsonl: no watch covers it; the watches cover "
        f"tos://{stage.bucket}/{stage.prefix} (chat)\n",
    )
    assert "--watch" not in done.stderr


def test_submit_covered_by_two_watches_asks_for_watch(stage: Stage) -> None:
    """An object two watches cover: then, and only then, --watch is the way out."""
    data = tomllib.loads(stage.config_text())
    data["watch"].append({**data["watch"][0], "name": "other", "pattern": "*"})
    path = stage.tmp / "two.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    url = f"tos://{stage.bucket}/{stage.prefix}x.jsonl"
    [done] = run_all(stage, [["submit", "-c", str(path), url]])
    assert_refused(done, f"{url}: 2 watches match (chat, other); choose one with --watch\n")


# --- check --list and the baseline -----------------------------------------------------------


def test_check_list_says_what_becomes_baseline(stage: Stage) -> None:
    """With on_start = "skip-existing" and no baseline yet, the new objects are said to become
    baseline; with "submit-existing" they are plainly new."""
    stage.put("a.jsonl")
    skipping = write_config(stage, {"on_start": "skip-existing"})
    skip, submit = run_all(stage, [["check", "--list", "-c", str(skipping)], ["check", "--list"]])
    assert skip.returncode == 0, skip.stderr
    assert "1 objects, 1 match, 1 new (would be recorded as baseline on first start)\n" in (
        skip.stderr
    )
    assert submit.returncode == 0, submit.stderr
    assert "1 objects, 1 match, 1 new\n" in submit.stderr
