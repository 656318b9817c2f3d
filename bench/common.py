"""What the benchmarks share: local servers, configs, figures and verdicts.

Nothing here changes how dropzone works: the benchmarks drive the product's own classes (or
its command line in a child process) against real loopback servers, the way the tests do.

- :class:`MotoS3`: moto's S3 server on 127.0.0.1 (port 0), filled fast through moto's
  in-process backend (the objects are real moto objects, listed over HTTP like any other);
- :class:`SyntheticListing`: a minimal S3 endpoint (ListObjectsV2 and HEAD only) whose
  objects are computed, not stored, for listings far larger than moto can hold or list;
- :func:`start_emulator`: the Ark emulator in this process or in a child process;
- :func:`write_config`: a dropzone TOML config; :func:`watch_rule`: a validated WatchRule.
"""

from __future__ import annotations

import atexit
import compileall
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TextIO
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.session
import httpx
import tomli_w
from botocore.parsers import ResponseParserFactory

from dropzone import log
from dropzone.ark.signer import Credentials
from dropzone.config import WatchRule
from dropzone.emulator import Emulator
from dropzone.sources.tos import make_s3_client

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "AKLTbenchmark"
SECRET_KEY = "benchmark-secret-0123456789"  # a fixed key for loopback servers only
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
PREFIX = "batch-inference-job/dataset/"
MODEL = {"name": "doubao-pro-32k", "version": "240615"}
BODY = b'{"custom_id": "r-1", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n'
REPO = Path(__file__).resolve().parent.parent
# moto's default account: its backend holds the objects its server lists.
MOTO_ACCOUNT = "123456789012"
_DEVNULL: list[TextIO] = []


# --- figures ------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows of cells as aligned text; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> str:
    cpus = os.cpu_count() or 0
    return (
        f"{platform.machine()}, {cpus} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def load() -> str:
    """The load averages: other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def header(title: str, arguments: Mapping[str, object]) -> None:
    """The run's title, machine, sizes and load; the load again when the script ends (its
    figures hold for the load between the two)."""
    print(f"== {title}")
    print(f"machine: {machine()}")
    print(f"load:    {load()}")
    print("sizes:   " + ", ".join(f"{name}={value}" for name, value in arguments.items()))
    sys.stdout.flush()
    atexit.register(_load_after)


def _load_after() -> None:
    print(f"load after: {load()}", flush=True)


@contextlib.contextmanager
def cpu_burners(count: int) -> Iterator[None]:
    """``count`` processes spinning a Python loop while the block runs: a busy machine, made
    by the benchmark itself so that the load is known."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def add_installed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--installed",
        metavar="VENV",
        help="run the children in VENV, where dropzone is installed from this checkout as a "
        "user installs it (pip install ., no dev extras; made or refreshed now)",
    )


def product_python(venv: str | None, source: Path = REPO) -> Path:
    """The Python whose ``dropzone`` (and bare loop) the children run, as installed.

    Without ``venv``: this interpreter, once dropzone's modules are compiled to bytecode, as
    an installed package's are (pip compiles them at install). Under PYTHONDONTWRITEBYTECODE a
    checkout installed for development compiles every module of its own again at every start,
    0.08-0.09 s of CPU here that no installed dropzone pays. With ``venv``: that virtual
    environment, made with dropzone installed from this checkout (its dependencies only, not
    the dev extras: rich, a dev dependency, makes importing structlog 0.035 s dearer, and
    click and rich make importing httpx dearer), dropzone reinstalled when it exists.
    ``source``: the tree installed there (another revision's, for ``ab.py``).
    """
    if venv is None:
        compileall.compile_dir(REPO / "dropzone", quiet=1)
        return Path(sys.executable)
    where = Path(venv)
    python = where / "bin" / "python"
    if python.exists():
        refresh = ["--no-deps", "--force-reinstall"]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
        refresh = []
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *refresh, str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if installed.returncode != 0:
        raise SystemExit(f"cannot install dropzone into {where}:\n{installed.stderr[-2000:]}")
    return python


def quiet_logs() -> None:
    """dropzone's production logging (JSON lines), written to /dev/null: the rendering cost
    stays in the measurement, the lines stay out of the report. Third-party loggers too."""
    if not _DEVNULL:
        _DEVNULL.append(Path(os.devnull).open("w", encoding="utf-8"))  # noqa: SIM115
    log.configure("json", stream=_DEVNULL[0])
    for name in ("werkzeug", "moto"):
        logging.getLogger(name).setLevel(logging.ERROR)


def tmp_root() -> str | None:
    """Where temporary ledgers and folders go: $DROPZONE_BENCH_TMP, else the system's."""
    return os.environ.get("DROPZONE_BENCH_TMP")


def peak_rss_mib_of(rusage_maxrss_kib: int) -> float:
    return rusage_maxrss_kib / 1024


# --- S3 -----------------------------------------------------------------------------------


def s3_client(endpoint: str) -> S3Client:
    """dropzone's own S3 client (as the daemon builds it), path-style for a local server."""
    return make_s3_client(
        endpoint=endpoint,
        region="us-east-1",
        addressing_style="path",
        credentials=CREDENTIALS,
    )


def bare_s3_client(
    endpoint: str, timestamp_parser: Callable[[str], dt.datetime] | None = None
) -> S3Client:
    """A plain boto3 client with its defaults: the baseline a hand-written lister would use;
    with ``timestamp_parser``, that one change (the like-for-like baseline)."""
    core = botocore.session.get_session()
    if timestamp_parser is not None:
        parsers = ResponseParserFactory()
        parsers.set_parser_defaults(timestamp_parser=timestamp_parser)
        core.register_component("response_parser_factory", parsers)
    client: S3Client = boto3.session.Session(botocore_session=core).client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    return client


class MotoS3:
    """moto's S3 server (``ThreadedMotoServer`` on 127.0.0.1, port 0) in a child process,
    with buckets made and filled before it answers: ``with MotoS3({"b": 20000}) as s3``.

    A child process of its own, like a remote store: moto neither shares this process's GIL
    with the code being measured nor adds its objects (hundreds of thousands) to this
    process's garbage collections. The objects are stored straight into moto's in-process
    backend (about 50 times faster than one PUT each) and listed over HTTP like any others.
    """

    def __init__(
        self, buckets: Mapping[str, int], prefixed: Mapping[str, int] | None = None
    ) -> None:
        """``buckets``: name -> objects under :data:`PREFIX`; ``prefixed``: prefix -> objects
        under that prefix, put into each of the buckets besides."""
        self._buckets = dict(buckets)
        self._prefixed = dict(prefixed or {})
        self._child: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def __enter__(self) -> Self:
        spec = json.dumps(
            [
                [name, prefix, count]
                for name, objects in self._buckets.items()
                for prefix, count in {PREFIX: objects, **self._prefixed}.items()
            ]
        )
        child = subprocess.Popen(
            [sys.executable, __file__, "moto", spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        self._child = child
        line = child.stdout.readline().strip()
        if not line.startswith("http://"):
            self.__exit__()
            raise RuntimeError(f"moto did not start: {line!r}")
        self.endpoint = line
        return self

    def __exit__(self, *_: object) -> None:
        child, self._child = self._child, None
        if child is not None:
            assert child.stdin is not None
            child.stdin.close()  # the child's signal to stop
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _serve_moto(spec: str) -> None:
    """The child of :class:`MotoS3`: serve until standard input closes."""
    from moto.s3.models import s3_backends  # noqa: PLC0415 - a test-only dependency
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = s3_client(endpoint)
    backend = s3_backends[MOTO_ACCOUNT]["aws"]
    made: set[str] = set()
    for name, prefix, count in json.loads(spec):
        if name not in made:
            client.create_bucket(Bucket=name)
            made.add(name)
        for key in object_keys(count, prefix):
            backend.put_object(name, key, BODY)
    print(endpoint, flush=True)
    sys.stdin.read()
    server.stop()


def object_keys(count: int, prefix: str = PREFIX) -> list[str]:
    """``count`` keys in listing order: ``<prefix>0000000.jsonl``, ..."""
    return [f"{prefix}{number:07d}.jsonl" for number in range(count)]


def synthetic_etag(number: int) -> str:
    return hashlib.md5(str(number).encode(), usedforsecurity=False).hexdigest()


_LIST_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>{count}</KeyCount>"
    "<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>{token}"
)
_LIST_ITEM = (
    "<Contents><Key>{key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
    '<ETag>"{etag}"</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>'
)


@dataclass
class SyntheticListing:
    """An S3 endpoint over computed objects ``<prefix>NNNNNNN.jsonl`` (ETag: MD5 of N).

    It answers path-style ListObjectsV2 (continuation token = next index) and HEAD; it checks
    no signature. It exists for listings of a million objects, which moto can neither hold in
    reasonable memory nor list in reasonable time (it sorts the whole bucket for every page).
    """

    bucket: str
    count: int
    prefix: str = PREFIX
    _server: ThreadingHTTPServer | None = field(default=None, init=False)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        listing = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Quiet."""

            def do_GET(self) -> None:
                self._answer(listing.list_page(self.path))

            def do_HEAD(self) -> None:
                number = listing.number_of(urlsplit(self.path).path)
                if number is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", f'"{synthetic_etag(number)}"')
                self.send_header("Content-Length", str(len(BODY)))
                self.send_header("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
                self.end_headers()

            def _answer(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def date_time_string(self, timestamp: float | None = None) -> str:
                del timestamp
                return format_datetime(dt.datetime.now(dt.UTC), usegmt=True)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def number_of(self, path: str) -> int | None:
        key = path.removeprefix(f"/{self.bucket}/")
        stem = key.removeprefix(self.prefix).removesuffix(".jsonl")
        if not stem.isdigit() or not 0 <= int(stem) < self.count:
            return None
        return int(stem)

    def list_page(self, path: str) -> bytes:
        query = parse_qs(urlsplit(path).query)
        max_keys = int(query.get("max-keys", ["1000"])[0])
        start = int(query.get("continuation-token", ["0"])[0])
        end = min(self.count, start + max_keys)
        truncated = end < self.count
        token = f"<NextContinuationToken>{end}</NextContinuationToken>" if truncated else ""
        parts = [
            _LIST_HEAD.format(
                bucket=self.bucket,
                prefix=self.prefix,
                count=end - start,
                max_keys=max_keys,
                truncated="true" if truncated else "false",
                token=token,
            )
        ]
        parts.extend(
            _LIST_ITEM.format(
                key=f"{self.prefix}{number:07d}.jsonl",
                etag=synthetic_etag(number),
                size=len(BODY),
            )
            for number in range(start, end)
        )
        parts.append("</ListBucketResult>")
        return "".join(parts).encode()


# --- the Ark emulator ---------------------------------------------------------------------


@dataclass
class RunningEmulator:
    url: str
    state: Callable[[], dict[str, Any]]
    stop: Callable[[], None]


@contextlib.contextmanager
def start_emulator(*, latency_ms: int, in_process: bool) -> Iterator[RunningEmulator]:
    """The emulator, in this process (shares its GIL) or in a child process (a core of its
    own, like a remote service); jobs stay Queued for an hour so the guard never fires."""
    if in_process:
        with Emulator(
            ACCESS_KEY, SECRET_KEY, latency_ms=latency_ms, queue_s=3600, run_s=3600
        ) as emulator:
            yield RunningEmulator(emulator.url, emulator.state, emulator.stop)
        return
    command = [
        sys.executable,
        "-m",
        "dropzone.emulator",
        "--port",
        "0",
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
        "--latency-ms",
        str(latency_ms),
        "--queue-s",
        "3600",
        "--run-s",
        "3600",
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        banner = child.stdout.readline()
        url = banner.rsplit(" ", 1)[-1].strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the emulator did not start: {banner!r}")
        http = httpx.Client(timeout=60)

        def state() -> dict[str, Any]:
            document: dict[str, Any] = http.get(f"{url}/_emulator/state").json()
            return document

        try:
            yield RunningEmulator(url, state, child.terminate)
        finally:
            http.close()
    finally:
        child.terminate()
        child.wait(10)


# --- configuration ------------------------------------------------------------------------


def watch_rule(name: str = "chat", bucket: str = "bench-bucket", **extra: object) -> WatchRule:
    data: dict[str, object] = {
        "name": name,
        "bucket": bucket,
        "prefix": PREFIX,
        "model": MODEL,
        "min_age_s": 0,
        **extra,
    }
    return WatchRule.model_validate(data)


def write_config(
    path: Path,
    *,
    ark: Mapping[str, object],
    tos_endpoint: str,
    ledger: Path,
    daemon: Mapping[str, object],
    watch: Mapping[str, object],
) -> Path:
    sections: dict[str, Mapping[str, object]] = {
        "ark": ark,
        "tos": {"endpoint": tos_endpoint, "region": "us-east-1", "addressing_style": "path"},
        "ledger": {"path": str(ledger)},
        "daemon": daemon,
    }
    path.write_text(tomli_w.dumps({**sections, "watch": [dict(watch)]}), encoding="utf-8")
    return path


def child_env(config: Path) -> dict[str, str]:
    """The environment of a dropzone child process: this one's, minus anything that could
    change its configuration or credentials, plus the benchmark's."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VOLC", "AWS_", "DROPZONE_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    return {
        **kept,
        "VOLCENGINE_ACCESS_KEY": ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": SECRET_KEY,
        "DROPZONE_CONFIG": str(config),
    }


def spawn_daemon(config: Path) -> subprocess.Popen[str]:
    """``dropzone run`` as a child process, its JSON log (stdout and stderr) on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "dropzone", "run", "--log-format", "json"],
        env=child_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["moto"]:
        _serve_moto(sys.argv[2])
