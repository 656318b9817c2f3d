"""What an Ark answer means for the caller, as a small tree sorted by what the caller must do.

::

    ArkError
    ├── Duplicate(existing_job_id)     an outcome, not a failure: the platform's guard named the
    │                                  active job for this input; record the upload against it
    ├── RetryableError                 back off and call again (the ledger persists the schedule)
    │   ├── Throttled                  429 and throttling codes: retry for as long as it takes
    │   └── Transient(may_have_reached)5xx, time-outs, connection errors; when the request may
    │                                  have reached the server, reconcile before calling again
    ├── Rejected(code, message)        any other 4xx: permanent for this request
    └── AuthError(code, skew_s)        the credentials or the clock are wrong: nothing a retry of
                                       this request fixes, and no input is to blame

httpx exceptions are translated into this tree in one place (``client.py``), always chained.
Messages never include credentials; the client builds them only from the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dropzone.ark.models import Job

THROTTLING_CODES = frozenset(
    {
        "FlowLimitExceeded",
        "APIAccountRpmRateLimitExceeded",
        "AccountRateLimitExceeded",
        "QuotaExceeded",
        "Throttling",
        "RequestLimitExceeded",
    }
)
AUTH_CODES = frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidAccessKey",
        "InvalidTimestamp",
        "InvalidAuthorization",
        "InvalidSecurityToken",
        "MissingAuthenticationToken",
        "AuthFailure",
        "AccessDenied",
    }
)


class ArkError(Exception):
    """Base of everything the Ark client raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id

    def describe(self) -> str:
        """One line for logs and the ledger: code, status and message."""
        parts = [self.code or type(self).__name__]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        return f"{' '.join(parts)}: {self.message}"


class Duplicate(ArkError):
    """The guard refused a second job and named the active one; it has been confirmed by Get.

    ``job`` is the confirmed job as Get returned it, so the caller can tell its own earlier
    job (same ``dropzone-input`` tag) from someone else's.
    """

    def __init__(
        self,
        existing_job_id: str,
        message: str,
        *,
        job: Job | None = None,
        code: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.existing_job_id = existing_job_id
        self.job = job


class RetryableError(ArkError):
    """Calling again later may succeed."""


class Throttled(RetryableError):
    """The platform asked us to slow down."""


class Transient(RetryableError):
    """A server fault or a network failure."""

    def __init__(
        self,
        message: str,
        *,
        may_have_reached: bool,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.may_have_reached = may_have_reached


class Rejected(ArkError):
    """The API refused this request for good."""


class AuthError(ArkError):
    """Wrong key, signature or token, or a clock too far off (``skew_s`` when measured)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
        skew_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.skew_s = skew_s


def classify(status: int, code: str, message: str, request_id: str = "") -> ArkError:
    """Map an error answer (status, Code, Message) to the tree, without the guard check.

    The guard is recognised by the caller, which must confirm the named job first.
    """
    if status == 429 or code in THROTTLING_CODES:
        return Throttled(message, code=code, status=status, request_id=request_id)
    if code in AUTH_CODES or status == 401:
        return AuthError(message, code=code, status=status, request_id=request_id)
    if status >= 500:
        return Transient(
            message, may_have_reached=True, code=code, status=status, request_id=request_id
        )
    return Rejected(message, code=code, status=status, request_id=request_id)
