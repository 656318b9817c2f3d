"""Volcengine OpenAPI request signing ("HMAC-SHA256"), as pure functions.

The algorithm is AWS SigV4 with three differences: the algorithm name, a scope ending in
``/request`` and a key chain without the ``AWS4`` prefix. Nothing here reads a clock, the
environment or the network: the caller passes the time and the exact body bytes it will send.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

ALGORITHM = "HMAC-SHA256"
UNRESERVED = "-_.~"
X_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Credentials:
    """An access key pair, with an optional STS session token. Secrets never print."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        token = ", session_token=[secure]" if self.session_token else ""
        return f"Credentials(access_key={self.access_key!r}, secret_key=[secure]{token})"


def format_x_date(moment: datetime) -> str:
    """The ``X-Date`` value for an aware datetime."""
    return moment.astimezone(UTC).strftime(X_DATE_FORMAT)


def parse_x_date(value: str) -> datetime:
    """Parse an ``X-Date`` value; raises ValueError when it is malformed."""
    return datetime.strptime(value, X_DATE_FORMAT).replace(tzinfo=UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe=UNRESERVED)


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    """RFC 3986 encoding of names and values, pairs sorted after encoding (as the SDKs do)."""
    pairs = sorted((_encode(name), _encode(value)) for name, value in query)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _canonical_host(value: str) -> str:
    # The official SDK drops a default port before signing; servers see the same Host.
    host, sep, port = value.rpartition(":")
    # A bare IPv6 address has colons of its own: only "[addr]:port" carries a port.
    bare_ipv6 = ":" in host and not host.endswith("]")
    if sep and port in {"80", "443"} and not bare_ipv6:
        return host
    return value


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(canonical header block, signed header names) for the headers that take part."""
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    if "host" in lowered:
        lowered["host"] = _canonical_host(lowered["host"])
    names = sorted(lowered)
    block = "".join(f"{name}:{lowered[name]}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    signed_headers: Mapping[str, str],
    body_sha256: str,
) -> tuple[str, str]:
    """(canonical request, signed header names)."""
    block, names = canonical_headers(signed_headers)
    text = "\n".join(
        [method.upper(), path or "/", canonical_query(query), block, names, body_sha256]
    )
    return text, names


def credential_scope(x_date: str, region: str, service: str) -> str:
    return f"{x_date[:8]}/{region}/{service}/request"


def string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, scope, sha256_hex(canonical.encode("utf-8"))])


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = secret_key.encode("utf-8")
    for part in (date, region, service, "request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


@dataclass(frozen=True)
class SigningInput:
    """Everything that determines a signature, with nothing taken from the environment."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    signed_headers: Mapping[str, str]
    body: bytes
    region: str
    service: str


def signature(credentials: Credentials, request: SigningInput) -> tuple[str, str]:
    """(hex signature, signed header names). ``X-Date`` must be among the signed headers."""
    x_date = _header(request.signed_headers, "x-date")
    canonical, names = canonical_request(
        request.method,
        request.path,
        request.query,
        request.signed_headers,
        sha256_hex(request.body),
    )
    scope = credential_scope(x_date, request.region, request.service)
    key = signing_key(credentials.secret_key, x_date[:8], request.region, request.service)
    digest = hmac.new(key, string_to_sign(x_date, scope, canonical).encode("utf-8"), hashlib.sha256)
    return digest.hexdigest(), names


def authorization(credentials: Credentials, request: SigningInput) -> str:
    """The ``Authorization`` header value."""
    sig, names = signature(credentials, request)
    x_date = _header(request.signed_headers, "x-date")
    scope = credential_scope(x_date, request.region, request.service)
    return (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={sig}"
    )


def request_headers(  # noqa: PLR0913 - one value per header that is signed
    credentials: Credentials,
    *,
    host: str,
    query: tuple[tuple[str, str], ...],
    body: bytes,
    now: datetime,
    region: str,
    service: str,
    content_type: str = "application/json",
    method: str = "POST",
) -> dict[str, str]:
    """The full header set for a request: signed headers plus ``Authorization``."""
    headers = {
        "Host": host,
        "Content-Type": content_type,
        "X-Date": format_x_date(now),
        "X-Content-Sha256": sha256_hex(body),
    }
    if credentials.session_token:
        headers["X-Security-Token"] = credentials.session_token
    request = SigningInput(method, "/", query, headers, body, region, service)
    return {**headers, "Authorization": authorization(credentials, request)}


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key: str
    date: str
    region: str
    service: str
    signed_header_names: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Parse an ``Authorization`` header; raises ValueError naming what is wrong."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, item = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed Authorization part {part.strip()!r}")
        fields[name] = item
    try:
        credential = fields["Credential"]
        names = fields["SignedHeaders"]
        sig = fields["Signature"]
    except KeyError as exc:
        raise ValueError(f"Authorization lacks {exc.args[0]}") from exc
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "request":
        raise ValueError("malformed Credential scope")
    return ParsedAuthorization(scope[0], scope[1], scope[2], scope[3], tuple(names.split(";")), sig)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise ValueError(f"header {name!r} must be signed")
