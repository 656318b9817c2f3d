"""``dropzone emulator``: the emulator's options, and serving until a signal."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from typing import TYPE_CHECKING

from dropzone.ark import errors
from dropzone.emulator.inputs import (
    InputReader,
    folder_reader,
    s3_reader,
)
from dropzone.emulator.options import CATALOGUE, configure_parser
from dropzone.emulator.results import folder_writer, s3_writer
from dropzone.emulator.server import Emulator
from dropzone.errors import ConfigurationError

if TYPE_CHECKING:
    from types import FrameType

    from dropzone.emulator.results import OutputWriter


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


BANNER = (
    "dropzone Ark emulator: a local stand-in for development and trial, "
    "not the real Ark service; listening on {url}"
)


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
        write_output=_output_writer_from(args),
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


def _output_writer_from(args: argparse.Namespace) -> OutputWriter | None:
    """Where the inputs are read, the results are written (as Ark does, in the same store)."""
    if args.inputs_dir is not None:
        return folder_writer(args.inputs_dir)
    if args.inputs_s3 is not None:
        return s3_writer(args.inputs_s3)
    return None


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
