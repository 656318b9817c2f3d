"""``POST /events/tos``: TOS notifications forwarded over HTTP (a veFaaS function, say).

The sender signs the body with the shared secret (``[events] http_secret_file``):
``X-Dropzone-Signature: sha256=<hex HMAC-SHA256 of the body>``. An answer of 200 means every
event of the message was recorded or dropped for good (malformed, not a watched object); 503
means send it again (the bucket or the ledger could not be read), and what was recorded before
is known then, so a message sent twice is no harm. A replayed message is no harm either, for
the same reason: the signature proves who sent it, not when.
"""

from __future__ import annotations

import hashlib
import hmac
from http import HTTPStatus
from typing import TYPE_CHECKING

from dropzone.errors import DropzoneError
from dropzone.events.notification import parse
from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dropzone.events.intake import EventIntake

PATH = "/events/tos"
SIGNATURE_HEADER = "X-Dropzone-Signature"
_SCHEME = "sha256="


def signature(secret: bytes, body: bytes) -> str:
    """The header's value for ``body``."""
    return _SCHEME + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signed_by(secret: bytes, body: bytes, header: str | None) -> bool:
    if header is None:
        return False
    # As bytes: compare_digest refuses a str with other than ASCII in it (a header is
    # latin-1 text), and any sender may send one.
    sent = header.strip().encode("latin-1", errors="replace")
    return hmac.compare_digest(sent, signature(secret, body).encode("ascii"))


class HttpFeed:
    """The route: checks the signature, reads the message, hands its hints to the intake."""

    def __init__(self, intake: EventIntake, secret: bytes) -> None:
        self._intake = intake
        self._secret = secret
        self._log = get_logger(feed=intake.feed)

    def __call__(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[HTTPStatus, Mapping[str, object]]:
        if not signed_by(self._secret, body, headers.get(SIGNATURE_HEADER.lower())):
            self._log.warning("event.refused", reason="no valid signature", bytes=len(body))
            return HTTPStatus.UNAUTHORIZED, {
                "error": f"{SIGNATURE_HEADER} missing or wrong: sign the body with"
                " HMAC-SHA256 and the shared secret"
            }
        try:
            taken = self._intake.take(parse(body))
        except DropzoneError as exc:
            self._log.warning("event.deferred", error=str(exc), note="the sender is told to retry")
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc), "retry": True}
        return HTTPStatus.OK, {"outcomes": taken.counts}
