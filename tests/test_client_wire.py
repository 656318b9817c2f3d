"""What a call puts on the wire, and how long it may wait: the client builds each request itself
(for the CPU it saves), so these hold it to what httpx's own merging gave."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import pytest

from dropzone.ark import errors
from dropzone.ark.client import USER_AGENT, ArkClient
from dropzone.ark.models import CreateJobRequest, FoundationModel, ModelReference, TosLocation
from dropzone.ark.signer import Credentials
from tests.harness import ACCESS_KEY, SECRET_KEY, serving

if TYPE_CHECKING:
    from collections.abc import Iterator

CREATED = json.dumps(
    {"ResponseMetadata": {"RequestId": "r"}, "Result": {"Id": "bi-20260101000000-abcde"}}
).encode()
REQUEST = CreateJobRequest(
    name="a",
    model_reference=ModelReference(foundation_model=FoundationModel(name="m-1")),
    input_file_tos_location=TosLocation(bucket_name="b", object_key="in/a.jsonl"),
    output_dir_tos_location=TosLocation(bucket_name="b", object_key="out/a/"),
)


def _client(url: str, *, timeout_s: float = 30.0) -> ArkClient:
    return ArkClient(
        endpoint=url,
        region="cn-beijing",
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
        timeout_s=timeout_s,
        max_requests_per_second=1000,
    )


@pytest.fixture
def recording() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback server that answers every POST with a created job and keeps what it got."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append({"path": self.path, "headers": self.headers, "body": body})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(CREATED)))
            self.end_headers()
            self.wfile.write(CREATED)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's
            """Quiet: the test reads what was received."""

    with serving(Handler) as url:
        yield url, seen


def test_a_create_goes_out_as_signed_with_the_clients_headers(
    recording: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = recording
    with _client(url) as api:
        signed = api.sign_create(REQUEST)
        assert api.send_create(signed) == "bi-20260101000000-abcde"
        assert api.create(REQUEST) == "bi-20260101000000-abcde"  # the URL, built once, reused
    create_path = "/?Action=CreateBatchInferenceJob&Version=2024-01-01"
    assert [got["path"] for got in seen] == [create_path] * 2
    headers = seen[0]["headers"]  # looked up as HTTP does, whatever the case
    assert headers["User-Agent"] == USER_AGENT
    assert "gzip" in headers["Accept-Encoding"]
    assert headers["Host"] == url.removeprefix("http://")
    for name, value in signed.call.headers.items():
        assert headers[name] == value, name
    assert seen[0]["body"] == signed.call.body
    assert json.loads(seen[0]["body"])["InputFileTosLocation"]["ObjectKey"] == "in/a.jsonl"


def test_an_answer_that_never_comes_times_out_as_ambiguous() -> None:
    """The read timeout is the client's, on a request built outside ``post``: without it the
    call would wait forever (the test's deadline is generous for a busy machine)."""
    release = threading.Event()

    class Silent(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            release.wait(60)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's
            """Quiet."""

    with serving(Silent) as url:
        try:
            started = time.monotonic()
            with _client(url, timeout_s=0.3) as api, pytest.raises(errors.Transient) as raised:
                api.create(REQUEST)
            waited = time.monotonic() - started
        finally:
            release.set()
    assert raised.value.may_have_reached
    assert waited < 20
