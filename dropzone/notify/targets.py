"""Where a notice goes: a webhook, or a command. Each delivers one notice or says why not.

The webhook follows Standard Webhooks (https://www.standardwebhooks.com): the body is the
notice's JSON, ``webhook-id`` its delivery ID (the same on every try, so a receiver drops a
repeat), ``webhook-timestamp`` the time of this try, and ``webhook-signature`` an HMAC-SHA256
of the three, made by the reference library a receiver verifies with. The command gets the
same JSON on its standard input and the delivery ID in ``DROPZONE_DELIVERY_ID``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from typing import TYPE_CHECKING, Protocol

import httpx

from dropzone.config.notify import shown_url
from dropzone.ledger.notices import EVENTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from standardwebhooks import Webhook as Signer

    from dropzone.ledger.notices import Notice

# What of a failed command's standard error a log line keeps.
_STDERR_CHARS = 300


class DeliveryFailed(Exception):
    """This try did not deliver; the message says why, without the URL's path or a secret."""


class Target(Protocol):
    @property
    def name(self) -> str:
        """The target as a log line may show it."""
        ...

    def wants(self, event: str) -> bool:
        """Whether it is told of this event (its route's are all that reach it)."""
        ...

    def deliver(self, notice: Notice) -> None:
        """Deliver it, or raise :class:`DeliveryFailed`."""
        ...


class _Asked:
    """A target of a watch's notify table hears the events that table names, and no other
    (a folder watch's results fetch wants Completed, which the table may not)."""

    _events: frozenset[str] = frozenset(EVENTS)

    def wants(self, event: str) -> bool:
        return event in self._events


class WebhookTarget(_Asked):
    def __init__(
        self,
        url: str,
        signer: Signer,
        client: httpx.Client,
        clock: Callable[[], datetime],
        timeout_s: float,
        events: Iterable[str] = EVENTS,
    ) -> None:
        self._events = frozenset(events)
        self._url = url
        self._signer = signer
        self._client = client
        self._clock = clock
        self._timeout_s = timeout_s
        self.name = f"webhook {shown_url(url)}"

    def deliver(self, notice: Notice) -> None:
        sent_at = self._clock()
        signature = self._signer.sign(notice.delivery_id, sent_at, notice.body)
        headers = {
            "content-type": "application/json",
            "webhook-id": notice.delivery_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
            "user-agent": "dropzone",
        }
        try:
            answer = self._client.post(
                self._url, content=notice.body, headers=headers, timeout=self._timeout_s
            )
        except httpx.HTTPError as exc:
            # httpx names the URL in some messages: only the error's kind is kept.
            raise DeliveryFailed(f"{self.name}: {type(exc).__name__}") from None
        if not answer.is_success:
            raise DeliveryFailed(f"{self.name}: HTTP {answer.status_code}")


class CommandTarget(_Asked):
    def __init__(
        self, argv: Sequence[str], timeout_s: float, events: Iterable[str] = EVENTS
    ) -> None:
        self._events = frozenset(events)
        self._argv = tuple(argv)
        self._timeout_s = timeout_s
        self.name = f"command {self._argv[0]}"

    def deliver(self, notice: Notice) -> None:
        env = {
            **os.environ,
            "DROPZONE_DELIVERY_ID": notice.delivery_id,
            "DROPZONE_EVENT": notice.event,
        }
        # Its output goes to a file, not a pipe: a child it leaves running in the background
        # would hold a pipe open, and the try would wait for that child, not the command.
        # A session of its own, so that a time-out stops what it started too.
        with tempfile.TemporaryFile() as stderr:
            try:
                command = subprocess.Popen(  # noqa: S603 - the operator's own command, no shell
                    self._argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise DeliveryFailed(f"{self.name}: cannot run it ({exc.strerror})") from None
            try:
                command.communicate(notice.body.encode("utf-8"), timeout=self._timeout_s)
            except subprocess.TimeoutExpired:
                _stop_all(command)
                raise DeliveryFailed(
                    f"{self.name}: still running after {self._timeout_s:g} s"
                ) from None
            if command.returncode != 0:
                stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 4 * _STDERR_CHARS))
                said = stderr.read().decode("utf-8", "replace").strip()[-_STDERR_CHARS:]
                tail = f": {said}" if said else ""
                raise DeliveryFailed(f"{self.name}: exit status {command.returncode}{tail}")


def _stop_all(command: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(command.pid, signal.SIGKILL)
    command.wait()
