"""What to do after a failed Create call: pure decisions, tested without I/O.

Throttling is retried for as long as it takes; other transient failures up to a count, then the
entry is rejected; an answer that may have created a job is reconciled before anything else;
credentials and clock problems hold the entry. Only transient failures count towards
``max_transient_attempts``: an entry's claims (``attempts``) also include throttled and
unauthorised ones, which say nothing about whether the input can ever be submitted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum

from dropzone.ark import errors

# Throttling is retried forever, so its attempt count has no bound: past this many doublings
# 2.0 ** n raises OverflowError, and the cap was reached long before.
_MAX_DOUBLINGS = sys.float_info.max_exp - 1


class Action(StrEnum):
    RETRY = "retry"
    RECONCILE = "reconcile"
    REJECT = "reject"


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    max_transient_attempts: int = 10


@dataclass(frozen=True)
class Decision:
    """``transient``: the failure is one more transient failure for the entry's record."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""
    transient: bool = False


def backoff_delay(attempt: int, policy: RetryPolicy, jitter: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped.

    ``jitter`` is a number in [0, 1) from the caller's random source; half of the delay stays
    fixed so that a retry is never immediate, and the random half spreads a crowd of retries.
    """
    doublings = min(max(0, attempt - 1), _MAX_DOUBLINGS)
    ceiling = min(policy.cap_s, policy.base_s * 2.0**doublings)
    return ceiling / 2 + jitter * ceiling / 2


def decide(
    error: errors.ArkError,
    policy: RetryPolicy,
    jitter: float,
    *,
    attempts: int,
    transient_failures: int,
) -> Decision:
    """The next step for an entry whose Create call (attempt number ``attempts``) failed,
    after ``transient_failures`` transient failures of its earlier attempts."""
    reason = error.describe()
    if isinstance(error, errors.Throttled):
        return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason)
    if isinstance(error, errors.AuthError):
        # Not the input's fault: hold it at the longest interval until the operator acts.
        return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason)
    if isinstance(error, errors.Transient):
        if error.may_have_reached:
            return Decision(Action.RECONCILE, 0.0, reason)
        return transient_retry(
            policy, jitter, reason, attempts=attempts, transient_failures=transient_failures
        )
    return Decision(Action.REJECT, 0.0, reason)


def transient_retry(
    policy: RetryPolicy, jitter: float, reason: str, *, attempts: int, transient_failures: int
) -> Decision:
    """Retry a transient failure of attempt number ``attempts``, the entry's next after
    ``transient_failures`` earlier ones, unless this one uses up its budget.

    The delay grows with the attempts, whatever failed them: an entry just throttled many
    times is not sent again within a second because this failure is its first 5xx.
    """
    failures = transient_failures + 1
    if failures >= policy.max_transient_attempts:
        noun = "failure" if failures == 1 else "failures"
        why = f"gave up after {failures} transient {noun}: {reason}"
        return Decision(Action.REJECT, 0.0, why, transient=True)
    return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason, transient=True)
