"""Retry decisions after a failed Create call: pure values in, a decision out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropzone.ark import errors
from dropzone.jobs.policy import (
    Action,
    Decision,
    RetryPolicy,
    backoff_delay,
    decide,
    transient_retry,
)

POLICY = RetryPolicy(base_s=1.0, cap_s=300.0)

THROTTLED = errors.Throttled("slow down", code="FlowLimitExceeded", status=429)
AUTH = errors.AuthError("bad signature", code="SignatureDoesNotMatch", status=401)
SERVER = errors.Transient("boom", may_have_reached=False, code="InternalError", status=503)
AMBIGUOUS = errors.Transient("read timed out", may_have_reached=True)
REFUSED = errors.Rejected("bad model", code="InvalidParameter", status=400)

counts = st.integers(min_value=0, max_value=10_000)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@pytest.mark.parametrize(
    ("error", "action", "transient"),
    [
        (THROTTLED, Action.RETRY, False),
        (AUTH, Action.RETRY, False),
        (SERVER, Action.RETRY, True),
        (AMBIGUOUS, Action.RECONCILE, False),
        (REFUSED, Action.REJECT, False),
    ],
    ids=["throttled", "auth", "server", "ambiguous", "refused"],
)
def test_each_kind_of_failure_gets_its_action(
    error: errors.ArkError, action: Action, transient: bool
) -> None:
    """The first failure of each kind: throttling and auth are held, a 5xx retried and
    counted as transient, an ambiguous answer reconciled, a refusal rejected."""
    decision = decide(error, POLICY, 0.5, attempts=1)
    assert (decision.action, decision.transient) == (action, transient)
    assert decision.reason == error.describe()


@given(attempts=counts, jitter=jitters)
def test_throttling_and_auth_never_reject_nor_count(attempts: int, jitter: float) -> None:
    """However many attempts an entry has, a throttled or unauthorised attempt is retried
    and is not recorded as a transient failure."""
    for error in (THROTTLED, AUTH):
        decision = decide(error, POLICY, jitter, attempts=attempts)
        assert (decision.action, decision.transient) == (Action.RETRY, False)


@given(attempts=counts, jitter=jitters)
def test_a_server_error_is_a_transient_retry(attempts: int, jitter: float) -> None:
    """A 5xx without doubt about its outcome is decided by transient_retry."""
    decision = decide(SERVER, POLICY, jitter, attempts=attempts)
    assert decision == transient_retry(POLICY, jitter, SERVER.describe(), attempts=attempts)


def test_a_long_throttled_entry_still_retries_its_first_server_error() -> None:
    """The reported defect: an entry throttled many times is not rejected on its first 5xx;
    it waits as long as its fiftieth claim calls for (the cap), not a first step."""
    decision = decide(SERVER, POLICY, 0.0, attempts=50)
    assert decision == Decision(Action.RETRY, 150.0, SERVER.describe(), transient=True)


@given(attempts=st.integers(min_value=0, max_value=100_000), jitter=jitters)
def test_transient_failures_never_reject(attempts: int, jitter: float) -> None:
    """An outage of any length: however many attempts failed, the next is a retry at the
    backoff its attempt number calls for, never a rejection (issue: 10 transient failures
    turned every file of a nine-minute outage `rejected`)."""
    for error in (SERVER, errors.Transient("refused", may_have_reached=False, code="ConnectError")):
        decision = decide(error, POLICY, jitter, attempts=attempts)
        assert decision == Decision(
            Action.RETRY, backoff_delay(attempts, POLICY, jitter), error.describe(), transient=True
        )


def test_a_thirty_minute_outage_is_retried_every_five_minutes_at_most() -> None:
    """The retries of an entry through 30 minutes of failures: none rejected, the gaps
    doubling up to the 5-minute cap, so a long outage costs about one call per file per 5 min."""
    elapsed, attempt, gaps = 0.0, 0, []
    while elapsed < 30 * 60:
        attempt += 1
        decision = transient_retry(POLICY, 0.999, "HTTP 503", attempts=attempt)
        assert decision.action is Action.RETRY
        gaps.append(decision.delay_s)
        elapsed += decision.delay_s
    assert max(gaps) <= POLICY.cap_s
    assert attempt < 20


@given(attempt=st.integers(min_value=0, max_value=100_000), jitter=jitters)
def test_backoff_is_equal_jitter_below_the_cap(attempt: int, jitter: float) -> None:
    """A delay is at least half its step and at most the step, which doubles from base_s
    and stops at cap_s, however many attempts an entry that is throttled forever makes."""
    ceiling = min(300, 2 ** max(0, attempt - 1))  # exact integers: no overflow in the model
    delay = backoff_delay(attempt, POLICY, jitter)
    assert ceiling / 2 <= delay <= ceiling
