"""``dropzone emulator``: the emulator's options, and serving until a signal."""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone.ark import errors
from dropzone.ark.models import Phase
from dropzone.emulator.inputs import (
    InputReader,
    folder_reader,
    s3_reader,
)
from dropzone.emulator.server import Emulator
from dropzone.emulator.wire import CREATE, DEFAULT_REGION, SHORT_ACTIONS
from dropzone.errors import ConfigurationError

if TYPE_CHECKING:
    from types import FrameType


MAX_PORT = 65535
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


BANNER = (
    "dropzone Ark emulator: a local stand-in for development and trial, "
    "not the real Ark service; listening on {url}"
)


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
    if text in {known.value for known in Phase}:
        raise argparse.ArgumentTypeError(f"{text} is a documented phase; give one it is not")
    return text


def _listen_problem(host: str, port: int, exc: OSError) -> str:
    """What to do when the emulator cannot bind ``host:port``, in the words of its options."""
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} is already in use (another emulator?); stop what uses it "
            "or give another --port (--port 0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: ports below 1024 need privileges; give --port 1024 or above"
    return f"{where}: {exc.strerror or exc}; check --host and --port"


def _env_first(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


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
        "and a missing file fails the job (default: no RequestCounts)",
    )
    inputs.add_argument(
        "--inputs-s3",
        metavar="URL",
        help="read each job's input file from this S3 endpoint (moto, MinIO, TOS) with the "
        "AWS_* credentials of the environment, as --inputs-dir does from a folder",
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


def emulator_from(args: argparse.Namespace) -> Emulator:
    """The emulator the options describe; raises CommandUsageError for options at odds."""
    refusal_status = _refusal_status(args)
    access_key = args.access_key or _env_first("VOLCENGINE_ACCESS_KEY", "VOLC_ACCESSKEY")
    secret_key = args.secret_key or _env_first("VOLCENGINE_SECRET_KEY", "VOLC_SECRETKEY")
    emulator = Emulator(
        access_key or "emulator-ak",
        secret_key or "emulator-sk",
        queue_s=args.queue_s,
        run_s=args.run_s,
        fail_rate=args.fail_rate,
        throttle_rate=args.throttle_rate,
        lose_answer_rate=args.lose_answer_rate,
        latency_ms=args.latency_ms,
        slow_create_rate=args.slow_create_rate,
        slow_create_s=args.slow_create_s,
        seed=args.seed,
        host=args.host,
        port=args.port,
        region=args.region,
        known_models=None if args.any_model else (args.model or CATALOGUE),
        read_input=_input_reader_from(args),
        signature_validity_s=args.signature_validity_s,
    )
    if args.both_model_fields:
        emulator.set_faults(both_model_fields=True)
    if args.unknown_phase:
        emulator.report_unknown_phase(args.unknown_phase, seconds=args.unknown_phase_s)
    if args.refuse is not None and refusal_status is not None:
        emulator.refuse(args.refuse, status=refusal_status, actions=args.refuse_actions)
    return emulator


class CommandUsageError(ConfigurationError):
    """Options that parse one by one but do not go together; the message says what to give."""


def _refusal_status(args: argparse.Namespace) -> int | None:
    """--refuse's status: the option's, else the platform's for a code dropzone knows."""
    if args.refuse is None:
        if args.refuse_status is not None:
            raise CommandUsageError("--refuse-status needs --refuse CODE")
        return None
    if args.refuse_status is not None:
        status: int = args.refuse_status
        return status
    row = errors.known(args.refuse)
    if row is None:
        raise CommandUsageError(
            f"--refuse {args.refuse}: not a code dropzone knows, so its status is unknown; "
            "give it with --refuse-status (say 403)"
        )
    return row.status


def _input_reader_from(args: argparse.Namespace) -> InputReader | None:
    if args.inputs_dir is not None:
        return folder_reader(args.inputs_dir)
    if args.inputs_s3 is not None:
        return s3_reader(args.inputs_s3)
    return None


class _StopServing(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the serving loop."""


def _stop_serving(signum: int, frame: FrameType | None) -> None:
    del frame
    raise _StopServing(signum)


def command(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; prints one line saying what this is and where it listens."""
    try:
        emulator = emulator_from(args)
    except CommandUsageError as exc:
        sys.stderr.write(f"dropzone emulator: {exc}\n")
        return 2
    try:
        emulator.start()
    except OSError as exc:
        sys.stderr.write(f"dropzone emulator: {_listen_problem(args.host, args.port, exc)}\n")
        return 2
    # Python runs signal handlers in the main thread whichever thread the signal reached, so
    # raising from the handler ends the wait below even with other threads running.
    previous = {number: signal.signal(number, _stop_serving) for number in STOP_SIGNALS}
    try:
        sys.stdout.write(BANNER.format(url=emulator.url) + "\n")
        sys.stdout.flush()
        while True:
            signal.pause()
    except _StopServing:
        return 0
    finally:
        emulator.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dropzone.emulator",
        description="A local stand-in for the Ark batch inference API, for development and trial.",
    )
    configure_parser(parser)
    return command(parser.parse_args(argv))
