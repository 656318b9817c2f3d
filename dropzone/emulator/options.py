"""The options of ``dropzone emulator``, kept apart from the server: ``dropzone --help`` (and
every other command) builds its parser from them without importing the emulator itself."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dropzone.emulator.wire import CREATE, DEFAULT_REGION, SHORT_ACTIONS

MAX_PORT = 65535


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 0-{MAX_PORT} (0 picks a free one), got {text}")
    return int(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"seconds are a number, 0 or more, got {text}")
    return value


def _not_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text}")
    return value


def _error_status(text: str) -> int:
    status = int(text)
    if not 400 <= status <= 599:
        raise argparse.ArgumentTypeError(f"an error status is 400..599, got {text}")
    return status


def _actions(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SHORT_ACTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"actions are {', '.join(SHORT_ACTIONS)} (comma-separated), got {text!r}"
        )
    return tuple(SHORT_ACTIONS[name] for name in names)


def _unknown_phase_name(text: str) -> str:
    from dropzone.ark.models import Phase  # noqa: PLC0415 - pydantic only when the option is given

    if text in {known.value for known in Phase}:
        raise argparse.ArgumentTypeError(f"{text} is a documented phase; give one it is not")
    return text


# What `dropzone emulator` offers unless told otherwise: a user's typo in a model name is then
# refused as the platform refuses it, not accepted (the in-process class accepts any name
# unless given ``known_models``, for tests that do not care about models).
CATALOGUE = (
    "doubao-pro-32k",
    "doubao-pro-128k",
    "doubao-lite-32k",
    "doubao-lite-128k",
    "doubao-1-5-pro-32k",
    "deepseek-v3",
    "deepseek-r1",
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (the ``dropzone emulator`` sub-command)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=_port, default=8765, help="port; 0 picks a free one (default: %(default)s)")
    add(
        "--access-key",
        help="the access key to accept (default: $VOLCENGINE_ACCESS_KEY, else $VOLC_ACCESSKEY, "
        "else 'emulator-ak')",
    )
    add(
        "--secret-key",
        help="its secret key (default: $VOLCENGINE_SECRET_KEY, else $VOLC_SECRETKEY, "
        "else 'emulator-sk')",
    )
    add("--region", default=DEFAULT_REGION, help="signing region (default: %(default)s)")
    add("--queue-s", type=_seconds, default=2.0, help="seconds a job stays Queued (default: 2)")
    add("--run-s", type=_seconds, default=10.0, help="seconds a job stays Running (default: 10)")
    add("--fail-rate", type=_rate, default=0.0, help="share of requests answered 500")
    add("--throttle-rate", type=_rate, default=0.0, help="share of requests answered 429")
    add(
        "--lose-answer-rate",
        type=_rate,
        default=0.0,
        help="share of Creates whose job is made but whose answer is lost (503 or a dropped "
        "connection)",
    )
    add("--latency-ms", type=_not_negative_int, default=0, help="delay added to every API request")
    add(
        "--slow-create-rate",
        type=_rate,
        default=0.0,
        help="share of Creates carried out late (the job appears only after --slow-create-s)",
    )
    add(
        "--slow-create-s",
        type=_seconds,
        default=0.0,
        help="how long such a Create is held before it is carried out (default: 0)",
    )
    add(
        "--both-model-fields",
        action="store_true",
        help="show each job's ModelReference with both FoundationModel and CustomModelId, the "
        "one not given empty, as sibling Ark APIs answer",
    )
    add(
        "--unknown-phase",
        type=_unknown_phase_name,
        metavar="NAME",
        help="show every job still under way in this undocumented phase (e.g. Pausing) for "
        "--unknown-phase-s seconds from the start",
    )
    add(
        "--unknown-phase-s",
        type=_seconds,
        default=60.0,
        help="how long jobs show --unknown-phase (default: %(default)s)",
    )
    add(
        "--model",
        action="append",
        metavar="NAME",
        help="a foundation model to offer (repeatable); a Create for another is refused as the "
        f"platform refuses it (default: {', '.join(CATALOGUE)})",
    )
    add("--any-model", action="store_true", help="accept any foundation model name")
    add(
        "--signature-validity-s",
        type=_seconds,
        default=900.0,
        help="how long a signed request is accepted, its X-Date this far from the emulator's "
        "clock at most (default: Ark's %(default)s)",
    )
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument(
        "--inputs-dir",
        type=Path,
        metavar="DIR",
        help="read each job's input file at DIR/<bucket>/<key>: RequestCounts counts its lines "
        "and a missing file fails the job; a completed job's answers are written there too, "
        "at <OutputDir><job id>/output/results.jsonl (default: no RequestCounts, no results)",
    )
    inputs.add_argument(
        "--inputs-s3",
        metavar="URL",
        help="read each job's input file from this S3 endpoint (moto, MinIO, TOS) with the "
        "AWS_* credentials of the environment, and put its results there, as --inputs-dir "
        "does in a folder",
    )
    add(
        "--refuse",
        metavar="CODE",
        help="answer every call of --refuse-actions with this error code, as the platform "
        "answers an account it refuses (e.g. OperationDenied.ServiceNotOpen); a code dropzone "
        "knows gets the platform's status for it, another needs --refuse-status",
    )
    add("--refuse-status", type=_error_status, metavar="N", help="the status --refuse answers at")
    add(
        "--refuse-actions",
        type=_actions,
        default=(CREATE,),
        metavar="A,B",
        help=f"which actions --refuse answers, of {', '.join(SHORT_ACTIONS)} (default: Create)",
    )
    add("--seed", type=int, default=None, help="seed for faults and job IDs (reproducible runs)")
