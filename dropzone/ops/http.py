"""The ops endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on ``daemon.listen``, stdlib HTTP,
and the POST routes the daemon is given (``/events/tos``: an event feed).

It runs on daemon threads, so a stuck scrape can never hold the process up at exit.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from dropzone.errors import ConfigurationError
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from dropzone.ops.metrics import Metrics

    HealthCheck = Callable[[], tuple[bool, Mapping[str, object]]]
    # A POST route: the body and the request's headers -> (status, JSON body).
    PostRoute = Callable[[bytes, Mapping[str, str]], tuple[HTTPStatus, Mapping[str, object]]]

_JSON = "application/json"
_STOP_JOIN_S = 5.0
# Scrapers keep connections alive; one that vanished must not hold a thread for ever.
_IDLE_CONNECTION_S = 60.0
# A notification message holds a few events; anything far larger is not one.
MAX_POST_BYTES = 1 << 20


class ListenError(ConfigurationError):
    """The ops endpoint cannot listen on the configured address (``daemon.listen``)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        probes: tuple[HealthCheck, HealthCheck],
        posts: Mapping[str, PostRoute],
    ) -> None:
        # An IPv6 host ("::1", from "[::1]:9464") needs an IPv6 socket; the class default is IPv4.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.metrics = metrics
        self.health, self.ready = probes
        self.posts = posts
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # socketserver prints a plain-text traceback to stderr; the log is JSON. A client gone
        # before its answer (a probe that timed out, a scraper restarted) is no fault of ours.
        del request
        failure = sys.exc_info()[1]
        client = f"{client_address[0]}:{client_address[1]}"
        if isinstance(failure, (ConnectionError, TimeoutError)):
            get_logger().debug("ops.client_gone", client=client, error=type(failure).__name__)
            return
        get_logger().exception("ops.request_failed", client=client)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_CONNECTION_S

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, self.server.metrics.render())
        elif path in {"/healthz", "/readyz"}:
            ok, body = self._probe(self.server.health if path == "/healthz" else self.server.ready)
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, _JSON, json.dumps(body).encode("utf-8"))
        else:
            self._send(HTTPStatus.NOT_FOUND, _JSON, b'{"error": "not found"}')

    def do_POST(self) -> None:
        route = self.server.posts.get(urlsplit(self.path).path)
        length = self.headers.get("Content-Length")
        if route is None or length is None or not (length.isascii() and length.isdigit()):
            self.close_connection = True  # the body, if any, is left unread
            if route is None:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            else:
                self._send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
        elif int(length) > MAX_POST_BYTES:
            self.close_connection = True  # the body is left unread
            self._send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"at most {MAX_POST_BYTES} bytes"}
            )
        else:
            body = self.rfile.read(int(length))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                status, answer = route(body, headers)
            except Exception as exc:  # noqa: BLE001 - an answer, not a dropped connection
                get_logger().exception("ops.post_failed", path=self.path)
                status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(exc).__name__}
            self._send_json(status, answer)

    def _send_json(self, status: HTTPStatus, body: Mapping[str, object]) -> None:
        self._send(status, _JSON, json.dumps(body).encode("utf-8"))

    def _probe(self, probe: HealthCheck) -> tuple[bool, Mapping[str, object]]:
        try:
            return probe()
        except Exception as exc:  # noqa: BLE001 - a failing probe means unhealthy, not a dropped connection
            get_logger().exception("ops.health_failed")
            return False, {"ok": False, "error": f"health check failed: {type(exc).__name__}"}

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        # The stdlib writes every request to stderr; scrapes every few seconds are noise.
        get_logger().debug("ops.request", client=self.address_string(), line=fmt % args)


def _always_ready() -> tuple[bool, Mapping[str, object]]:
    return True, {"ready": True}


class OpsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz``, and the POST routes it is given;
    anything else is 404.

    ``health`` and ``ready`` return ``(ok, body)``: 200 with the JSON body when ok, 503
    otherwise. ``/healthz`` says whether the daemon makes progress (restart it if not);
    ``/readyz`` whether it can do its work now (its ledger answers): a readiness probe, which
    takes a replica out of service without restarting it. Port 0 binds a free port;
    :attr:`port` tells which once started.
    """

    def __init__(
        self,
        listen: tuple[str, int],
        metrics: Metrics,
        health: HealthCheck,
        ready: HealthCheck = _always_ready,
        posts: Mapping[str, PostRoute] | None = None,
    ) -> None:
        """``posts``: path -> route, for the POSTs the daemon takes (event feeds)."""
        self._listen = listen
        self._metrics = metrics
        self._health = health
        self._ready = ready
        self._posts = dict(posts or {})
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; raises :class:`ListenError` naming the address when it cannot."""
        if self._server is not None:
            return
        host, port = self._listen
        try:
            probes = (self._health, self._ready)
            server = _Server(self._listen, self._metrics, probes, self._posts)
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port} (daemon.listen): {exc}") from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="ops-http", daemon=True
        )
        self._thread.start()
        get_logger().info("ops.listening", host=host, port=self.port)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(_STOP_JOIN_S)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the ops server is not started")
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
