"""What the emulator and its clients agree on: actions, paths, the envelope, error answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

Json = dict[str, object]
SERVICE = "ark"
DEFAULT_REGION = "cn-beijing"
STATE_PATH = "/_emulator/state"


# The platform's guard wording is unpublished; tests vary these to prove dropzone copes.
GUARD_CODE = "OperationDenied.ActiveJobExists"
GUARD_MESSAGE = "A batch inference job with the same input file is already active: {job_id}"
CREATE = "CreateBatchInferenceJob"
GET = "GetBatchInferenceJob"
LIST = "ListBatchInferenceJobs"
STOP = "StopBatchInferenceJob"
SHORT_ACTIONS = {"Create": CREATE, "Get": GET, "List": LIST, "Stop": STOP}


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error answer as the gateway or Ark would send it: HTTP status, Code and Message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def missing(field: str) -> ApiError:
    return ApiError(400, f"MissingParameter.{field}", f"The parameter {field} is required.")


def invalid(field: str, why: str) -> ApiError:
    return ApiError(400, f"InvalidParameter.{field}", f"The parameter {field} is invalid: {why}.")


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


def unknown_action(action: str, version: str) -> ApiError:
    return ApiError(
        404,
        "InvalidActionOrVersion",
        f"Could not find operation {action or '(none)'} for version {version or '(none)'}.",
    )


@dataclass(frozen=True)
class Reply:
    """An answer to send; ``document`` None means close the connection without one."""

    status: int
    document: Json | None


def envelope(meta: Json, result: Json) -> Json:
    return {"ResponseMetadata": meta, "Result": result}


def error_envelope(meta: Json, error: ApiError) -> Json:
    return {"ResponseMetadata": {**meta, "Error": {"Code": error.code, "Message": error.message}}}


def json_body(body: bytes) -> dict[str, object]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "InvalidParameter", "The request body is not valid JSON.") from exc
    if not isinstance(document, dict):
        raise ApiError(400, "InvalidParameter", "The request body must be a JSON object.")
    return document
