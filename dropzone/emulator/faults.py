"""Faults injected on demand, and what they did.

Which error a request meets is drawn per request (pure, given the dice); Get and List answers
are shown as a fault would show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone.ark.models import Phase
from dropzone.emulator.wire import GET, LIST, ApiError, Json

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime


@dataclass(frozen=True)
class UnknownPhase:
    """Jobs (``job_id``, or every job when None) report ``phase``, a name the API version does
    not document, until ``until`` (the emulator's clock), then go on with their own phase.
    A job that has ended meanwhile shows its end: only phases under way are replaced."""

    phase: str
    until: datetime
    job_id: str | None = None

    def __post_init__(self) -> None:
        if not self.phase or self.phase in {known.value for known in Phase}:
            raise ValueError(f"give a phase name Phase does not know, got {self.phase!r}")


@dataclass(frozen=True)
class Faults:
    """Rates (0 to 1) of injected faults, and latency added to every API request.

    ``slow_create_rate`` of Create requests are held ``slow_create_s`` seconds before they are
    carried out, as by a platform slow to commit: the job appears only then, and the client may
    have given up waiting meanwhile. ``both_model_fields``: Get and List show each job's
    ``ModelReference`` with both fields, the one not given empty, as sibling Ark APIs answer.
    ``unknown_phase``: jobs shown in an undocumented phase for a while.
    """

    fail_rate: float = 0.0
    throttle_rate: float = 0.0
    lose_answer_rate: float = 0.0
    latency_ms: int = 0
    slow_create_rate: float = 0.0
    slow_create_s: float = 0.0
    both_model_fields: bool = False
    unknown_phase: UnknownPhase | None = None

    def __post_init__(self) -> None:
        for name in ("fail_rate", "throttle_rate", "lose_answer_rate", "slow_create_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        for name in ("latency_ms", "slow_create_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")


def fault_for(faults: Faults, draw: Callable[[], float]) -> ApiError | None:
    """The injected error for one request, if any (throttling is drawn first)."""
    if draw() < faults.throttle_rate:
        return ApiError(429, "FlowLimitExceeded", "Request rate exceeded the flow limit.")
    if draw() < faults.fail_rate:
        return ApiError(500, "InternalError", "The service met an internal error.")
    return None


LOST_503 = ApiError(503, "ServiceUnavailableTemp", "The service is temporarily unavailable.")


def as_faults_show(action: str, result: Json, faults: Faults, now: datetime) -> Json:
    """A Get or List Result with the job objects as the answer faults show them."""
    if action == GET:
        return _shown_job(result, faults, now)
    items = result.get("Items")
    if action != LIST or not isinstance(items, list):
        return result
    return {**result, "Items": [_shown_job(item, faults, now) for item in items]}


def _shown_job(job: Json, faults: Faults, now: datetime) -> Json:
    shown = dict(job)
    reference = job.get("ModelReference")
    if faults.both_model_fields and isinstance(reference, dict):
        shown["ModelReference"] = {
            "FoundationModel": {"Name": "", "ModelVersion": ""},
            "CustomModelId": "",
            **reference,
        }
    status, hidden = job.get("Status"), faults.unknown_phase
    if (
        isinstance(status, dict)
        and hidden is not None
        and now < hidden.until
        and hidden.job_id in {None, job.get("Id")}
        and not Phase(str(status["Phase"])).is_terminal
    ):
        shown["Status"] = {**status, "Phase": hidden.phase}
    return shown


@dataclass
class FaultCounts:
    """What the faults did, for the inspection endpoint. Not thread-safe: the engine's lock."""

    lost_answers: int = 0
    slowed_creates: int = 0
    slowed_creates_under_way: int = 0

    def snapshot(self) -> Json:
        return {
            "lost_answers": self.lost_answers,
            "slowed_creates": self.slowed_creates,
            "slowed_creates_under_way": self.slowed_creates_under_way,
        }
