"""What to do after a failed Create call: pure decisions, tested without I/O.

Throttling and other transient failures (5xx, time-outs, connection errors) are retried for as
long as it takes: they say the platform is not answering, not that the file is unusable, and an
outage of any length must never turn the files it delays into ``rejected``. An answer that may
have created a job is reconciled before anything else. A
:class:`~dropzone.ark.errors.Held` answer (credentials, the clock, an account not activated or
overdue, a model not opened) holds the entry: the account must change, not the file. Transient
failures are still counted (``transient_failures``) for ``status``.
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


@dataclass(frozen=True)
class Decision:
    """``transient``: the failure is one more transient failure for the entry's record;
    ``held``: the account's problem, told once for every file, not the file's."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""
    transient: bool = False
    held: bool = False


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
) -> Decision:
    """The next step for an entry whose Create call (attempt number ``attempts``) failed."""
    reason = error.describe()
    if isinstance(error, errors.Throttled):
        return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason)
    if isinstance(error, errors.Held):
        # Not the input's fault (credentials, clock, the account): hold it until the operator
        # acts, backing off towards the cap.
        return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason, held=True)
    if isinstance(error, errors.Transient):
        if error.may_have_reached:
            return Decision(Action.RECONCILE, 0.0, reason)
        return transient_retry(policy, jitter, reason, attempts=attempts)
    return Decision(Action.REJECT, 0.0, reason)


def transient_retry(policy: RetryPolicy, jitter: float, reason: str, *, attempts: int) -> Decision:
    """Retry a transient failure of attempt number ``attempts``, whatever came before.

    The delay grows with the attempts, whatever failed them: an entry just throttled many
    times is not sent again within a second because this failure is its first 5xx. Nothing is
    rejected for transient failures, however many there were.
    """
    return Decision(Action.RETRY, backoff_delay(attempts, policy, jitter), reason, transient=True)
