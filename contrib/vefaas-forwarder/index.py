"""A veFaaS function that forwards TOS event notifications to dropzone's ``POST /events/tos``.

Give the function a TOS trigger (``tos:ObjectCreated:*``, with the watch's prefix and suffix as
filters) and two environment variables:

- ``DROPZONE_EVENTS_URL``: the daemon's route, ``https://dropzone.internal:9464/events/tos``
  (behind whatever TLS and network path reaches it);
- ``DROPZONE_EVENTS_SECRET``: the shared secret, the content of the daemon's
  ``[events] http_secret_file``.

The body is signed as dropzone checks it (``X-Dropzone-Signature: sha256=<HMAC-SHA256 hex>``).
Any answer but 2xx raises, so that veFaaS runs the function again: dropzone answers 503 when
it could not record the events yet, and records a message sent twice once. The standard
library only: nothing to package with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_S = 10


def notification_body(event: Any) -> bytes:  # noqa: ANN401 - whatever the trigger hands over
    """The notification as bytes: a CloudEvents envelope's ``data``, a body as it came, or
    the event itself (``{"events": [...]}``) serialised."""
    if isinstance(event, bytes | bytearray):
        return bytes(event)
    if isinstance(event, str):
        return event.encode("utf-8")
    if isinstance(event, dict) and "events" not in event and "data" in event:
        return notification_body(event["data"])
    return json.dumps(event, separators=(",", ":")).encode("utf-8")


def forward(event: Any, url: str, secret: str) -> dict[str, Any]:  # noqa: ANN401
    """POST the notification, signed; dropzone's JSON answer, or an error raised."""
    body = notification_body(event)
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 - the operator's own URL
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Dropzone-Signature": f"sha256={mac}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise RuntimeError(f"dropzone answered {exc.code}: {detail}") from exc
    return answer


def handler(event: Any, context: Any) -> dict[str, Any]:  # noqa: ANN401, ARG001 - veFaaS's signature
    answer = forward(event, os.environ["DROPZONE_EVENTS_URL"], os.environ["DROPZONE_EVENTS_SECRET"])
    return {"statusCode": 200, "body": json.dumps(answer)}
