"""A webhook receiver on loopback for the notification tests: it keeps every request it got
and answers with the statuses it is told to (then 204), as a real receiver that is down for
a while would."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from standardwebhooks import Webhook

from tests.harness import serving

if TYPE_CHECKING:
    from collections.abc import Iterator

# A Standard Webhooks secret as the tests' config files hold it.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def notice(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    def verified(self, secret: str = SECRET) -> dict[str, Any]:
        """The body, once its signature checked out as a receiver's library checks it."""
        found: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return found


@dataclass
class Receiver:
    url: str = ""
    got: list[Received] = field(default_factory=list)
    # Answers to give, in order, before 204 for good.
    answers: list[int] = field(default_factory=list)
    # How long each answer takes (a slow receiver spreads a batch of notices over time).
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.got)

    def delivered(self) -> list[Received]:
        """The requests it answered with a 2xx (what counts as delivered)."""
        with self.lock:
            return [r for r in self.got if r.headers.get("x-answered") == "2xx"]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if receiver.delay_s:
                time.sleep(receiver.delay_s)  # the receiver's own pace, not a wait for a result
            with receiver.lock:
                status = receiver.answers.pop(0) if receiver.answers else 204
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-answered"] = "2xx" if 200 <= status < 300 else str(status)
                receiver.got.append(Received(headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's
            """Quiet."""

    with serving(Handler) as url:
        receiver.url = url + "/hooks/T0/token"
        yield receiver
