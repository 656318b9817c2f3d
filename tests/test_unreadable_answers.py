"""Answers the client cannot read, once the request went out, are ambiguous, never a rejection;
a 4xx that is not Ark's envelope is the endpoint setting. Loopback servers give the answers."""

from __future__ import annotations

import gzip
import json
from typing import TYPE_CHECKING

import pytest

from dropzone.ark import errors
from dropzone.ark.client import ArkClient
from dropzone.ark.models import CreateJobRequest, FoundationModel, ModelReference, TosLocation
from dropzone.ark.signer import Credentials
from dropzone.jobs.policy import Action, RetryPolicy, decide
from tests.harness import ACCESS_KEY, SECRET_KEY, answering

if TYPE_CHECKING:
    from tests.harness import Stage

CREATED = json.dumps(
    {"ResponseMetadata": {"RequestId": "r"}, "Result": {"Id": "bi-20260101000000-abcde"}}
).encode()


def _create(url: str) -> str:
    request = CreateJobRequest(
        name="a",
        model_reference=ModelReference(foundation_model=FoundationModel(name="m-1")),
        input_file_tos_location=TosLocation(bucket_name="b", object_key="in/a.jsonl"),
        output_dir_tos_location=TosLocation(bucket_name="b", object_key="out/a/"),
    )
    with ArkClient(
        endpoint=url, region="cn-beijing", credentials=Credentials(ACCESS_KEY, SECRET_KEY)
    ) as api:
        return api.create(request)


def _is_ambiguous(error: errors.ArkError) -> None:
    assert isinstance(error, errors.Transient)
    assert error.may_have_reached
    assert decide(error, RetryPolicy(), 0.5, attempts=1).action is Action.RECONCILE


def test_an_answer_framed_by_closing_the_connection_is_read() -> None:
    """No Content-Length, the body read to the connection's close (HTTP/1.0): the job's Id."""
    with answering(200, CREATED, with_length=False) as url:
        assert _create(url) == "bi-20260101000000-abcde"


def test_a_gzip_answer_is_read_and_a_broken_one_is_ambiguous() -> None:
    """Content-Encoding: gzip is decoded; a body that does not decode is a Transient that may
    have reached (reconciled by tag), not an escaping exception (it was worker.failed)."""
    with answering(200, gzip.compress(CREATED), extra_headers={"Content-Encoding": "gzip"}) as url:
        assert _create(url) == "bi-20260101000000-abcde"
    broken = {"Content-Encoding": "gzip"}
    with (
        answering(200, b"not gzip at all", extra_headers=broken) as url,
        pytest.raises(errors.Transient) as raised,
    ):
        _create(url)
    assert raised.value.code == "ProtocolError"
    _is_ambiguous(raised.value)


@pytest.mark.parametrize(
    "body", [b"<html>ok</html>", b"[1, 2]", b'{"Id": "bi-20260101000000-abcde"}'], ids=str
)
def test_a_2xx_that_is_not_the_envelope_is_ambiguous(body: bytes) -> None:
    """After the Create went out, an answer that is not the API's envelope may still stand for
    a job: it is reconciled by tag (it was `rejected`, and a retry made a second job)."""
    with (
        answering(200, body, content_type="text/html") as url,
        pytest.raises(errors.Transient) as raised,
    ):
        _create(url)
    assert raised.value.code == "ProtocolError"
    _is_ambiguous(raised.value)


def test_a_4xx_without_the_envelope_is_the_endpoint_setting() -> None:
    """The data-plane host (or a proxy) answering 404 HTML: EndpointError, held, naming the
    setting to fix; never a per-file rejection."""
    with (
        answering(
            404, b"<html><body>404 page not found</body></html>", content_type="text/html"
        ) as url,
        pytest.raises(errors.EndpointError) as raised,
    ):
        _create(url)
    assert "check [ark] endpoint" in raised.value.hint
    decision = decide(raised.value, RetryPolicy(), 0.5, attempts=1)
    assert (decision.action, decision.held) == (Action.RETRY, True)


@pytest.mark.parametrize("status", [200, 403])
def test_an_answer_echoing_the_credentials_is_shown_masked(status: int) -> None:
    """A proxy or a wrong host that echoes the request: the first bytes of its answer name
    the problem, with the access and secret key masked (they were shown as they came)."""
    echo = f"<html>denied for {ACCESS_KEY}, signed with {SECRET_KEY}</html>".encode()
    with (
        answering(status, echo, content_type="text/html") as url,
        pytest.raises(errors.ArkError) as raised,
    ):
        _create(url)
    told = str(raised.value)
    assert "<html>denied for ***, signed with ***</html>" in told
    assert ACCESS_KEY not in told
    assert SECRET_KEY not in told


@pytest.mark.slow
def test_check_names_a_wrong_endpoint(stage: Stage) -> None:
    """`dropzone check` against such a host: a FAILED line saying it is not the management API."""
    with answering(404, b"<html>not here</html>", content_type="text/html") as url:
        done = stage.dropzone("check", env={"DROPZONE_ARK__ENDPOINT": url})
    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if line.startswith("ark ")]
    assert "FAILED: this is not Ark's management API" in line
    assert "check [ark] endpoint" in line
