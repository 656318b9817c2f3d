"""The sub-commands behind ``dropzone``: each takes parsed arguments and returns an exit code."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropzone import checks, plan, runtime, status_view
from dropzone.config_text import config_text
from dropzone.jobs.reachability import Reachability
from dropzone.ledger import State
from dropzone.log import get_logger
from dropzone.ops import Metrics
from dropzone.runtime import UsageError
from dropzone.sources.base import SourceError
from dropzone.sources.tos import TosBucket
from dropzone.watches.bucket import eligible, start_state

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Sequence
    from typing import TextIO

    from mypy_boto3_s3 import S3Client

    from dropzone.ark.signer import Credentials
    from dropzone.config import Settings, WatchRule
    from dropzone.daemon import Daemon
    from dropzone.ledger import Entry, SqliteLedger

__all__ = ["UsageError"]


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _print_json(document: object) -> None:
    print(json.dumps(document, ensure_ascii=False, default=_json_default), flush=True)


# --- run -----------------------------------------------------------------------------------


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


def _known_etags(ledger: SqliteLedger | None, rule: WatchRule, key: str) -> set[str]:
    if ledger is None:
        return set()
    return {entry.etag for entry in ledger.find(rule.name, rule.bucket, key)}


def _dry_run_watch(rule: WatchRule, bucket: TosBucket, ledger: SqliteLedger | None) -> int:
    first_listing = ledger is None or not ledger.baseline_done(rule.name)
    action = start_state(rule, first_listing=first_listing)
    planned = 0
    is_candidate = plan.candidate_filter(rule)
    for page in bucket.pages(rule.prefix):
        for obj in page.objects:
            if not is_candidate(obj.key) or obj.etag in _known_etags(ledger, rule, obj.key):
                continue
            ready = eligible(obj, page.server_time, rule.min_age_s)
            record: dict[str, Any] = {"watch": rule.name, "key": obj.key, "etag": obj.etag}
            if not ready:
                record["action"] = "wait (younger than min_age_s)"
            elif action is State.BASELINE:
                record["action"] = "baseline (on_start = skip-existing)"
            else:
                record["action"] = "submit"
                ref = plan.ObjectRef(rule.bucket, obj.key, obj.etag, obj.size)
                record["request"] = plan.plan_request(ref, rule, runtime.utc_now()).wire()
                planned += 1
            _print_json(record)
    return planned


def dry_run(settings: Settings) -> int:
    """Print what one scan would do; write nothing, call nothing but the listing."""
    credentials = runtime.credentials_for(settings)
    s3 = runtime.s3_client(settings, credentials)
    ledger = runtime.open_ledger(settings, readonly=True) if settings.ledger.path.exists() else None
    try:
        for rule in settings.watches:
            try:
                planned = _dry_run_watch(rule, TosBucket(s3, rule.bucket), ledger)
            except SourceError as exc:
                print(f"watch {rule.name}: {exc}", file=sys.stderr)
                return 1
            print(f"watch {rule.name}: {planned} request(s) would be sent", file=sys.stderr)
    finally:
        if ledger is not None:
            ledger.close()
    return 0


# --- the ledger ----------------------------------------------------------------------------


def entry_record(entry: Entry) -> dict[str, object]:
    return {
        "watch": entry.watch,
        "bucket": entry.bucket,
        "key": entry.key,
        "etag": entry.etag,
        "size": entry.size,
        "state": str(entry.state),
        "job_id": entry.job_id,
        "phase": entry.phase,
        "attempts": entry.attempts,
        "transient_failures": entry.transient_failures,
        "error": entry.error,
        "output_dir": entry.output_dir,
        "request_counts": dataclasses.asdict(entry.request_counts)
        if entry.request_counts
        else None,
        "next_attempt_at": entry.next_attempt_at,
        "first_seen_at": entry.first_seen_at,
        "updated_at": entry.updated_at,
        "gone_since": entry.gone_since,
        "awaits_job": entry.awaits_job,
    }


def _state_option(value: str | None) -> State | None:
    if value is None:
        return None
    try:
        return State(value)
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise UsageError(f"--state {value!r} is not a state; states: {names}") from None


def status(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    state = _state_option(args.state)
    _status_watch(settings, args.watch)
    if not settings.ledger.path.exists():
        print(
            runtime.no_ledger(settings.ledger.path, runtime.config_file(args.config)),
            file=sys.stderr,
        )
        return 1
    ledger = runtime.open_ledger(settings, readonly=True)
    try:
        if not args.json and sys.stdout.isatty():
            entries = list(ledger.entries(state=state, watch=args.watch))
            columns = shutil.get_terminal_size().columns
            print("\n".join(status_view.table(entries, runtime.utc_now(), columns)))
            return 0
        for entry in ledger.entries(state=state, watch=args.watch):
            if args.json:
                _print_json(entry_record(entry))
            else:
                job = entry.job_id or "-"
                phase = entry.phase or "-"
                line = f"{entry.watch}\t{entry.state}\t{job}\t{phase}\ttos://{entry.bucket}/{entry.key}"
                print(f"{line}\t{entry.error}" if entry.error else line)
    finally:
        ledger.close()
    return 0


def _status_watch(settings: Settings, name: str | None) -> None:
    """Refuse a --watch that names nothing: neither a configured watch nor, for one since
    removed from the config, any entry in the ledger."""
    configured = [rule.name for rule in settings.watches]
    if name is None or name in configured:
        return
    if settings.ledger.path.exists():
        ledger = runtime.open_ledger(settings, readonly=True)
        try:
            removed = next(iter(ledger.entries(watch=name)), None) is not None
        finally:
            ledger.close()
        if removed:
            print(f"watch {name!r} is not in the configuration; its entries:", file=sys.stderr)
            return
    raise UsageError(
        f"--watch {name!r}: no such watch, and none of its entries in the ledger; "
        f"the configured watches: {', '.join(configured)}"
    )


def _single_watch(settings: Settings, name: str | None) -> WatchRule | None:
    if name is None:
        return None
    for rule in settings.watches:
        if rule.name == name:
            return rule
    raise UsageError(f"--watch {name!r}: no such watch in the configuration")


def backfill(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    rule = _single_watch(settings, args.watch)
    ledger = runtime.open_ledger(settings)
    now = runtime.utc_now()
    try:
        moved = ledger.backfill(rule.name if rule else None, now)
        opened = [r.name for r in ([rule] if rule else settings.watches) if _open_first(ledger, r)]
    finally:
        ledger.close()
    print(f"{moved} baseline entr{'y' if moved == 1 else 'ies'} -> pending")
    for name in opened:
        print(
            f"watch {name}: its first start submits what is there (a file Ark already has a job "
            "for is adopted, not submitted again)"
        )
    return 0


def _open_first(ledger: SqliteLedger, rule: WatchRule) -> bool:
    """Let a watch whose first listing has not completed submit what it finds instead of
    baselining it (a first start held because Ark holds the watch's jobs waits for this)."""
    if ledger.baseline_done(rule.name):
        return False
    ledger.begin_watch(rule.name, rule.bucket, rule.prefix, runtime.utc_now())
    ledger.mark_baseline_done(rule.name)
    return True


def retry(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    # A duplicate of the same version is an outcome, so only a duplicate named by its key (or
    # asked for with --state) goes back: once the job it names has ended, it gets its own.
    default = ["rejected", "invalid", "duplicate"] if args.keys else ["rejected", "invalid"]
    states = {State(s) for s in (args.state or default)}
    ledger = runtime.open_ledger(settings)
    try:
        moved = ledger.retry(states, set(args.keys) or None, runtime.utc_now())
    finally:
        ledger.close()
    print(f"{moved} entr{'y' if moved == 1 else 'ies'} -> pending")
    return 0


def forget(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    rule = _single_watch(settings, args.watch)
    ledger = runtime.open_ledger(settings)
    watch = rule.name if rule else None
    try:
        removed = ledger.forget(watch, set(args.keys))
        in_flight = sorted(
            {e.key for e in ledger.in_state(State.SUBMITTING, watch) if e.key in args.keys}
        )
    finally:
        ledger.close()
    print(f"{removed} entr{'y' if removed == 1 else 'ies'} forgotten")
    if in_flight:
        print(
            f"kept, being submitted (their outcome is not known yet): {', '.join(in_flight)}; "
            "forget them once `dropzone status` shows it",
            file=sys.stderr,
        )
        return 1
    return 0


def parse_tos_url(url: str) -> tuple[str, str]:
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "tos" or not bucket or not key:
        raise UsageError(f"{url!r} is not tos://BUCKET/KEY")
    return bucket, key


def _watch_for(settings: Settings, name: str | None, bucket: str, key: str) -> WatchRule:
    chosen = _single_watch(settings, name)
    if chosen is not None:
        if chosen.bucket != bucket:
            raise UsageError(
                f"watch {chosen.name!r} watches bucket {chosen.bucket!r}, not {bucket!r}"
            )
        return chosen
    matching = [r for r in settings.watches if r.bucket == bucket and key.startswith(r.prefix)]
    if not matching:
        covered = ", ".join(f"tos://{r.bucket}/{r.prefix} ({r.name})" for r in settings.watches)
        raise UsageError(f"tos://{bucket}/{key}: no watch covers it; the watches cover {covered}")
    if len(matching) > 1:
        names = ", ".join(r.name for r in matching)
        raise UsageError(
            f"tos://{bucket}/{key}: {len(matching)} watches match ({names}); "
            "choose one with --watch"
        )
    return matching[0]


def submit(args: argparse.Namespace) -> int:
    """Record one object as pending and submit it now, with the same protocol as the daemon."""
    settings = runtime.settings_from(args.config)
    bucket_name, key = parse_tos_url(args.url)
    rule = _watch_for(settings, args.watch, bucket_name, key)
    credentials = runtime.credentials_for(settings)
    bucket = TosBucket(runtime.s3_client(settings, credentials), bucket_name)
    try:
        stored = bucket.head(key)
    except SourceError as exc:
        raise UsageError(str(exc)) from exc
    if stored is None:
        print(f"tos://{bucket_name}/{key}: no such object", file=sys.stderr)
        return 1
    ledger = runtime.open_ledger(settings, create=True)
    api = runtime.ark_client(settings, credentials)
    try:
        now = runtime.utc_now()
        entry, created = ledger.add_object(
            rule.name, bucket_name, key, stored.etag, stored.size, State.PENDING, now
        )
        if not created and entry.state is not State.PENDING:
            _print_json(entry_record(entry))
            print("already in the ledger; use `dropzone retry` or `forget` first", file=sys.stderr)
            return 1
        daemon = runtime.build_daemon(settings, ledger=ledger, api=api, s3=bucket.s3)
        claimed = ledger.claim_one(entry.id, now)
        if claimed is None:
            print("the entry is being submitted by a running daemon", file=sys.stderr)
            return 1
        final = daemon.submitter.submit(claimed)
        recorded = ledger.get(entry.id)
        _print_json(entry_record(recorded))
    finally:
        api.close()
        ledger.close()
    if final in {State.PENDING, State.SUBMITTING}:
        print(
            f"not submitted yet ({recorded.error or final}); the entry is {final} and the "
            "daemon, or `dropzone run --once`, will go on with it",
            file=sys.stderr,
        )
    return 0 if final in {State.SUBMITTED, State.DUPLICATE} else 1


# --- check ---------------------------------------------------------------------------------


def _trial_listing(rule: WatchRule, bucket: TosBucket, ledger: SqliteLedger | None) -> str:
    objects = matching = new = 0
    is_candidate = plan.candidate_filter(rule)
    for page in bucket.pages(rule.prefix):
        for obj in page.objects:
            objects += 1
            if is_candidate(obj.key):
                matching += 1
                new += obj.etag not in _known_etags(ledger, rule, obj.key)
    first_listing = ledger is None or not ledger.baseline_done(rule.name)
    becomes_baseline = start_state(rule, first_listing=first_listing) is State.BASELINE
    baseline = " (would be recorded as baseline on first start)" if new and becomes_baseline else ""
    return f"{objects} objects, {matching} match, {new} new{baseline}"


def _credential_findings(settings: Settings) -> tuple[Credentials | None, checks.Finding]:
    try:
        credentials = runtime.credentials_for(settings)
    except UsageError as exc:
        return None, checks.Finding("credentials", ok=False, detail=str(exc))
    shown = f"access key {credentials.access_key[:6]}..."
    return credentials, checks.Finding("credentials", ok=True, detail=f"found ({shown})")


def _local_findings(settings: Settings) -> Iterator[checks.Finding]:
    yield checks.ledger_finding(settings.ledger.path)
    for rule in settings.watches:
        yield from checks.folder_findings(rule)


def _remote_findings(settings: Settings, credentials: Credentials) -> Iterator[checks.Finding]:
    with runtime.ark_client(settings, credentials) as api:
        projects = [rule.project_name for rule in settings.watches]
        yield from checks.ark_findings(api, settings.ark.endpoint, projects)
    s3 = runtime.s3_client(settings, credentials)
    for rule in settings.watches:
        # A mounted folder is the bucket itself: the daemon never reaches it over S3.
        if rule.local_dir is None or rule.local_mode != "mounted":
            yield from checks.bucket_findings(rule, TosBucket(s3, rule.bucket), settings.tos.region)


def _findings(settings: Settings, *, offline: bool) -> Iterator[checks.Finding]:
    credentials, found = _credential_findings(settings)
    yield found
    yield from _local_findings(settings)
    if offline:
        return
    if credentials is None:
        yield checks.Finding("ark and tos", ok=False, detail="not contacted: no credentials")
        return
    yield from _remote_findings(settings, credentials)


def _show_config(settings: Settings, *, as_json: bool) -> None:
    if as_json or not sys.stdout.isatty():
        _print_json(settings.redacted())
        return
    print(config_text(settings.redacted()), end="", flush=True)


def check(args: argparse.Namespace) -> int:
    """Contact everything the daemon will use (``--offline``: only what is on this machine)."""
    settings = runtime.settings_from(args.config)
    _show_config(settings, as_json=args.json)
    print(f"config {runtime.config_file(args.config)}: ok", file=sys.stderr)
    ok = True
    for finding in _findings(settings, offline=args.offline):
        print(finding.line(), file=sys.stderr, flush=True)
        ok = ok and finding.ok
    if args.list and ok:
        ok = _check_listings(settings)
    return 0 if ok else 1


def _check_listings(settings: Settings) -> bool:
    credentials = runtime.credentials_for(settings)
    s3 = runtime.s3_client(settings, credentials)
    path = settings.ledger.path
    ledger = runtime.open_ledger(settings, readonly=True) if path.exists() else None
    ok = True
    try:
        for rule in settings.watches:
            try:
                summary = _trial_listing(rule, TosBucket(s3, rule.bucket), ledger)
            except SourceError as exc:
                summary, ok = f"FAILED: {exc}", False
            print(
                f"watch {rule.name}: tos://{rule.bucket}/{rule.prefix}: {summary}", file=sys.stderr
            )
    finally:
        if ledger is not None:
            ledger.close()
    return ok


# --- files ---------------------------------------------------------------------------------


def validate(args: argparse.Namespace) -> int:
    return validate_files(args.files, sys.stdout)


def validate_files(paths: Sequence[str], out: TextIO) -> int:
    """``dropzone validate FILE...``: 0 when every file is valid, 1 otherwise."""
    # Imported here: keeps `dropzone run` start-up lean.
    from dropzone.preflight.jsonl import validate_path  # noqa: PLC0415
    from dropzone.preflight.report import count_text  # noqa: PLC0415

    all_valid = True
    for name in paths:
        report = validate_path(Path(name))
        if report.valid:
            print(f"{name}: valid ({count_text(report.lines, 'line')})", file=out)
            continue
        all_valid = False
        print(f"{name}: invalid", file=out)
        for problem in report.problems:
            print(f"  {problem}", file=out)
        if report.total_problems > len(report.problems):
            print(f"  ... and {report.total_problems - len(report.problems)} more", file=out)
    return 0 if all_valid else 1
