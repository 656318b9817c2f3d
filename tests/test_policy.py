"""Retry decisions after a failed Create call: pure values in, a decision out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropzone.ark import errors
from dropzone.policy import Action, Decision, RetryPolicy, backoff_delay, decide, transient_retry

POLICY = RetryPolicy(base_s=1.0, cap_s=300.0, max_transient_attempts=3)

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
    decision = decide(error, POLICY, 0.5, attempts=1, transient_failures=0)
    assert (decision.action, decision.transient) == (action, transient)
    assert decision.reason == error.describe()


@given(attempts=counts, transient_failures=counts, jitter=jitters)
def test_throttling_and_auth_never_reject_nor_count(
    attempts: int, transient_failures: int, jitter: float
) -> None:
    """However many attempts and transient failures an entry has, a throttled or unauthorised
    attempt is retried and is not recorded as a transient failure."""
    for error in (THROTTLED, AUTH):
        decision = decide(
            error, POLICY, jitter, attempts=attempts, transient_failures=transient_failures
        )
        assert (decision.action, decision.transient) == (Action.RETRY, False)


@given(attempts=counts, transient_failures=counts, jitter=jitters)
def test_a_server_error_is_a_transient_retry(
    attempts: int, transient_failures: int, jitter: float
) -> None:
    """A 5xx without doubt about its outcome is decided by transient_retry, with both counts."""
    decision = decide(
        SERVER, POLICY, jitter, attempts=attempts, transient_failures=transient_failures
    )
    assert decision == transient_retry(
        POLICY,
        jitter,
        SERVER.describe(),
        attempts=attempts,
        transient_failures=transient_failures,
    )


def test_a_long_throttled_entry_still_retries_its_first_server_error() -> None:
    """The reported defect: an entry throttled many times is not rejected on its first 5xx;
    it waits as long as its fiftieth claim calls for (the cap), not a first step."""
    decision = decide(SERVER, POLICY, 0.0, attempts=50, transient_failures=0)
    assert decision == Decision(Action.RETRY, 150.0, SERVER.describe(), transient=True)


@given(attempts=counts, jitter=jitters)
def test_the_budget_is_spent_by_transient_failures_only(attempts: int, jitter: float) -> None:
    """Whatever the number of claims, the entry is retried up to its budget of transient
    failures and rejected at it; the number of claims sets only the delay."""
    decisions = [
        transient_retry(POLICY, jitter, "x", attempts=attempts, transient_failures=earlier)
        for earlier in range(POLICY.max_transient_attempts)
    ]
    assert [d.action for d in decisions] == [Action.RETRY, Action.RETRY, Action.REJECT]
    assert all(d.transient for d in decisions)
    assert {d.delay_s for d in decisions[:-1]} == {backoff_delay(attempts, POLICY, jitter)}


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        (0, Decision(Action.RETRY, 4.0, "HTTP 503", transient=True)),
        (1, Decision(Action.RETRY, 4.0, "HTTP 503", transient=True)),
        (
            2,
            Decision(
                Action.REJECT, 0.0, "gave up after 3 transient failures: HTTP 503", transient=True
            ),
        ),
        (
            7,
            Decision(
                Action.REJECT, 0.0, "gave up after 8 transient failures: HTTP 503", transient=True
            ),
        ),
    ],
)
def test_transient_budget_rejects_at_the_configured_count(earlier: int, expected: Decision) -> None:
    """max_transient_attempts transient failures reject the entry, the last one included;
    the message tells how many transient failures there were, not how many claims."""
    decision = transient_retry(POLICY, 0.0, "HTTP 503", attempts=4, transient_failures=earlier)
    assert decision == expected


def test_a_budget_of_one_rejects_the_first_transient_failure() -> None:
    """With max_transient_attempts = 1 the first transient failure is the last, in the
    singular."""
    one = RetryPolicy(max_transient_attempts=1)
    decision = transient_retry(one, 0.0, "timed out", attempts=3, transient_failures=0)
    assert (decision.action, decision.reason) == (
        Action.REJECT,
        "gave up after 1 transient failure: timed out",
    )


@given(attempt=st.integers(min_value=0, max_value=100_000), jitter=jitters)
def test_backoff_is_equal_jitter_below_the_cap(attempt: int, jitter: float) -> None:
    """A delay is at least half its step and at most the step, which doubles from base_s
    and stops at cap_s, however many attempts an entry that is throttled forever makes."""
    ceiling = min(300, 2 ** max(0, attempt - 1))  # exact integers: no overflow in the model
    delay = backoff_delay(attempt, POLICY, jitter)
    assert ceiling / 2 <= delay <= ceiling
