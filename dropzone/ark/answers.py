"""What an answer from Ark means: its envelope read, its error classified, the clock skew it shows.

Pure: a status, a body and a date in; an :class:`Answer` or an error of ``errors.py`` out.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

from dropzone.ark import errors

if TYPE_CHECKING:
    from pydantic import ValidationError


PROTOCOL_ERROR = "ProtocolError"
BODY_SHOWN = 200  # bytes of an answer not understood shown in its error


@dataclass(frozen=True)
class Answer:
    """A parsed API answer: the Result, or the error's fields."""

    status: int
    result: dict[str, Any] | None
    code: str = ""
    message: str = ""
    request_id: str = ""
    # Whether the body was the API's envelope (a JSON object with ResponseMetadata) at all.
    enveloped: bool = True


def shown(body: bytes, secrets: tuple[str, ...]) -> str:
    """An answer's first bytes, for a message: its credentials masked, as a proxy or a wrong
    host may echo the request."""
    snippet = body[:BODY_SHOWN].decode("utf-8", "replace")
    for secret in secrets:
        snippet = snippet.replace(secret, "***")
    return snippet


def parse_answer(status: int, body: bytes, secrets: tuple[str, ...] = ()) -> Answer:
    """Read an answer body; a 200 carrying ``ResponseMetadata.Error`` is an error too.
    ``secrets`` never appear in a message made from the body."""
    try:
        document = json.loads(body)
    except ValueError:
        snippet = shown(body, secrets)
        return Answer(status, None, "", f"answer is not JSON: {snippet!r}", enveloped=False)
    if not isinstance(document, dict):
        return Answer(status, None, "", "answer is not a JSON object", enveloped=False)
    metadata = document.get("ResponseMetadata")
    if not isinstance(metadata, dict) and (status >= 300 or "Result" not in document):
        snippet = shown(body, secrets)
        return Answer(
            status, None, "", f"answer without ResponseMetadata: {snippet!r}", enveloped=False
        )
    metadata = metadata if isinstance(metadata, dict) else {}
    request_id = str(metadata.get("RequestId", ""))
    error = metadata.get("Error")
    if isinstance(error, dict):
        code = str(error.get("Code", ""))
        return Answer(status, None, code, str(error.get("Message", "")), request_id)
    if status >= 300:
        return Answer(status, None, "", f"HTTP {status} without an error object", request_id)
    result = document.get("Result")
    return Answer(status, result if isinstance(result, dict) else {}, request_id=request_id)


def protocol_error(
    action: str, exc: ValidationError, body: bytes, secrets: tuple[str, ...]
) -> errors.Transient:
    """An answer whose Result dropzone cannot understand: the request reached the platform,
    which may have acted on it (a Create goes through reconcile by tag, like a lost answer)."""
    snippet = shown(body, secrets)
    problem = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = ".".join(str(part) for part in problem["loc"]) or "Result"
    return errors.Transient(
        f"protocol error: {action} answered a Result dropzone cannot read ({where}: "
        f"{problem['msg']}); the answer begins {snippet!r}",
        may_have_reached=True,
        code=PROTOCOL_ERROR,
        status=200,
    )


def _unenveloped(answer: Answer) -> errors.ArkError:
    """An answer that is not the API's envelope: what sent it decides what it means."""
    if answer.status < 300 or answer.status >= 500:
        # The request went out and something answered: the platform may have acted on it,
        # so a Create is reconciled by tag, like a lost answer, never taken for a refusal.
        return errors.Transient(
            answer.message, may_have_reached=True, code=PROTOCOL_ERROR, status=answer.status
        )
    if answer.status == 429:
        return errors.Throttled(answer.message, code="", status=answer.status)
    return errors.EndpointError(
        answer.message,
        code="NotArkAnswer",
        status=answer.status,
        hint=(
            "check [ark] endpoint: it must be the management API "
            "(https://open.volcengineapi.com or https://ark.cn-beijing.volcengineapi.com), "
            "not the data-plane host ark.cn-beijing.volces.com nor a proxy"
        ),
    )


def error_for(answer: Answer, server_date: str | None, now: datetime) -> errors.ArkError:
    """The error an unsuccessful answer stands for; measures clock skew for InvalidTimestamp."""
    if not answer.enveloped:
        return _unenveloped(answer)
    status = answer.status if answer.status >= 300 else 400
    error = errors.classify(status, answer.code, answer.message, answer.request_id)
    if isinstance(error, errors.AuthError) and answer.code == "InvalidTimestamp":
        error.skew_s = measure_skew(server_date, now)
    return error


def measure_skew(server_date: str | None, now: datetime) -> float | None:
    """Seconds the server's clock is ahead of ours (negative: behind), from a Date header."""
    if not server_date:
        return None
    try:
        server_now = parsedate_to_datetime(server_date)
    except (TypeError, ValueError):
        return None
    if server_now.tzinfo is None:
        server_now = server_now.replace(tzinfo=UTC)
    return (server_now - now).total_seconds()


def translate_transport_error(exc: httpx.TransportError) -> errors.Transient:
    """Network failures, sorted by whether the request may have reached the server."""
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    reason = type(exc).__name__  # the code: describe() prints it before the message
    detail = str(exc) or "no detail"
    with suppress(RuntimeError):  # an exception raised without a request (tests)
        detail += f" ({exc.request.method} {exc.request.url.copy_with(query=None)})"
    return errors.Transient(detail, may_have_reached=not never_sent, code=reason, status=None)
