"""Answer parsing and the error taxonomy, without any network."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from dropzone.ark import answers, errors
from dropzone.ark.models import find_job_id
from dropzone.ark.ratelimit import RateLimiter
from dropzone.testing import FakeTimer


def _error_body(code: str, message: str) -> bytes:
    return json.dumps(
        {"ResponseMetadata": {"RequestId": "r1", "Error": {"Code": code, "Message": message}}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "FlowLimitExceeded", errors.Throttled),
        (429, "", errors.Throttled),
        (400, "QuotaExceeded", errors.Throttled),
        (429, "APIAccountRpmRateLimitExceeded", errors.Throttled),
        (401, "SignatureDoesNotMatch", errors.AuthError),
        (401, "InvalidAccessKey", errors.AuthError),
        (400, "InvalidTimestamp", errors.AuthError),
        (403, "AccessDenied", errors.AuthError),
        (500, "InternalError", errors.Transient),
        (503, "ServiceUnavailableTemp", errors.Transient),
        (504, "InternalServiceTimeout", errors.Transient),
        (400, "InvalidParameter.Name", errors.Rejected),
        (404, "NotFound.Id", errors.Rejected),
        (403, "OperationDenied.ServiceNotOpen", errors.AccountError),
        (418, "NoSuchCodeAnywhere", errors.Rejected),
        (401, "NoSuchCodeAnywhere", errors.AuthError),
    ],
)
def test_classify(status: int, code: str, expected: type[errors.ArkError]) -> None:
    """Each documented status/code lands on the branch that tells the caller what to do."""
    answer = answers.parse_answer(status, _error_body(code, "m"))
    error = answers.error_for(answer, None, datetime.now(UTC))
    assert type(error) is expected
    assert error.code == code
    assert error.request_id == "r1"
    if isinstance(error, errors.Transient):
        assert error.may_have_reached


def test_200_with_error_is_an_error() -> None:
    """A 200 carrying ResponseMetadata.Error is treated as an error, as the SDK does."""
    answer = answers.parse_answer(200, _error_body("InvalidParameter.Name", "bad name"))
    assert answer.result is None
    error = answers.error_for(answer, None, datetime.now(UTC))
    assert isinstance(error, errors.Rejected)
    assert error.describe() == "InvalidParameter.Name HTTP 400: bad name"


def test_non_json_answer() -> None:
    """A gateway's HTML 502 becomes a Transient error that quotes the start of the body."""
    answer = answers.parse_answer(502, b"<html>Bad Gateway</html>")
    error = answers.error_for(answer, None, datetime.now(UTC))
    assert isinstance(error, errors.Transient)
    assert "Bad Gateway" in error.message


def test_success_result() -> None:
    """The Result object is returned from a success envelope."""
    body = json.dumps({"ResponseMetadata": {"RequestId": "x"}, "Result": {"Id": "bi-1-a"}})
    assert answers.parse_answer(200, body.encode()).result == {"Id": "bi-1-a"}


def test_invalid_timestamp_measures_skew() -> None:
    """InvalidTimestamp reports how far the server's Date header is from our clock."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    answer = answers.parse_answer(400, _error_body("InvalidTimestamp", "skew"))
    error = answers.error_for(answer, "Thu, 01 Jan 2026 12:20:00 GMT", now)
    assert isinstance(error, errors.AuthError)
    assert error.skew_s == pytest.approx(1200.0)


@pytest.mark.parametrize("date", [None, "", "not a date"])
def test_skew_unknown_without_usable_date(date: str | None) -> None:
    """Without a usable Date header the skew is unknown, not zero."""
    assert answers.measure_skew(date, datetime.now(UTC)) is None


def _transport_error_classes() -> list[type[httpx.TransportError]]:
    found: list[type[httpx.TransportError]] = []
    pending: list[type[httpx.TransportError]] = [httpx.TransportError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _transport_error_classes(), ids=lambda c: c.__name__)
def test_every_transport_error_is_mapped(cls: type[httpx.TransportError]) -> None:
    """Every httpx transport error becomes Transient, and only never-sent ones say so."""
    error = answers.translate_transport_error(cls("boom"))
    assert isinstance(error, errors.Transient)
    never_sent = {"ConnectError", "ConnectTimeout", "PoolTimeout"}
    assert error.may_have_reached is (cls.__name__ not in never_sent)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "A job with the same input is already active: bi-20240918194641-r2nwq",
            "bi-20240918194641-r2nwq",
        ),
        ("存在运行或排队中的任务bi-20240918194641-r2nwq，请勿重复提交", "bi-20240918194641-r2nwq"),  # noqa: RUF001 - Chinese text uses full-width commas
        ("job (bi-2024-abc12) is running", "bi-2024-abc12"),
        ("no id here", None),
        ("abi-2024-abc is not an id", None),
        ("bi-notdigits-abc", None),
    ],
)
def test_find_job_id(message: str, expected: str | None) -> None:
    """The job ID is found in English and Chinese messages, and not inside other words."""
    assert find_job_id(message) == expected


def test_rate_limiter_spaces_calls() -> None:
    """At 4 requests/s, ten back-to-back calls take 2.25 s: slots 0.25 s apart."""
    clock = FakeTimer()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire()
    assert clock.now == pytest.approx(100.0 + 9 * 0.25)


def test_rate_limiter_no_burst_credit_after_idle() -> None:
    """An idle spell earns no burst: the call after it goes at once, the next waits."""
    clock = FakeTimer()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 60
    assert limiter.reserve() == 0
    assert limiter.reserve() == pytest.approx(0.5)


def test_rate_limiter_rejects_nonpositive() -> None:
    """A zero rate is a configuration error, not an infinite wait."""
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


@pytest.mark.parametrize(("code", "row"), list(errors.KNOWN_CODES.items()), ids=str)
def test_every_known_code_lands_on_its_row(code: str, row: errors.KnownCode) -> None:
    """Each row of the table: its code, at its status, is its branch; a code that holds says
    what to do; a request family covers its members (InvalidParameter.Name)."""
    answer = answers.parse_answer(row.status, _error_body(code, "m"))
    error = answers.error_for(answer, None, datetime.now(UTC))
    assert type(error) is row.kind
    if isinstance(error, errors.Held):
        assert error.hint
        assert error.hint == row.hint
    if row.kind is errors.Rejected and "." not in code:
        member = answers.error_for(
            answers.parse_answer(row.status, _error_body(f"{code}.Name", "m")),
            None,
            datetime.now(UTC),
        )
        assert type(member) is errors.Rejected


def test_account_codes_hold_and_never_reject() -> None:
    """The account's answers (not activated, overdue, model not opened, bad credential) are
    Held: the policy retries them without counting, never rejects (they rejected every file)."""
    from dropzone.jobs.policy import Action, RetryPolicy, decide  # noqa: PLC0415 - this test only

    account = [c for c, row in errors.KNOWN_CODES.items() if issubclass(row.kind, errors.Held)]
    assert {
        "OperationDenied.ServiceNotOpen",
        "OperationDenied.ServiceOverdue",
        "AccountOverdueError",
        "ModelNotOpen",
        "InvalidCredential",
        "MissingRequestInfo",
    } <= set(account)
    for code in account:
        row = errors.KNOWN_CODES[code]
        error = errors.classify(row.status, code, "m")
        decision = decide(error, RetryPolicy(), 0.5, attempts=7)
        assert (decision.action, decision.held, decision.transient) == (Action.RETRY, True, False)


def test_job_ids_are_found_whatever_their_case() -> None:
    """A message that upper-cases the ID still names the job, given back in the platform's case."""
    assert find_job_id("active job BI-20240918194641-R2NWQ exists") == "bi-20240918194641-r2nwq"
