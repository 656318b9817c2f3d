"""``dropzone run``: the daemon, once or until stopped, and ``--dry-run``'s preview."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from dropzone import plan, runtime
from dropzone.commands.output import print_json
from dropzone.commands.preview import Verdict, WatchPreview, watch_previews
from dropzone.jobs.reachability import Reachability
from dropzone.log import get_logger
from dropzone.ops import Metrics
from dropzone.runtime import UsageError
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    import argparse

    from mypy_boto3_s3 import S3Client

    from dropzone.config import Settings, WatchRule
    from dropzone.daemon import Daemon
    from dropzone.ledger import SqliteLedger


def run(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    if args.dry_run:
        return dry_run(settings)
    credentials = runtime.credentials_for(settings)
    ledger = runtime.open_ledger(settings, daemon=True)
    metrics = Metrics([rule.name for rule in settings.watches])
    reachability = Reachability(runtime.utc_now)
    observer = runtime.fan_out(metrics.api_call, reachability.observe)
    api = runtime.ark_client(settings, credentials, observer=observer)
    server = None
    try:
        s3 = runtime.s3_client(settings, credentials)
        daemon = runtime.build_daemon(
            settings,
            ledger=ledger,
            api=api,
            s3=s3,
            reachability=reachability,
            baseline_anyway=args.baseline_anyway,
        )
        daemon.reload_hook = lambda: _reload(args.config, settings, daemon, ledger, s3)
        if not args.once:
            server = runtime.attach_ops(daemon, settings, metrics, os.environ, reachability)

        def stop(_signum: int, _frame: object) -> None:
            daemon.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda _n, _f: daemon.reload_requested.set())
        return daemon.run_once() if args.once else daemon.run()
    finally:
        if server is not None:
            server.stop()
        api.close()
        ledger.close()


def _reload(
    config: str | None,
    running: Settings,
    daemon: Daemon,
    ledger: SqliteLedger,
    s3: S3Client,
) -> None:
    """Re-read the config; a bad one is refused with one clear line and the old one kept."""
    logger = get_logger()
    try:
        fresh = runtime.settings_from(config)
    except UsageError as exc:
        logger.error(  # noqa: TRY400 - a bad config is not a bug: its message says it all
            "config.reload_refused", error=str(exc), note="the previous config stays"
        )
        return
    restart_only = [
        section
        for section in ("ark", "tos", "ledger", "daemon")
        if getattr(fresh, section) != getattr(running, section)
    ]
    runtime.apply_watches(daemon, fresh, ledger=ledger, s3=s3)
    logger.info(
        "config.reloaded",
        watches=[rule.name for rule in fresh.watches],
        needs_restart=restart_only or None,
    )


def dry_run(settings: Settings) -> int:
    """Print what one scan would do; write nothing, call nothing but the listing."""
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
    planned = 0
    for seen in preview.items:
        if not seen.verdict.is_new:
            continue
        obj = seen.obj
        record: dict[str, Any] = {"watch": rule.name, "key": obj.key, "etag": obj.etag}
        record["action"] = seen.verdict.value
        if seen.verdict is Verdict.SUBMIT:
            ref = plan.ObjectRef(rule.bucket, obj.key, obj.etag, obj.size)
            record["request"] = plan.plan_request(ref, rule, runtime.utc_now()).wire()
            planned += 1
        print_json(record)
    return planned
