"""``dropzone check`` contacts what the daemon will use and names each thing that is wrong."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tomllib
from typing import TYPE_CHECKING

import pytest

from tests.harness import SECRET_KEY, free_port, load_scale, wait_for

if TYPE_CHECKING:
    from pathlib import Path

    from tests.harness import Stage

# /proc takes no new files, whoever asks: an unwritable folder even for root.
UNWRITABLE_LEDGER = "/proc/dropzone-check/ledger.sqlite3"


def _lines(stderr: str) -> dict[str, str]:
    """Finding lines by subject: ``subject: ok|FAILED: detail``."""
    found = {}
    for line in stderr.splitlines():
        for verdict in (": ok", ": FAILED"):
            subject, sep, rest = line.partition(verdict)
            if sep:
                found[subject] = verdict.strip(": ") + rest
                break
    return found


def test_a_sound_setup_is_ok_line_by_line(stage: Stage) -> None:
    """Credentials, Ark (one signed List), the ledger, the bucket: each ok, exit 0; no job."""
    stage.put("a.jsonl")
    done = stage.dropzone("check")
    assert done.returncode == 0, done.stderr
    lines = _lines(done.stderr)
    assert lines["credentials"].startswith("ok")
    ark = f"ark {stage.emulator.url} project 'default'"
    assert lines[ark].startswith("ok: signed List answered")
    assert lines[f"ledger {stage.ledger_path}"].startswith("ok")
    bucket = lines[f"watch chat: tos://{stage.bucket}/{stage.prefix}"]
    assert bucket == "ok: bucket found (region us-east-1), 1 objects under the prefix"
    assert stage.jobs() == []
    assert not stage.ledger_path.exists()
    assert SECRET_KEY not in done.stdout + done.stderr


def test_every_fault_is_named_and_exits_1(stage: Stage, tmp_path: Path) -> None:
    """Wrong secret, missing bucket, unwritable ledger folder, missing local folder: each its
    own line saying what to do, all in one run."""
    stage.watch_folder()
    missing_folder = tmp_path / "no-such-inbox"
    stage.watch["local_dir"] = str(missing_folder)
    stage.bucket = "no-such-bucket-for-check"
    config = stage.write_config()
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["ledger"]["path"] = UNWRITABLE_LEDGER
    done = _run_with(stage, data, env={"VOLCENGINE_SECRET_KEY": "wrong-secret"})
    assert done.returncode == 1
    lines = _lines(done.stderr)
    ark = lines[f"ark {stage.emulator.url} project 'default'"]
    assert ark.startswith("FAILED: the credentials were refused (SignatureDoesNotMatch")
    assert "check the access key and secret key" in ark
    bucket = lines["watch chat: tos://no-such-bucket-for-check/" + stage.prefix]
    assert bucket == (
        "FAILED: s3://no-such-bucket-for-check: no such bucket: "
        "check the bucket name and its access"
    )
    ledger = lines[f"ledger {UNWRITABLE_LEDGER}"]
    assert ledger.startswith("FAILED: cannot create files in /proc")
    folder = lines[f"watch chat: folder {missing_folder}"]
    assert folder == f"FAILED: {missing_folder} does not exist: create it or fix local_dir"
    assert "wrong-secret" not in done.stdout + done.stderr


@pytest.mark.slow
def test_an_unreachable_ark_is_named_and_offline_skips_it(stage: Stage) -> None:
    """A closed port: "cannot reach", exit 1; --offline checks only this machine, exit 0."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {"DROPZONE_ARK__ENDPOINT": closed, "DROPZONE_ARK__CONNECT_TIMEOUT_S": "2"}
    done = stage.dropzone("check", env=env)
    assert done.returncode == 1
    ark = _lines(done.stderr)[f"ark {closed} project 'default'"]
    assert ark.startswith(f"FAILED: cannot reach {closed}")
    assert "check [ark] endpoint" in ark
    offline = stage.dropzone("check", "--offline", env=env)
    assert offline.returncode == 0, offline.stderr
    assert not any(line.startswith("ark ") for line in offline.stderr.splitlines())
    assert _lines(offline.stderr)["credentials"].startswith("ok")


@pytest.mark.slow
def test_unusable_ca_certificates_are_named_as_such(stage: Stage, tmp_path: Path) -> None:
    """SSL_CERT_FILE naming a file that holds no certificates: the Ark line names the setting
    and the file, says nothing was sent and what to do; exit 1, no traceback."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    done = stage.dropzone("check", env={"SSL_CERT_FILE": str(bundle)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    ark = _lines(done.stderr)[f"ark {stage.emulator.url} project 'default'"]
    assert ark.startswith(
        f"FAILED: nothing was sent: the CA certificates could not be loaded "
        f"from SSL_CERT_FILE={bundle}: "
    )
    assert "point SSL_CERT_FILE at a PEM bundle" in ark


@pytest.mark.slow
def test_a_ledger_is_opened_for_writing_without_changing_it(stage: Stage) -> None:
    """An existing ledger: a write transaction begun and rolled back; the file is unchanged."""
    stage.put("a.jsonl")
    assert stage.dropzone("run", "--once").returncode == 0
    before = stage.ledger_path.read_bytes()
    done = stage.dropzone("check", "--offline")
    assert done.returncode == 0, done.stderr
    assert _lines(done.stderr)[f"ledger {stage.ledger_path}"] == "ok: opens for writing (1 entries)"
    assert stage.ledger_path.read_bytes() == before


@pytest.mark.slow
def test_the_config_reads_as_toml_on_a_terminal_and_json_otherwise(stage: Stage) -> None:
    """On a terminal the effective config is TOML that tomllib reads back; --json and pipes
    get JSON; unset settings show as comments, secrets never."""
    piped = stage.dropzone("check", "--offline")
    assert json.loads(piped.stdout)["watch"][0]["bucket"] == stage.bucket
    shown = _on_a_terminal(stage, "check", "--offline")
    parsed = tomllib.loads(shown)
    assert parsed["watch"][0]["bucket"] == stage.bucket
    assert parsed["ledger"]["path"] == str(stage.ledger_path)
    assert "# custom_model_id is unset" in shown
    forced = _on_a_terminal(stage, "check", "--offline", "--json")
    assert json.loads(forced)["daemon"]["concurrency"] == 4


def _run_with(
    stage: Stage, data: dict[str, object], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    import tomli_w  # noqa: PLC0415 - only this helper writes a changed config

    path = stage.tmp / "changed.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return stage.dropzone("check", "-c", str(path), env=env)


def _on_a_terminal(stage: Stage, *args: str) -> str:
    """The command's stdout when stdout is a pseudo-terminal (stderr kept apart)."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "dropzone", *args],
        env=stage.env(),
        stdout=follower,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is gone once the child has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    child.communicate(timeout=60 * load_scale())
    wait_for(lambda: child.returncode is not None, what="check to exit")
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
