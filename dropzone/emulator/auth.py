"""The Volcengine signature check of a received request (pure; raises ApiError)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone.ark import signer
from dropzone.emulator.wire import SERVICE, ApiError, unauthorized

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime


MAX_SKEW_S = 900.0
REQUIRED_SIGNED = frozenset({"host", "x-date", "x-content-sha256"})


_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your Secret Access Key and signing method."
)


@dataclass(frozen=True)
class Received:
    """An HTTP request as it arrived: header names lower-cased, query pairs decoded."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes

    def query_value(self, name: str) -> str:
        return next((value for key, value in self.query if key == name), "")


def authenticate(
    request: Received,
    secrets: Mapping[str, str],
    now: datetime,
    region: str,
    max_skew_s: float = MAX_SKEW_S,
) -> str:
    """Check a request's Volcengine signature; returns the access key or raises ApiError.
    ``max_skew_s``: how far X-Date may be from ``now`` (the signature's lifetime)."""
    auth = _parse_authorization(request.headers.get("authorization"))
    secret = secrets.get(auth.access_key)
    if secret is None:
        raise unauthorized("InvalidAccessKey", "The access key is not recognised.")
    _check_signed_names(auth, request.headers)
    x_date = _check_timestamp(request.headers, now, max_skew_s)
    _check_scope(auth, x_date, region)
    _check_body_hash(request)
    _check_signature(request, auth, secret)
    return auth.access_key


def _parse_authorization(value: str | None) -> signer.ParsedAuthorization:
    if not value:
        raise unauthorized("MissingAuthenticationToken", "The request is not signed.")
    try:
        return signer.parse_authorization(value)
    except ValueError as exc:
        raise unauthorized("InvalidAuthorization", f"Malformed Authorization: {exc}.") from exc


def _check_signed_names(auth: signer.ParsedAuthorization, headers: Mapping[str, str]) -> None:
    names = set(auth.signed_header_names)
    required = set(REQUIRED_SIGNED)
    if "x-security-token" in headers:
        required.add("x-security-token")
    missing = sorted(required - names)
    if missing:
        raise unauthorized(
            "InvalidAuthorization", f"SignedHeaders must include {', '.join(missing)}."
        )
    absent = sorted(name for name in names if name not in headers)
    if absent:
        raise unauthorized("SignatureDoesNotMatch", f"Signed header {absent[0]} was not sent.")


def _check_timestamp(headers: Mapping[str, str], now: datetime, max_skew_s: float) -> str:
    x_date = headers["x-date"]
    try:
        sent = signer.parse_x_date(x_date)
    except ValueError as exc:
        raise ApiError(400, "InvalidTimestamp", f"Malformed X-Date {x_date!r}.") from exc
    if abs((sent - now).total_seconds()) > max_skew_s:
        raise ApiError(
            400,
            "InvalidTimestamp",
            f"The request time {x_date} is more than {max_skew_s:.0f} s from the server time "
            f"{signer.format_x_date(now)}.",
        )
    return x_date


def _check_scope(auth: signer.ParsedAuthorization, x_date: str, region: str) -> None:
    expected = (x_date[:8], region, SERVICE)
    if (auth.date, auth.region, auth.service) != expected:
        raise unauthorized(
            "SignatureDoesNotMatch",
            f"The credential scope {auth.date}/{auth.region}/{auth.service} does not match "
            f"{'/'.join(expected)}.",
        )


def _check_body_hash(request: Received) -> None:
    declared = request.headers["x-content-sha256"].strip().lower()
    if not hmac.compare_digest(declared, signer.sha256_hex(request.body)):
        raise unauthorized("SignatureDoesNotMatch", "X-Content-Sha256 does not match the body.")


def _check_signature(request: Received, auth: signer.ParsedAuthorization, secret: str) -> None:
    signed = {name: request.headers[name] for name in auth.signed_header_names}
    expected, _ = signer.signature(
        signer.Credentials(auth.access_key, secret),
        signer.SigningInput(
            request.method, request.path, request.query, signed, request.body, auth.region, SERVICE
        ),
    )
    if not hmac.compare_digest(expected, auth.signature.lower()):
        raise unauthorized("SignatureDoesNotMatch", _SIGNATURE_MESSAGE)
