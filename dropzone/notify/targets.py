"""Where a notice goes: a webhook, or a command. Each delivers one notice or says why not.

The webhook follows Standard Webhooks (https://www.standardwebhooks.com): the body is the
notice's JSON, ``webhook-id`` its delivery ID (the same on every try, so a receiver drops a
repeat), ``webhook-timestamp`` the time of this try, and ``webhook-signature`` an HMAC-SHA256
of the three, made by the reference library a receiver verifies with. The command gets the
same JSON on its standard input and the delivery ID in ``DROPZONE_DELIVERY_ID``.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING, Protocol

import httpx

from dropzone.config.notify import shown_url

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
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


class _EveryEvent:
    def wants(self, event: str) -> bool:  # noqa: ARG002 - the route chose the events
        return True


class WebhookTarget(_EveryEvent):
    def __init__(
        self,
        url: str,
        signer: Signer,
        client: httpx.Client,
        clock: Callable[[], datetime],
        timeout_s: float,
    ) -> None:
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


class CommandTarget(_EveryEvent):
    def __init__(self, argv: Sequence[str], timeout_s: float) -> None:
        self._argv = tuple(argv)
        self._timeout_s = timeout_s
        self.name = f"command {self._argv[0]}"

    def deliver(self, notice: Notice) -> None:
        env = {
            **os.environ,
            "DROPZONE_DELIVERY_ID": notice.delivery_id,
            "DROPZONE_EVENT": notice.event,
        }
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                self._argv,
                input=notice.body.encode("utf-8"),
                capture_output=True,
                timeout=self._timeout_s,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeliveryFailed(
                f"{self.name}: still running after {self._timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise DeliveryFailed(f"{self.name}: cannot run it ({exc.strerror})") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip()[-_STDERR_CHARS:]
            tail = f": {said}" if said else ""
            raise DeliveryFailed(f"{self.name}: exit status {done.returncode}{tail}")
