"""The emulator over HTTP on loopback: the stdlib server, and ``Emulator``, which owns it."""

from __future__ import annotations

import json
import math
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

from dropzone.emulator.auth import MAX_SKEW_S, Received
from dropzone.emulator.engine import Engine, Hooks
from dropzone.emulator.faults import Faults, UnknownPhase
from dropzone.emulator.jobs import Guard, JobBook, Timing
from dropzone.emulator.wire import (
    CREATE,
    DEFAULT_REGION,
    GET,
    GUARD_CODE,
    GUARD_MESSAGE,
    LIST,
    STATE_PATH,
    STOP,
    ApiError,
    Reply,
    utc_now,
)

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Collection, Iterable

    from dropzone.emulator.inputs import (
        InputReader,
    )
    from dropzone.emulator.results import OutputWriter


class _Server(ThreadingHTTPServer):
    # Handler threads must not keep a stopping process alive on an idle keep-alive connection.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        super().__init__(address, _Handler)
        self.engine = engine

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        # A client that goes away mid-answer (killed on purpose, or tired of waiting for a slow
        # Create) is ordinary here; the stdlib would print a traceback for it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as clients with a pool expect.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each answer would wait for
    # the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server_version = "dropzone-ark-emulator"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        if urlsplit(self.path).path == STATE_PATH:
            self._write(Reply(200, self.server.engine.state()))
        else:
            self._write(self.server.engine.api(self._received(b"")))

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "0")
        body = self.rfile.read(int(length)) if length.isdigit() else b""
        self._write(self.server.engine.api(self._received(body)))

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The client measures clock skew from Date: it must come from the emulator's clock.
        del timestamp
        return format_datetime(self.server.engine.now(), usegmt=True)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Requests are not logged: the inspection endpoint shows what happened."""

    def _received(self, body: bytes) -> Received:
        parts = urlsplit(self.path)
        return Received(
            method=self.command,
            path=parts.path or "/",
            query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )

    def _write(self, reply: Reply) -> None:
        if reply.document is None:
            # The lost answer: no status line at all, the connection just ends.
            self.close_connection = True
            return
        data = json.dumps(reply.document, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Emulator:
    """The emulator in-process: ``with Emulator("AK", "SK") as ark: ... ark.url ...``."""

    def __init__(  # noqa: PLR0913 - one keyword per independent knob of the stand-in
        self,
        access_key: str,
        secret_key: str,
        *,
        queue_s: float = 2.0,
        run_s: float = 10.0,
        fail_rate: float = 0.0,
        throttle_rate: float = 0.0,
        lose_answer_rate: float = 0.0,
        latency_ms: int = 0,
        slow_create_rate: float = 0.0,
        slow_create_s: float = 0.0,
        seed: int | None = None,
        clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        guard_status: int = 400,
        guard_code: str = GUARD_CODE,
        guard_message: str = GUARD_MESSAGE,
        stop_s: float = 1.0,
        region: str = DEFAULT_REGION,
        known_models: Collection[str] | None = None,
        on_create_received: Callable[[], None] | None = None,
        read_input: InputReader | None = None,
        write_output: OutputWriter | None = None,
        max_tag_values: int | None = None,
        signature_validity_s: float = MAX_SKEW_S,
    ) -> None:
        """``on_create_received`` is called on the server's thread as each Create request
        arrives, before its latency, slow-Create hold and signature check: a moment to act at
        while the request is under way (the torture kills a client then).

        ``read_input`` reads a Create's input file (``dropzone.emulator.inputs``): jobs then
        count its request lines in ``RequestCounts`` and fail when it is missing. Without it
        job objects have no ``RequestCounts``. ``write_output`` (with ``read_input``) puts
        each completed job's ``<OutputDir><job id>/output/results.jsonl``, one answer per
        request line, before the first answer that shows it Completed.

        ``max_tag_values``: refuse a List whose TagFilters name more values (400
        ``InvalidParameter.TagFilters.Values``), as a platform with such a limit would.

        ``signature_validity_s``: how long a signed request is accepted (Ark's: 900 s); the
        replica torture shortens it, so that a stalled node's request expires within a run."""
        timing = Timing(queue_s, run_s, stop_s)
        guard = Guard(guard_status, guard_code, guard_message)
        self._engine = Engine(
            {access_key: secret_key},
            lambda suffix: JobBook(
                timing,
                guard,
                suffix,
                None if known_models is None else frozenset(known_models),
                max_tag_values,
            ),
            Faults(
                fail_rate,
                throttle_rate,
                lose_answer_rate,
                latency_ms,
                slow_create_rate,
                slow_create_s,
            ),
            seed,
            clock or utc_now,
            region,
            Hooks(on_create_received, read_input, write_output),
            signature_validity_s=signature_validity_s,
        )
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"Emulator({where})"

    def start(self) -> Self:
        """Bind (port 0 picks a free port) and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        self._server = _Server(self._address, self._engine)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # A short poll keeps stop() quick; an idle emulator wakes 50 times a second.
            kwargs={"poll_interval": 0.02},
            name="ark-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def state(self) -> dict[str, Any]:
        """What ``GET /_emulator/state`` answers: all jobs (``jobs``), Create calls per input
        (``create_calls``), and what the faults did: Create answers lost on purpose
        (``lost_answers``), Creates slowed (``slowed_creates``) and those of them not yet carried
        out (``slowed_creates_under_way``)."""
        return self._engine.state()

    def set_faults(
        self,
        *,
        fail_rate: float | None = None,
        throttle_rate: float | None = None,
        lose_answer_rate: float | None = None,
        latency_ms: int | None = None,
        slow_create_rate: float | None = None,
        slow_create_s: float | None = None,
        both_model_fields: bool | None = None,
    ) -> Faults:
        """Change faults while running; None leaves a setting as it is. A Create already held
        keeps its hold."""

        def change(current: Faults) -> Faults:
            return Faults(
                current.fail_rate if fail_rate is None else fail_rate,
                current.throttle_rate if throttle_rate is None else throttle_rate,
                current.lose_answer_rate if lose_answer_rate is None else lose_answer_rate,
                current.latency_ms if latency_ms is None else latency_ms,
                current.slow_create_rate if slow_create_rate is None else slow_create_rate,
                current.slow_create_s if slow_create_s is None else slow_create_s,
                current.both_model_fields if both_model_fields is None else both_model_fields,
                current.unknown_phase,
            )

        return self._engine.update_faults(change)

    def refuse(
        self,
        code: str,
        *,
        status: int,
        message: str = "",
        actions: Iterable[str] = (CREATE,),
    ) -> None:
        """Answer every signed call of ``actions`` with this error, as the platform answers an
        account it refuses (``OperationDenied.ServiceNotOpen``, 403, say), until
        :meth:`stop_refusing`."""
        text = message or f"The request was refused: {code}."
        self._engine.refuse(actions, ApiError(status, code, text))

    def stop_refusing(self, actions: Iterable[str] = (CREATE, GET, LIST, STOP)) -> None:
        self._engine.refuse(actions, None)

    def report_unknown_phase(
        self, phase: str = "Pausing", *, seconds: float, job_id: str | None = None
    ) -> Faults:
        """Show ``job_id`` (every job when None) in ``phase``, a name the API version does not
        document, for ``seconds`` from now by the emulator's clock; replaces an earlier one."""
        if not 0.0 <= seconds < math.inf:
            raise ValueError(f"seconds must be 0 or more, got {seconds}")
        hidden = UnknownPhase(phase, self._engine.now() + timedelta(seconds=seconds), job_id)
        return self._engine.update_faults(lambda current: replace(current, unknown_phase=hidden))

    def add_account(self, access_key: str, secret_key: str) -> None:
        """Accept another key pair: a second account, which sees only its own jobs."""
        self._engine.add_key(access_key, secret_key)
