"""What to do after a failed Create call: pure decisions, tested without I/O.

Throttling is retried for as long as it takes; other transient failures up to a count, then the
entry is rejected; an answer that may have created a job is reconciled before anything else;
credentials and clock problems hold the entry without spending its attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dropzone.ark import errors


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
    action: Action
    delay_s: float = 0.0
    reason: str = ""


def backoff_delay(attempt: int, policy: RetryPolicy, jitter: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped.

    ``jitter`` is a number in [0, 1) from the caller's random source; half of the delay stays
    fixed so that a retry is never immediate, and the random half spreads a crowd of retries.
    """
    ceiling = min(policy.cap_s, policy.base_s * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + jitter * ceiling / 2


def decide(error: errors.ArkError, attempts: int, policy: RetryPolicy, jitter: float) -> Decision:
    """The next step for an entry whose Create call (attempt number ``attempts``) failed."""
    reason = error.describe()
    if isinstance(error, errors.Throttled):
        return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason)
    if isinstance(error, errors.AuthError):
        # Not the input's fault: hold it at the longest interval until the operator acts.
        return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason)
    if isinstance(error, errors.Transient):
        if error.may_have_reached:
            return Decision(Action.RECONCILE, 0.0, reason)
        return transient_retry(attempts, policy, jitter, reason)
    return Decision(Action.REJECT, 0.0, reason)


def transient_retry(attempts: int, policy: RetryPolicy, jitter: float, reason: str) -> Decision:
    """Retry a transient failure, unless the entry has used up its attempts."""
    if attempts >= policy.max_transient_attempts:
        return Decision(Action.REJECT, 0.0, f"gave up after {attempts} attempts: {reason}")
    return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason)
