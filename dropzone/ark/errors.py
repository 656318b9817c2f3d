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
    └── Held(code, hint)               the account or its setup must change, not the file: hold
        │                              every entry pending (backoff, no count), say what to do
        ├── AuthError(code, skew_s)    the credentials or the clock are wrong
        ├── AccountError(code)         the account cannot do it yet: the service not activated,
        │                              the account overdue, the model not opened
        ├── EndpointError              what answered is not Ark's management API (a 4xx without
        │                              Ark's error envelope): the endpoint setting is wrong
        └── TrustStoreError            the CA certificates to verify Ark by cannot be loaded
                                       (SSL_CERT_FILE or SSL_CERT_DIR): nothing was sent

:data:`KNOWN_CODES` is the table of every code dropzone knows, its branch and, for those that
hold, what the operator must do. A code not in it is sorted by its HTTP status (429 throttled,
401 auth, 5xx transient, other 4xx rejected).

httpx exceptions are translated into this tree in one place (``client.py``), always chained.
Messages never include credentials; the client builds them only from the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone.errors import OperationalError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dropzone.ark.models import Job


class ArkError(OperationalError):
    """Base of everything the Ark client raises: an answer, so a command ran to get it."""

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


class Held(ArkError):
    """Nothing a retry of this request fixes, and no input is to blame: the operator must act
    (``hint`` says how); entries wait ``pending`` meanwhile."""

    event = "ark.account_blocked"  # the log line that tells the operator

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id)
        self.hint = hint


class AuthError(Held):
    """Wrong key, signature or token, or a clock too far off (``skew_s`` when measured)."""

    event = "ark.auth_failed"

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
        skew_s: float | None = None,
        hint: str = "check the access key, the secret key and the system clock",
    ) -> None:
        super().__init__(message, code=code, status=status, request_id=request_id, hint=hint)
        self.skew_s = skew_s


class AccountError(Held):
    """The account may not do this yet: the service is not activated, the account is overdue,
    or the model is not opened for it."""


class EndpointError(Held):
    """The answer is not the management API's (no error envelope): ``[ark] endpoint`` names
    another service, such as the data-plane host, or a proxy."""


class TrustStoreError(Held):
    """The CA certificates the client verifies Ark by could not be loaded, so no request was
    sent. Not the account's fault, but as held: each call tries the certificates again, so a
    bundle put right in place is used without a restart."""

    event = "ark.tls_unusable"


@dataclass(frozen=True)
class KnownCode:
    kind: type[ArkError]
    status: int  # the HTTP status the platform gives it (documented, or seen)
    hint: str = ""  # for Held codes: what the operator must do


_CREDENTIALS = "check the access key and secret key (and the session token, if any)"
_SERVICE = "activate the Ark model service for this account in the Volcengine console"
_OVERDUE = "the account is overdue: settle the account's balance in the Volcengine console"

KNOWN_CODES: Mapping[str, KnownCode] = {
    # Throttling: the gateway's and Ark's own.
    "FlowLimitExceeded": KnownCode(Throttled, 429),
    "APIAccountRpmRateLimitExceeded": KnownCode(Throttled, 429),
    "AccountRateLimitExceeded": KnownCode(Throttled, 429),
    "QuotaExceeded": KnownCode(Throttled, 429),
    "Throttling": KnownCode(Throttled, 429),
    "RequestLimitExceeded": KnownCode(Throttled, 429),
    # Credentials and the clock.
    "SignatureDoesNotMatch": KnownCode(AuthError, 401, "check the secret key"),
    "InvalidAccessKey": KnownCode(AuthError, 401, "check the access key"),
    "InvalidTimestamp": KnownCode(AuthError, 400, "set the system clock right (NTP)"),
    "InvalidAuthorization": KnownCode(AuthError, 401, _CREDENTIALS),
    "InvalidSecurityToken": KnownCode(AuthError, 401, "renew the STS session token"),
    "MissingAuthenticationToken": KnownCode(AuthError, 401, _CREDENTIALS),
    "AuthFailure": KnownCode(AuthError, 401, _CREDENTIALS),
    "InvalidCredential": KnownCode(AuthError, 400, _CREDENTIALS),
    "MissingRequestInfo": KnownCode(AuthError, 400, _CREDENTIALS),
    "AccessDenied": KnownCode(
        AuthError, 403, "give the key's user permission for Ark batch inference (IAM)"
    ),
    # The account: not a file's fault, so never a rejection.
    "OperationDenied.ServiceNotOpen": KnownCode(AccountError, 403, _SERVICE),
    "OperationDenied.ServiceOverdue": KnownCode(AccountError, 403, _OVERDUE),
    "AccountOverdueError": KnownCode(AccountError, 403, _OVERDUE),
    "ModelNotOpen": KnownCode(
        AccountError,
        404,
        "open the watch's model for this account in the Ark console, or fix the watch's model",
    ),
    # The platform's own faults.
    "InternalError": KnownCode(Transient, 500),
    "InternalServiceError": KnownCode(Transient, 502),
    "ServiceUnavailableTemp": KnownCode(Transient, 503),
    "InternalServiceTimeout": KnownCode(Transient, 504),
    # The request: permanent for it (families: InvalidParameter.X, MissingParameter.X, ...).
    "InvalidParameter": KnownCode(Rejected, 400),
    "MissingParameter": KnownCode(Rejected, 400),
    "NotFound": KnownCode(Rejected, 404),
    "OperationDenied.UnsupportedPhase": KnownCode(Rejected, 403),
    "InvalidActionOrVersion": KnownCode(Rejected, 404),
    "Duplicate.Tags.Key": KnownCode(Rejected, 400),
}


def known(code: str) -> KnownCode | None:
    """The table's row for ``code``, or for its family (``InvalidParameter.Name``)."""
    if code in KNOWN_CODES:
        return KNOWN_CODES[code]
    family = code.split(".", 1)[0]
    row = KNOWN_CODES.get(family)
    # Only the request's families: an unknown "OperationDenied.X" says nothing by its name.
    return row if row is not None and row.kind is Rejected else None


def classify(status: int, code: str, message: str, request_id: str = "") -> ArkError:
    """Map an error answer (status, Code, Message) to the tree, without the guard check.

    A known code decides by the table; an unknown one by its status. The guard is recognised
    by the caller, which must confirm the named job first.
    """
    row = known(code)
    kind: type[ArkError]
    if row is not None:
        kind = row.kind
    elif status == 429:
        kind = Throttled
    elif status == 401:
        kind = AuthError
    elif status >= 500:
        kind = Transient
    else:
        kind = Rejected
    if kind is Transient:
        return Transient(
            message, may_have_reached=True, code=code, status=status, request_id=request_id
        )
    if issubclass(kind, Held):
        hint = row.hint if row is not None and row.hint else _CREDENTIALS
        return kind(message, code=code, status=status, request_id=request_id, hint=hint)
    return kind(message, code=code, status=status, request_id=request_id)
