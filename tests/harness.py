"""Real local stand-ins for daemon tests: a moto S3 server, the Ark emulator, config files.

Nothing here patches dropzone's own network calls: the daemon talks S3 to moto and the Ark
API to the emulator over loopback, exactly as it would talk to TOS and Ark.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import tomli_w

from dropzone.ledger import SqliteLedger, State

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

    from dropzone.emulator import Emulator

ACCESS_KEY = "AKLTdaemontest"
SECRET_KEY = "daemon-test-secret-0123456789"
_bucket_numbers = itertools.count()


def load_scale() -> float:
    """How many times slower than when quiet this machine runs now (1 at most one runnable
    process per core): deadlines stretch by it, so a busy machine is not a failed test."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return max(1.0, load / (os.cpu_count() or 1))


def required_program(name: str, debian_package: str, needed_for: str) -> str:
    """The path of a program a test runs; skipped where it is missing, saying how to get it,
    except in CI (``CI`` set), which installs it (.ci/run): there the test fails."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install {debian_package})"
        if os.environ.get("CI"):
            pytest.fail(f"CI must {needed_for}: {message}")
        pytest.skip(message)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds, those
    of a quiet machine (stretched by :func:`load_scale`)."""
    timeout *= load_scale()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def assert_no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    """Neither output of a finished command holds a Python traceback."""
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text[-3000:]


def s3_client(endpoint: str) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def free_port() -> int:
    """A loopback port nobody listens on now (bound, then released): for a server to take, or
    for a client to find closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_bucket(s3: S3Client, stem: str = "dz") -> str:
    name = f"{stem}-{os.getpid()}-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


def jsonl(n: int = 2, tag: str = "x") -> bytes:
    lines = [
        json.dumps(
            {"custom_id": f"{tag}-{i}", "body": {"messages": [{"role": "user", "content": "hi"}]}}
        )
        for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Stage:
    """A test's world: a bucket on moto, an emulator, a ledger path, and a config writer."""

    tmp: Path
    s3_endpoint: str
    emulator: Emulator
    s3: S3Client
    bucket: str
    prefix: str = "batch-inference-job/dataset/"
    watch: dict[str, Any] = field(default_factory=dict)
    daemon: dict[str, Any] = field(default_factory=dict)
    # The [ledger] section; empty: the SQLite file at ledger_path.
    ledger: dict[str, Any] = field(default_factory=dict)
    # The [events] section, when not empty.
    events: dict[str, Any] = field(default_factory=dict)

    @property
    def ledger_path(self) -> Path:
        return self.tmp / "state" / "ledger.sqlite3"

    def put(self, relpath: str, body: bytes | None = None) -> str:
        key = self.prefix + relpath
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body if body is not None else jsonl())
        return key

    def watch_folder(self, mode: str = "upload", *, settle_s: float = 0.2, **extra: Any) -> Path:
        """Make the watch a local-folder watch (``local_mode = mode``); returns the new folder."""
        folder = self.tmp / "inbox"
        folder.mkdir(exist_ok=True)
        self.watch.update(local_dir=str(folder), local_mode=mode, settle_s=settle_s, **extra)
        return folder

    def config_text(self) -> str:
        watch = {
            "name": "chat",
            "bucket": self.bucket,
            "prefix": self.prefix,
            "model": {"name": "doubao-pro-32k", "version": "240615"},
            "on_start": "submit-existing",
            "min_age_s": 0,
            **self.watch,
        }
        daemon = {
            "poll_interval_s": 0.3,
            "track_interval_s": 0,
            "concurrency": 4,
            "listen": "",
            "once_max_wait_s": 60,
            **self.daemon,
        }
        sections: dict[str, dict[str, Any]] = {
            "ark": {"endpoint": self.emulator.url, "max_requests_per_second": 500, "timeout_s": 5},
            "tos": {
                "endpoint": self.s3_endpoint,
                "region": "us-east-1",
                "addressing_style": "path",
            },
            "ledger": self.ledger or {"path": str(self.ledger_path)},
            "daemon": daemon,
        }
        if self.events:
            sections["events"] = self.events
        return tomli_w.dumps({**sections, "watch": [watch]})

    def write_config(self) -> Path:
        path = self.tmp / "dropzone.toml"
        path.write_text(self.config_text(), encoding="utf-8")
        return path

    def env(self) -> dict[str, str]:
        return {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("VOLC", "AWS_", "DROPZONE_"))
            },
            "VOLCENGINE_ACCESS_KEY": ACCESS_KEY,
            "VOLCENGINE_SECRET_KEY": SECRET_KEY,
            "DROPZONE_CONFIG": str(self.write_config()),
        }

    def dropzone(
        self,
        *args: str,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real command line in a child process (``env``: variables to add)."""
        return subprocess.run(
            [sys.executable, "-m", "dropzone", *args],
            cwd=cwd,
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout * load_scale(),
            check=False,
        )

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "dropzone", *args],
            env={**self.env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def status(self) -> list[dict[str, Any]]:
        done = self.dropzone("status", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.emulator.state()["jobs"])

    def create_calls(self) -> Mapping[str, int]:
        calls: Mapping[str, int] = self.emulator.state()["create_calls"]
        return calls

    def jobs_by_input(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for job in self.jobs():
            location = job["InputFileTosLocation"]
            found.setdefault(location["ObjectKey"], []).append(job["Id"])
        return found


@contextmanager
def answering(
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json; charset=utf-8",
    extra_headers: Mapping[str, str] | None = None,
    with_length: bool = True,
) -> Iterator[str]:
    """A loopback HTTP server answering every POST with ``status`` and ``body``, for answers
    the emulator never gives (``with_length=False``: framed by closing the connection, as
    HTTP/1.0 allows); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            if with_length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's
            """Quiet: the test checks what the client made of the answer."""

    with serving(Handler) as url:
        yield url


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server for ``handler`` on a free loopback port; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def seed_entry(stage: Stage, key: str, state: State) -> str:
    """A ledger as a daemon would have left it: the watch started, ``key`` in ``state``;
    returns the version's ETag."""
    head = stage.s3.head_object(Bucket=stage.bucket, Key=key)
    now = datetime.now(UTC)
    with SqliteLedger.open(stage.ledger_path, lock=False) as ledger:
        ledger.begin_watch("chat", stage.bucket, stage.prefix, now)
        ledger.mark_baseline_done("chat")
        etag = head["ETag"].strip('"')
        initial = State.BASELINE if state is State.BASELINE else State.PENDING
        entry, _ = ledger.add_object(
            "chat", stage.bucket, key, etag, head["ContentLength"], initial, now
        )
        if state in {State.SUBMITTING, State.REJECTED}:
            claimed = ledger.claim_one(entry.id, now)
            assert claimed is not None
        if state is State.REJECTED:
            ledger.record_rejected(entry.id, "InvalidParameter: seeded by the test", now)
    return etag


def log_events(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            yield json.loads(line)
