"""Hostile inputs, end to end: each gets the exact, helpful error, and nothing is lost.

The real command line runs against moto (S3) and the Ark emulator on loopback, as in
``test_daemon.py``; the validator's messages are unit-tested in ``test_validate.py`` and config
messages in ``test_config.py``: here each hostile input is followed through the whole path
(what the daemon logs, what the ledger says, what the API saw, what a fix brings).

Tests marked ``xfail(raises=KnownBug, strict=True)`` reproduce a reported defect: they assert
the contract, and may fail with :class:`KnownBug` only (any other failure, such as a file lost
after the fault, is a real one). Once the fix lands they pass, strict xfail turns that into a
failure, and the marker goes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from dropzone.commands.output import entry_record
from dropzone.emulator import Emulator
from dropzone.ledger import SqliteLedger
from tests.harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Stage,
    assert_no_traceback,
    free_port,
    jsonl,
    log_events,
    new_bucket,
    s3_client,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from pathlib import Path

OK_A = b'{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}'
OK_B = b'{"custom_id": "b", "body": {}}'
BOM = b"\xef\xbb\xbf"
WRONG_SECRET = "wrong-secret-do-not-print-4242"
# The console's Name rule as dropzone reads it (see dropzone/plan.py): ASCII letters and digits,
# the common CJK ideographs, '-' and '_'; 1 to 200 characters, no dash at either end.
NAME_RULE = re.compile(r"[A-Za-z0-9_\u4e00-\u9fa5](?:[A-Za-z0-9_\u4e00-\u9fa5-]{0,198}[^-])?")


class KnownBug(AssertionError):
    """A reported defect: the contract this test asserts does not hold yet."""


def known_bug(holds: bool, what: str) -> None:
    if not holds:
        raise KnownBug(what)


def cli(
    stage: Stage,
    *args: str,
    env: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """The real command line, with the stage's environment changed by ``env`` and ``drop``."""
    environment = {**stage.env(), **(env or {})}
    for name in drop:
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "dropzone", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def events(done: subprocess.CompletedProcess[str], name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(done.stdout) if e["event"] == name]


def ledger(stage: Stage) -> list[dict[str, Any]]:
    """What `dropzone status --json` prints, read in-process (a child process costs a second)."""
    with SqliteLedger.open(stage.ledger_path, readonly=True) as opened:
        return [entry_record(entry) for entry in opened.entries()]


def one_job_each(stage: Stage, keys: Iterable[str]) -> None:
    """Every key was sent to Create exactly once and has exactly one job; nothing else was."""
    wanted = list(keys)
    assert dict(stage.create_calls()) == {f"{stage.bucket}/{key}": 1 for key in wanted}
    assert {k: len(v) for k, v in stage.jobs_by_input().items()} == dict.fromkeys(wanted, 1)


# --- malformed JSONL ---------------------------------------------------------------------------

DEFECTS = {
    "bad-json.jsonl": (
        OK_A + b"\n" + OK_B + b'\n{"custom_id": "c" "body": {}}\n',
        "line 3: not valid JSON: Expecting ',' delimiter at column 19",
    ),
    "no-id.jsonl": (OK_A + b'\n{"body": {}}\n', "line 2: custom_id is missing"),
    "latin-1.jsonl": (
        OK_A + b'\n{"custom_id": "caf\xe9", "body": {}}\n',
        (
            "line 2: not valid UTF-8 at byte offset 18 of the line, offset 96 of the file "
            "(e9: invalid continuation byte)"
        ),
    ),
    "bom.jsonl": (
        BOM + OK_A + b"\n" + OK_B + b"\n",
        "line 1: the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM",
    ),
    "empty.jsonl": (b"", "file is empty"),
}


@pytest.mark.slow
def test_malformed_files_end_invalid_and_their_fixes_are_submitted(stage: Stage) -> None:
    """With validate = true on a bucket watch, each malformed file (bad JSON, a missing
    custom_id, Latin-1 bytes, a BOM, no bytes at all) ends `invalid` with the line-numbered
    reason and costs no Create call, while a CRLF file is accepted. A corrected re-upload (a
    new ETag) of each is then submitted once: nothing is lost."""
    stage.watch["validate"] = True
    bad = {stage.put(name, data): reason for name, (data, reason) in DEFECTS.items()}
    crlf = stage.put("crlf.jsonl", OK_A + b"\r\n" + OK_B + b"\r\n")
    first = stage.dropzone("run", "--once")
    assert first.returncode == 1, first.stderr
    assert_no_traceback(first)
    one_job_each(stage, [crlf])
    rows = {r["key"]: r for r in ledger(stage)}
    assert {k: (rows[k]["state"], rows[k]["error"]) for k in bad} == {
        key: ("invalid", f"invalid: 1 problem, first: {reason}") for key, reason in bad.items()
    }
    logged = {e["key"]: e for e in events(first, "object.invalid")}
    assert {k: (e["problems"], e["level"]) for k, e in logged.items()} == {
        key: ([reason], "warning") for key, reason in bad.items()
    }

    old_etags = {key: rows[key]["etag"] for key in bad}
    for name in DEFECTS:
        stage.put(name, jsonl(2, tag=name))
    second = stage.dropzone("run", "--once")
    assert second.returncode == 0, second.stderr + second.stdout[-2000:]
    one_job_each(stage, [crlf, *bad])
    fixed = {r["key"]: r for r in ledger(stage) if r["state"] == "submitted"}
    assert set(fixed) == {crlf, *bad}
    assert all(fixed[key]["etag"] != old_etags[key] for key in bad)


@pytest.mark.slow
def test_validate_command_exit_codes(tmp_path: Path) -> None:
    """`dropzone validate` exits 0 for well-formed files (CRLF, mixed line endings) and 1,
    with the exact line-numbered reasons per file, when any file is malformed."""
    files = {
        "crlf.jsonl": OK_A + b"\r\n" + OK_B + b"\r\n",
        "mixed.jsonl": OK_A + b"\r\n" + OK_B + b"\n",
        "duplicate.jsonl": OK_A + b"\n" + OK_B + b"\n" + OK_A + b"\n",
        "blank-line.jsonl": OK_A + b"\n\n" + OK_B + b"\n",
        **{name: data for name, (data, _) in DEFECTS.items()},
    }
    paths = {name: tmp_path / name for name in files}
    for name, data in files.items():
        paths[name].write_bytes(data)

    def validate(*names: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dropzone", "validate", *(str(paths[n]) for n in names)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    good = validate("crlf.jsonl", "mixed.jsonl")
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.splitlines() == [
        f"{paths['crlf.jsonl']}: valid (2 lines)",
        f"{paths['mixed.jsonl']}: valid (2 lines)",
    ]
    bad_names = ["duplicate.jsonl", "blank-line.jsonl", *DEFECTS]
    bad = validate(*bad_names)
    assert (bad.returncode, bad.stderr) == (1, "")
    expected = [
        f"{paths['duplicate.jsonl']}: invalid",
        '  line 3: custom_id "a" already used on line 1',
        f"{paths['blank-line.jsonl']}: invalid",
        "  line 2: empty line",
    ]
    for name, (_, reason) in DEFECTS.items():
        expected += [f"{paths[name]}: invalid", f"  {reason}"]
    assert bad.stdout.splitlines() == expected


@pytest.mark.slow
def test_a_100_mb_line_is_reported_and_the_next_lines_still_checked(tmp_path: Path) -> None:
    """A 100 MB line (written to disk piece by piece, never held in memory) is reported by
    `dropzone validate` as too long, with exit 1, and the line after it is still checked."""
    path = tmp_path / "huge-line.jsonl"
    piece = b"x" * 1024**2
    with path.open("wb") as out:
        out.write(OK_A + b"\n" + b'{"custom_id": "big", "body": {"content": "')
        for _ in range(100):
            out.write(piece)
        out.write(b'"}}\n{"custom_id": "after"}\n' + OK_B + b"\n")
    assert path.stat().st_size > 100 * 1024**2
    done = subprocess.run(
        [sys.executable, "-m", "dropzone", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout.splitlines() == [
        f"{path}: invalid",
        "  line 2: longer than 64 MiB, the limit for one line; not checked",
        "  line 3: body is missing",
    ]


# --- odd keys ----------------------------------------------------------------------------------

PREFIX = "batch-inference-job/dataset/"
_LONG_DIR = "long/"
_LONG_FILL = "\u6570" * ((1024 - len(PREFIX) - len(_LONG_DIR) - len(".jsonl")) // 3)
LONG_RELPATH = (
    _LONG_DIR + _LONG_FILL + "a" * ((1024 - len(PREFIX) - len(_LONG_DIR) - len(".jsonl")) % 3)
) + ".jsonl"
# relative path -> the job Name dropzone must give it (None: checked separately)
ODD_KEYS: dict[str, str | None] = {
    "  spaced  out .jsonl": "spaced-out",
    "percent%20and%2Fslash.jsonl": "percent-20and-2Fslash",
    "a+b c+d.jsonl": "a-b-c-d",
    "q?h#a&e=;.jsonl": "q-h-a-e",
    "tab\there.jsonl": "tab-here",
    "back\\slash.jsonl": "back-slash",
    "~tilde'quote\"dq.jsonl": "tilde-quote-dq",
    "\u00fcmlaut-\u03a9mega.jsonl": "mlaut-mega",
    "\uff46\uff55\uff4c\uff4c\uff11.jsonl": "full1",  # full-width letters and digit, NFKC'd
    # Nothing usable: the fallback, with a hash of the key that keeps such names apart.
    "!!!.jsonl": "dropzone-job-" + hashlib.sha256(f"{PREFIX}!!!.jsonl".encode()).hexdigest()[:8],
    LONG_RELPATH: None,
}


@pytest.mark.slow
def test_odd_keys_are_submitted_once_with_their_exact_location(stage: Stage) -> None:
    """Keys with spaces, tabs, %, +, ?, #, quotes, backslashes, non-ASCII letters and a key of
    exactly 1024 bytes are each submitted once, with InputFileTosLocation naming the key byte
    for byte and a Name within the console's rule; a second run submits nothing again."""
    keys = {stage.put(relpath): name for relpath, name in ODD_KEYS.items()}
    long_key = PREFIX + LONG_RELPATH
    assert len(long_key.encode()) == 1024
    first = stage.dropzone("run", "--once")
    assert first.returncode == 0, first.stderr + first.stdout[-2000:]
    one_job_each(stage, keys)
    names = {}
    for job in stage.jobs():
        location = job["InputFileTosLocation"]
        assert location == {"BucketName": stage.bucket, "ObjectKey": location["ObjectKey"]}
        names[location["ObjectKey"]] = job["Name"]
        assert NAME_RULE.fullmatch(job["Name"]), job["Name"]
    assert {key: names[key] for key, name in keys.items() if name is not None} == {
        key: name for key, name in keys.items() if name is not None
    }
    long_name = names[long_key]
    assert len(long_name) == 200
    [long_job] = [j for j in stage.jobs() if j["InputFileTosLocation"]["ObjectKey"] == long_key]
    # Cut, so that {OutputDir}{job ID}/output/results.jsonl fits in TOS's 1,024 bytes.
    assert len(long_job["OutputDirTosLocation"]["ObjectKey"].encode()) <= 896
    assert long_name.endswith("-" + hashlib.sha256(long_key.encode()).hexdigest()[:8])
    assert {r["state"] for r in ledger(stage)} == {"submitted"}
    again = stage.dropzone("run", "--once")
    assert again.returncode == 0, again.stderr
    assert events(again, "object.detected") == []
    one_job_each(stage, keys)


# --- configuration -----------------------------------------------------------------------------

CONFIG_ERRORS = {
    "unknown key": (
        {"watch": {"patern": "*.jsonl"}},
        {},
        "watch[0] (name \"chat\").patern: unknown setting (did you mean 'pattern'?)",
    ),
    "unknown daemon key": (
        {"daemon": {"poll_intervl_s": 3}},
        {},
        "daemon.poll_intervl_s: unknown setting (did you mean 'poll_interval_s'?)",
    ),
    "wrong type": (
        {"watch": {"min_age_s": "soon"}},
        {},
        ('watch[0] (name "chat").min_age_s: expected a number (got "soon")'),
    ),
    "wrong type from the environment": (
        {},
        {"DROPZONE_DAEMON__CONCURRENCY": "lots"},
        (
            "daemon.concurrency (from environment DROPZONE_DAEMON__CONCURRENCY): expected an "
            'integer (got "lots")'
        ),
    ),
    "output inside its own watch": (
        {"watch": {"output_prefix": PREFIX + "results/"}},
        {},
        (
            'watch[0] (name "chat"): output_template/output_prefix put results under the watched '
            f"prefix {PREFIX!r} where the pattern '*.jsonl' matches them (input "
            f"'{PREFIX}x.jsonl' -> result "
            f"'{PREFIX}results/x/bi-20240918194641-r2nwq/output/results.jsonl'): the watch would "
            "submit its own results; set output_prefix outside the prefix or narrow the pattern"
        ),
    ),
}


@pytest.mark.parametrize(
    ("changes", "env", "message"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys()
)
@pytest.mark.slow
def test_config_errors_exit_2_naming_the_file_and_the_setting(
    stage: Stage, changes: dict[str, dict[str, Any]], env: dict[str, str], message: str
) -> None:
    """An unknown key, a wrong type (in the file or the environment) and an output folder
    inside the watch's own prefix each stop `run` with exit 2 and exactly one line naming the
    file and the setting; no ledger is created and no call is made."""
    stage.watch.update(changes.get("watch", {}))
    stage.daemon.update(changes.get("daemon", {}))
    done = cli(stage, "run", "--once", env=env)
    config = stage.tmp / "dropzone.toml"
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"dropzone run: {config}: {message}\n"
    assert not stage.ledger_path.exists()
    assert stage.create_calls() == {}


def test_a_feeding_watch_is_reported_with_the_other_problems(stage: Stage) -> None:
    """Config errors are "reported all at once": a misspelt key in a watch must not hide that
    the same watch's output folder lies inside its own prefix."""
    stage.watch.update({"patern": "*.jsonl", "output_prefix": PREFIX + "results/"})
    done = stage.dropzone("run", "--once")
    assert done.returncode == 2
    assert "patern: unknown setting" in done.stderr
    assert "would submit its own results" in done.stderr


# --- credentials and clocks --------------------------------------------------------------------


def test_missing_credentials_exit_2_saying_where_they_are_looked_for(stage: Stage) -> None:
    """Without credentials `run` stops at once with exit 2, listing every place credentials
    are read from; no ledger is created and no call is made."""
    stage.put("a.jsonl")
    done = cli(stage, "run", "--once", drop=["VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY"])
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "dropzone run: no Volcengine credentials found: set VOLCENGINE_ACCESS_KEY and "
        "VOLCENGINE_SECRET_KEY (or VOLC_ACCESSKEY / VOLC_SECRETKEY), or [ark] access_key_file "
        "/ secret_key_file, or put files access_key and secret_key in $CREDENTIALS_DIRECTORY "
        "(systemd LoadCredential=) or in /run/secrets (container secrets)\n"
    )
    assert not stage.ledger_path.exists()
    assert stage.create_calls() == {}


@pytest.mark.slow
def test_a_wrong_secret_holds_entries_pending_and_is_never_printed(stage: Stage) -> None:
    """A wrong secret key: the daemon logs `ark.auth_failed` once, with the API's code at error
    level and what to do; the entry stays `pending` (not rejected) with that reason; neither the
    wrong nor the right secret appears in any output or in the ledger; and once the secret is
    right the entry is submitted once."""
    code = "SignatureDoesNotMatch"
    stage.daemon["once_max_wait_s"] = 1
    key = stage.put("a.jsonl")
    done = cli(stage, "run", "--once", env={"VOLCENGINE_SECRET_KEY": WRONG_SECRET})
    assert done.returncode == 1
    assert_no_traceback(done)
    # One line for the account, however many files and retries it holds.
    [failure] = events(done, "ark.auth_failed")
    assert (failure["code"], failure["level"]) == (code, "error")
    assert failure["hint"] == "check the secret key"
    status = stage.dropzone("status", "--json")
    [row] = [json.loads(line) for line in status.stdout.splitlines()]
    assert (row["key"], row["state"], row["job_id"]) == (key, "pending", None)
    assert row["error"].startswith(f"{code} HTTP 401: ")
    assert stage.jobs() == []
    for output in (done.stdout, done.stderr, status.stdout, status.stderr):
        assert WRONG_SECRET not in output
        assert SECRET_KEY not in output
    for path in stage.ledger_path.parent.iterdir():
        assert WRONG_SECRET.encode() not in path.read_bytes()
    stage.daemon["once_max_wait_s"] = 60  # long enough for the entry's backoff to expire
    fixed = stage.dropzone("run", "--once")
    assert fixed.returncode == 0, fixed.stderr + fixed.stdout[-2000:]
    one_job_each(stage, [key])


@pytest.mark.slow
def test_auth_failures_and_connection_errors_hold_the_entry(stage: Stage) -> None:
    """Wrong credentials, then no Ark at all: the entry stays pending through both (no input
    is to blame, and no outage rejects a file), and is submitted once Ark answers."""
    stage.daemon.update(once_max_wait_s=0.5)
    key = stage.put("a.jsonl")
    held = cli(stage, "run", "--once", env={"VOLCENGINE_SECRET_KEY": WRONG_SECRET})
    assert events(held, "ark.auth_failed")
    [row] = ledger(stage)
    assert (row["state"], row["transient_failures"]) == ("pending", 0)
    due = row["next_attempt_at"]
    wait_for(lambda: datetime.now(UTC) > due, timeout=10, what="the entry's retry to fall due")
    unreachable = f"http://127.0.0.1:{free_port()}"
    failed = cli(stage, "run", "--once", env={"DROPZONE_ARK__ENDPOINT": unreachable})
    retries = events(failed, "job.retry")
    assert len(retries) <= 1
    assert all(e["reason"].startswith("ConnectError") for e in retries)
    [row] = ledger(stage)
    assert row["state"] == "pending", f"after a connection error: {row}"
    assert row["transient_failures"] == len(retries)
    stage.daemon["once_max_wait_s"] = 60  # long enough for the entry's backoff to expire
    fixed = stage.dropzone("run", "--once")
    assert fixed.returncode == 0, fixed.stderr + fixed.stdout[-2000:]
    one_job_each(stage, [key])


@pytest.mark.slow
def test_unusable_ca_certificates_hold_the_entry_and_say_which_file(stage: Stage) -> None:
    """SSL_CERT_FILE naming no file: one line says which setting and what to do, no traceback,
    the entry stays pending uncounted (no claim left behind), and the next run submits it."""
    stage.daemon.update(once_max_wait_s=0.5)
    key = stage.put("a.jsonl")
    missing = str(stage.tmp / "no-such-ca.pem")
    held = cli(stage, "run", "--once", env={"SSL_CERT_FILE": missing})
    assert "Traceback" not in held.stderr + held.stdout
    [told] = events(held, "ark.tls_unusable")
    assert f"SSL_CERT_FILE={missing}" in told["message"]
    assert "SSL_CERT_FILE" in told["hint"]
    assert not events(held, "worker.failed")
    [row] = ledger(stage)
    assert (row["state"], row["transient_failures"]) == ("pending", 0)
    assert stage.create_calls() == {}
    due = row["next_attempt_at"]
    wait_for(lambda: datetime.now(UTC) > due, timeout=10, what="the entry's retry to fall due")
    stage.daemon["once_max_wait_s"] = 60
    fixed = stage.dropzone("run", "--once")
    assert fixed.returncode == 0, fixed.stderr + fixed.stdout[-2000:]
    one_job_each(stage, [key])


@pytest.mark.slow
def test_clock_skew_is_logged_with_the_measured_skew(tmp_path: Path, moto_endpoint: str) -> None:
    """An Ark whose clock is 20 minutes ahead refuses the signature: `ark.auth_failed` with
    code InvalidTimestamp and clock_skew_s about 1200; the entry stays `pending`, and is
    submitted once the clocks agree again."""
    offset = [timedelta(minutes=20)]
    s3 = s3_client(moto_endpoint)
    with Emulator(ACCESS_KEY, SECRET_KEY, clock=lambda: datetime.now(UTC) + offset[0]) as ark:
        stage = Stage(tmp_path, moto_endpoint, ark, s3, new_bucket(s3))
        stage.daemon["once_max_wait_s"] = 1
        key = stage.put("a.jsonl")
        done = stage.dropzone("run", "--once")
        assert done.returncode == 1
        assert_no_traceback(done)
        failures = events(done, "ark.auth_failed")
        assert failures
        assert {(e["code"], e["level"]) for e in failures} == {("InvalidTimestamp", "error")}
        assert all(abs(e["clock_skew_s"] - 1200) < 5 for e in failures), failures
        [row] = ledger(stage)
        assert (row["state"], row["job_id"]) == ("pending", None)
        assert row["error"].startswith("InvalidTimestamp HTTP 400: The request time ")
        offset[0] = timedelta(0)
        stage.daemon["once_max_wait_s"] = 60  # long enough for the entry's backoff to expire
        fixed = stage.dropzone("run", "--once")
        assert fixed.returncode == 0, fixed.stderr + fixed.stdout[-2000:]
        one_job_each(stage, [key])


# --- a full disk -------------------------------------------------------------------------------


@contextmanager
def tiny_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root); skips the test when it cannot."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command here to make a tiny filesystem")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s filesystem with one file; returns that file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free == 0
    return filler


def full_disk_failure(done: subprocess.CompletedProcess[str], ledger: Path) -> str | None:
    """What is wrong with a run on a full disk, by the contract; None when all is right."""
    text = done.stdout + done.stderr
    problems = [
        f"exit code {done.returncode}" if done.returncode not in {1, 2} else "",
        "a traceback" if "Traceback" in text else "",
        "no mention of the ledger path" if str(ledger) not in text else "",
        "no mention of the full disk"
        if not re.search(r"no space left|disk is full", text, re.IGNORECASE)
        else "",
    ]
    found = [p for p in problems if p]
    return f"{'; '.join(found)}:\n{text[-3000:]}" if found else None


@pytest.mark.slow
def test_a_full_disk_at_first_start_is_one_clear_line(stage: Stage) -> None:
    """On a full filesystem the first `run --once` stops with exit 2 and one line naming the
    ledger's lock file and ENOSPC, without a call; once space is freed, the next run gives
    each file exactly one job."""
    with tiny_filesystem(stage.ledger_path.parent, "8m") as state:
        keys = [stage.put(f"f{i}.jsonl") for i in range(3)]
        filler = fill(state)
        done = stage.dropzone("run", "--once")
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == (
            f"dropzone run: cannot write the pid into {stage.ledger_path}.lock: "
            "[Errno 28] No space left on device\n"
        )
        assert stage.create_calls() == {}
        filler.unlink()
        again = stage.dropzone("run", "--once")
        assert again.returncode == 0, again.stderr + again.stdout[-2000:]
        one_job_each(stage, keys)


@pytest.mark.slow
def test_a_full_disk_under_an_existing_ledger_says_so(stage: Stage) -> None:
    """A ledger that exists, on a filesystem that has filled up since: `run --once` must fail
    with exit 1 or 2, naming the ledger and the full disk, without a traceback; once space is
    freed, every file gets exactly one job."""
    with tiny_filesystem(stage.ledger_path.parent, "8m") as state:
        first = stage.put("first.jsonl")
        assert stage.dropzone("run", "--once").returncode == 0
        later = [stage.put(f"later-{i}.jsonl") for i in range(3)]
        filler = fill(state)
        done = stage.dropzone("run", "--once")
        filler.unlink()
        again = stage.dropzone("run", "--once")
        assert again.returncode == 0, again.stderr + again.stdout[-2000:]
        one_job_each(stage, [first, *later])
        failure = full_disk_failure(done, stage.ledger_path)
        known_bug(failure is None, f"run --once on a full disk: {failure}")


@pytest.mark.slow
def test_a_disk_that_fills_while_the_ledger_is_open_is_one_clear_line(stage: Stage) -> None:
    """The disk fills while the ledger's write-ahead log is in use (a reader holds a snapshot,
    as `dropzone status` may): recording the new objects fails, and `run --once` must say so
    with exit 1 or 2 naming the ledger, without a traceback; once space is freed, every file
    gets exactly one job."""
    with tiny_filesystem(stage.ledger_path.parent, "8m") as state:
        first = stage.put("first.jsonl")
        assert stage.dropzone("run", "--once").returncode == 0
        reader = sqlite3.connect(stage.ledger_path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM entries").fetchone()
            later = [stage.put(f"later-{i:02d}.jsonl") for i in range(20)]
            filler = fill(state)
            done = stage.dropzone("run", "--once")
        finally:
            reader.close()
        filler.unlink()
        again = stage.dropzone("run", "--once")
        assert again.returncode == 0, again.stderr + again.stdout[-2000:]
        one_job_each(stage, [first, *later])
        failure = full_disk_failure(done, stage.ledger_path)
        known_bug(failure is None, f"run --once when the disk fills: {failure}")


def test_a_filesystem_too_small_for_the_ledger_says_it_is_full(stage: Stage) -> None:
    """A 64 KiB filesystem cannot hold a ledger (the WAL index alone takes 32 KiB): `run
    --once` must say the disk is full, naming the ledger, not report a secondary error."""
    with tiny_filesystem(stage.ledger_path.parent, "64k"):
        stage.put("a.jsonl")
        done = stage.dropzone("run", "--once")
        assert done.returncode == 2
        assert stage.create_calls() == {}
        failure = full_disk_failure(done, stage.ledger_path)
        known_bug(failure is None, f"run --once on a 64 KiB filesystem: {failure}")


# --- unreachable services ----------------------------------------------------------------------


@pytest.mark.slow
def test_an_unreachable_ark_keeps_entries_pending(stage: Stage) -> None:
    """Ark on a closed port: `run --once` retries within once_max_wait_s, logs `job.retry` with
    the connection error, exits 1 and leaves the entry `pending` (not rejected); when Ark is
    back, the entry is submitted once."""
    stage.daemon["once_max_wait_s"] = 1.5
    key = stage.put("a.jsonl")
    endpoint = f"http://127.0.0.1:{free_port()}"
    done = cli(stage, "run", "--once", env={"DROPZONE_ARK__ENDPOINT": endpoint})
    assert done.returncode == 1
    assert_no_traceback(done)
    retries = events(done, "job.retry")
    assert retries
    assert all(e["key"] == key and "Connection refused" in e["reason"] for e in retries)
    assert retries[0]["reason"].startswith("ConnectError")
    assert [e["entries"] for e in events(done, "run.unfinished")] == [1]
    [row] = ledger(stage)
    assert (row["state"], row["job_id"]) == ("pending", None)
    assert "Connection refused" in row["error"]
    assert stage.create_calls() == {}
    stage.daemon["once_max_wait_s"] = 60  # long enough for the entry's backoff to expire
    back = stage.dropzone("run", "--once")
    assert back.returncode == 0, back.stderr + back.stdout[-2000:]
    one_job_each(stage, [key])


@pytest.mark.slow
def test_an_unreachable_tos_fails_the_poll_naming_the_bucket(stage: Stage) -> None:
    """TOS on a closed port: `run --once` exits 1 after one `poll.failed` line naming the
    bucket and prefix and the connection error; nothing is recorded, nothing is called."""
    stage.s3_endpoint = f"http://127.0.0.1:{free_port()}"
    done = stage.dropzone("run", "--once")
    assert done.returncode == 1
    assert_no_traceback(done)
    [failed] = events(done, "poll.failed")
    assert failed["watch"] == "chat"
    assert failed["error"].startswith(
        f"listing s3://{stage.bucket}/{PREFIX}: EndpointConnectionError: "
        f'Could not connect to the endpoint URL: "{stage.s3_endpoint}/{stage.bucket}?'
    )
    assert [e["event"] for e in log_events(done.stdout)] == [
        "daemon.started",
        "poll.failed",
        "daemon.stopping",
    ]
    assert ledger(stage) == []
    assert stage.create_calls() == {}


def test_a_missing_bucket_fails_the_poll_with_the_s3_code(stage: Stage) -> None:
    """A bucket that does not exist: `run --once` exits 1 after one `poll.failed` line at
    error level naming the bucket, the prefix and the S3 code NoSuchBucket."""
    stage.bucket = f"no-such-bucket-{os.getpid()}"
    done = stage.dropzone("run", "--once")
    assert done.returncode == 1
    assert_no_traceback(done)
    [failed] = events(done, "poll.failed")
    assert (failed["watch"], failed["level"]) == ("chat", "error")
    assert failed["error"] == (
        f"listing s3://{stage.bucket}/{PREFIX}: NoSuchBucket: The specified bucket does not exist"
    )
    assert ledger(stage) == []
    assert stage.create_calls() == {}
