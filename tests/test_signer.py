"""The signer against the published vectors and, byte for byte, against the official SDK."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from volcenginesdkcore import signv4

from dropzone.ark import signer
from tests.conftest import TEST_DATA

VECTORS: list[dict[str, Any]] = json.loads(
    (TEST_DATA / "signing-vectors.json").read_text(encoding="utf-8")
)["vectors"]


def _input(vector: dict[str, Any]) -> signer.SigningInput:
    return signer.SigningInput(
        method=vector["method"],
        path=vector["path"],
        query=tuple(vector["query"].items()),
        signed_headers=vector["signed_headers"],
        body=vector["body"].encode("utf-8"),
        region=vector["region"],
        service=vector["service"],
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"].split(":")[0] for v in VECTORS])
def test_official_vectors(vector: dict[str, Any]) -> None:
    """Every vector's signature (and authorization, key, hash where given) is reproduced."""
    creds = signer.Credentials(vector["access_key"], vector["secret_key"])
    request = _input(vector)
    sig, _ = signer.signature(creds, request)
    assert sig == vector["expected_signature"]
    if "expected_authorization" in vector:
        assert signer.authorization(creds, request) == vector["expected_authorization"]
    if "expected_signing_key_hex" in vector:
        key = signer.signing_key(
            vector["secret_key"], vector["x_date"][:8], vector["region"], vector["service"]
        )
        assert key.hex() == vector["expected_signing_key_hex"]
    if "expected_payload_hash" in vector:
        assert signer.sha256_hex(request.body) == vector["expected_payload_hash"]
    if "X-Content-Sha256" in vector["signed_headers"]:
        assert signer.sha256_hex(request.body) == vector["signed_headers"]["X-Content-Sha256"]


def test_credentials_repr_hides_secrets() -> None:
    """A repr of credentials shows the access key only."""
    creds = signer.Credentials("AKID", "very-secret", "token-secret")
    text = repr(creds) + str(creds)
    assert "very-secret" not in text
    assert "token-secret" not in text
    assert "AKID" in text


def test_parse_authorization_roundtrip() -> None:
    """The emulator's parser reads back what the signer wrote."""
    vector = VECTORS[0]
    parsed = signer.parse_authorization(vector["expected_authorization"])
    assert parsed.access_key == vector["access_key"]
    assert parsed.region == "cn-north-1"
    assert parsed.service == "iam"
    assert parsed.signed_header_names == ("content-type", "host", "x-content-sha256", "x-date")
    assert parsed.signature == vector["expected_signature"]


@pytest.mark.parametrize(
    "bad",
    ["AWS4-HMAC-SHA256 Credential=a/b/c/d/request", "HMAC-SHA256 Credential=a/b", "HMAC-SHA256 x"],
)
def test_parse_authorization_rejects_malformed(bad: str) -> None:
    """Malformed headers raise ValueError rather than passing as a signature."""
    with pytest.raises(ValueError, match=r"\w"):
        signer.parse_authorization(bad)


_QUERY_TEXT = st.text(
    alphabet=st.sampled_from(list("aZ09 +%/~-_.=&?中文é😀\t")) | st.characters(codec="utf-8"),
    max_size=12,
)


class _FrozenDatetime(dt.datetime):
    frozen: dt.datetime = dt.datetime(2025, 1, 15, 9, 49, 23)  # noqa: DTZ001 - SDK uses naive UTC

    @classmethod
    def utcnow(cls) -> dt.datetime:  # type: ignore[override]
        return cls.frozen


@settings(max_examples=300, deadline=None)
@given(
    query=st.dictionaries(_QUERY_TEXT, _QUERY_TEXT, max_size=5),
    body=st.text(max_size=200),
    token=st.none() | st.text(alphabet="abcdefXYZ0123456789=", min_size=1, max_size=30),
    host=st.sampled_from(["open.volcengineapi.com", "127.0.0.1:8765", "example.com:443"]),
)
def test_matches_official_sdk_signer(
    query: dict[str, str], body: str, token: str | None, host: str
) -> None:
    """For random queries, bodies and tokens, our Authorization equals the SDK's byte for byte."""
    original = signv4.datetime.datetime
    signv4.datetime.datetime = _FrozenDatetime
    try:
        sdk_headers = {"Host": host, "Content-Type": "application/json"}
        signv4.SignerV4.sign(
            "/",
            "POST",
            sdk_headers,
            body,
            {},
            query,
            "AKexample",
            "SKexample",
            "cn-beijing",
            "ark",
            token,
        )
    finally:
        signv4.datetime.datetime = original
    ours = signer.request_headers(
        signer.Credentials("AKexample", "SKexample", token),
        host=host,
        query=tuple(query.items()),
        body=body.encode("utf-8"),
        now=_FrozenDatetime.frozen.replace(tzinfo=dt.UTC),
        region="cn-beijing",
        service="ark",
    )
    assert ours["Authorization"] == sdk_headers["Authorization"]
    assert ours["X-Content-Sha256"] == sdk_headers["X-Content-Sha256"]
