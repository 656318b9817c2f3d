"""``dropzone run``: the daemon, once or until stopped, and ``--dry-run``'s preview."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from dropzone import plan, runtime
from dropzone.commands.output import print_json
from dropzone.daemon.build import build
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    import argparse

    from dropzone.commands.preview import WatchPreview
    from dropzone.config import Settings, WatchRule


def run(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    if args.dry_run:
        return dry_run(settings)
    with build(
        settings,
        os.environ,
        config=args.config,
        observed=not args.once,
        baseline_anyway=args.baseline_anyway,
    ) as parts:
        daemon = parts.daemon

        def stop(_signum: int, _frame: object) -> None:
            daemon.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda _n, _f: daemon.reload_requested.set())
        return daemon.run_once() if args.once else daemon.run()


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
            ref = plan.ObjectRef(rule.bucket, obj.key, obj.etag, obj.size)
            record["request"] = plan.plan_request(ref, rule, runtime.utc_now()).wire()
            planned += 1
        print_json(record)
    return planned
