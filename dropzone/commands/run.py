"""``dropzone run``: the daemon, once or until stopped, and ``--dry-run``'s preview."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from dropzone import heap, runtime
from dropzone.commands.output import print_json
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    import argparse
    from contextlib import AbstractContextManager

    from dropzone.ark.signer import Credentials
    from dropzone.commands.preview import WatchPreview
    from dropzone.config import Settings, WatchRule
    from dropzone.daemon.build import DaemonParts
    from dropzone.sources.ahead import ListedAhead


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        # The command line's loading block left its freeze to this one (dropzone.heap).
        with heap.loading():
            settings = runtime.settings_from(args.config)
            if not args.dry_run:
                parts = stack.enter_context(_daemon_parts(settings, args))
        if args.dry_run:
            return dry_run(settings)
        daemon = parts.daemon

        def stop(_signum: int, _frame: object) -> None:
            daemon.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda _n, _f: daemon.reload_requested.set())
        return daemon.run_once() if args.once else daemon.run()


def _daemon_parts(
    settings: Settings, args: argparse.Namespace
) -> AbstractContextManager[DaemonParts]:
    credentials = runtime.credentials_for(settings)
    # run --once: the ledger first, so that a run it refuses (another run holds the file, the
    # server is down) has sent no request; then the first pages, whose answers the loading of
    # the daemon below (its modules, its parts) overlaps.
    ledger = runtime.open_ledger(settings, daemon=True) if args.once else None
    try:
        listed_ahead = _first_pages_asked(settings, credentials) if args.once else None
        from dropzone.daemon.build import build  # noqa: PLC0415
    except BaseException:
        if ledger is not None:
            ledger.close()
        raise

    return build(
        settings,
        os.environ,
        config=args.config,
        observed=not args.once,
        baseline_anyway=args.baseline_anyway,
        credentials=credentials,
        ledger=ledger,
        listed_ahead=listed_ahead,
    )


def _first_pages_asked(settings: Settings, credentials: Credentials) -> ListedAhead:
    """Each bucket watch's first listing page asked for now, ahead of ``run --once``'s one
    listing (the daemon's own listings come on their interval, and ask as they go)."""
    from dropzone.sources.ahead import ListedAhead  # noqa: PLC0415 - as build: run's alone
    from dropzone.sources.tos import list_arguments  # noqa: PLC0415

    ahead = ListedAhead(runtime.s3_client(settings, credentials))
    for rule in settings.bucket_watches:
        ahead.ask(list_arguments(rule.bucket, rule.prefix))
    return ahead


def dry_run(settings: Settings) -> int:
    """Print what one scan would do; write nothing, call nothing but the listing."""
    from dropzone.commands.preview import watch_previews  # noqa: PLC0415 - --dry-run's alone

    with watch_previews(settings) as preview:
        for rule in settings.watches:
            try:
                planned = _dry_run_watch(rule, preview(rule))
            except SourceError as exc:
                print(f"watch {rule.name}: {exc}", file=sys.stderr)
                return 1
            print(f"watch {rule.name}: {planned} request(s) would be sent", file=sys.stderr)
    return 0


def _dry_run_watch(rule: WatchRule, preview: WatchPreview) -> int:
    from dropzone.commands.preview import Verdict  # noqa: PLC0415

    planned = 0
    for seen in preview.items:
        if not seen.verdict.is_new:
            continue
        obj = seen.obj
        record: dict[str, Any] = {"watch": rule.name, "key": obj.key, "etag": obj.etag}
        record["action"] = seen.verdict.value
        if seen.verdict is Verdict.SUBMIT:
            from dropzone import plan  # noqa: PLC0415 - pydantic's models, --dry-run's alone

            ref = plan.ObjectRef(rule.bucket, obj.key, obj.etag, obj.size)
            record["request"] = plan.plan_request(ref, rule, runtime.utc_now()).wire()
            planned += 1
        print_json(record)
    return planned
