"""Builds the running parts from settings: the one place that reads the environment and the clock.

Everything built here is passed into the pieces that use it (ledger, Ark client, S3 client,
clock), so each piece can be tested with real local stand-ins.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone.ark.client import ArkClient
from dropzone.config import ConfigError, config_path, load_credentials, load_settings
from dropzone.daemon import Daemon, DaemonOptions
from dropzone.jobs.policy import RetryPolicy
from dropzone.jobs.prior import PriorJobs
from dropzone.jobs.submitter import Submitter, Watch
from dropzone.jobs.tracker import Tracker
from dropzone.ledger import SqliteLedger, State
from dropzone.log import register_secrets, use_setting
from dropzone.ops import (
    Heartbeat,
    ListenError,
    OpsServer,
    SystemdNotifier,
    health_probe,
    watchdog_interval_s,
)
from dropzone.ops.events import DaemonOps, ledger_writable
from dropzone.ops.health import ArkStatus
from dropzone.preflight.readers import BucketPreflight, FolderPreflight
from dropzone.sources.tos import TosBucket, make_s3_client
from dropzone.watches.bucket import BucketWatch
from dropzone.watches.first_start import FirstStart, ledger_knows
from dropzone.watches.folder import FolderWatch

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

    from dropzone.ark.client import CallObserver
    from dropzone.ark.signer import Credentials
    from dropzone.config import Settings
    from dropzone.jobs.reachability import Reachability
    from dropzone.jobs.submitter import Preflight
    from dropzone.ops import Metrics

CONTAINER_SECRETS = Path("/run/secrets")


class UsageError(Exception):
    """A configuration or usage problem: the message names the file and the setting."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def config_file(cli_value: str | None) -> Path:
    """The config file a command reads: ``-c FILE``, else $DROPZONE_CONFIG, else the default."""
    return config_path(cli_value, os.environ)


def settings_from(cli_value: str | None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    try:
        settings = load_settings(config_path(cli_value, env), env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    # Here, so that every command and a SIGHUP reload log at the configured level.
    use_setting(settings.daemon.log_level)
    return settings


def credentials_for(settings: Settings, env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    try:
        found = load_credentials(settings.ark, env, (CONTAINER_SECRETS,))
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    if found is None:
        raise UsageError(
            "no Volcengine credentials found: set VOLCENGINE_ACCESS_KEY and "
            "VOLCENGINE_SECRET_KEY (or VOLC_ACCESSKEY / VOLC_SECRETKEY), or [ark] "
            "access_key_file / secret_key_file, or put files access_key and secret_key in "
            f"$CREDENTIALS_DIRECTORY (systemd LoadCredential=) or in {CONTAINER_SECRETS} "
            "(container secrets)"
        )
    creds = found.credentials
    register_secrets([creds.secret_key, creds.session_token])
    return creds


def s3_client(settings: Settings, credentials: Credentials | None) -> S3Client:
    return make_s3_client(
        endpoint=settings.tos.endpoint,
        region=settings.tos.region,
        addressing_style=settings.tos.addressing_style,
        credentials=credentials,
        timeout_s=settings.tos.timeout_s,
        connect_timeout_s=settings.tos.connect_timeout_s,
    )


def ark_client(
    settings: Settings, credentials: Credentials, observer: CallObserver | None = None
) -> ArkClient:
    return ArkClient(
        endpoint=settings.ark.endpoint,
        region=settings.ark.region,
        credentials=credentials,
        timeout_s=settings.ark.timeout_s,
        connect_timeout_s=settings.ark.connect_timeout_s,
        max_requests_per_second=settings.ark.max_requests_per_second,
        observer=observer,
    )


def fan_out(*observers: CallObserver) -> CallObserver:
    """One client observer that tells each of ``observers`` about every call."""

    def observe(action: str, outcome: str, seconds: float, detail: str = "") -> None:
        for observer in observers:
            observer(action, outcome, seconds, detail)

    return observe


def attach_ops(
    daemon: Daemon,
    settings: Settings,
    metrics: Metrics,
    env: Mapping[str, str],
    reachability: Reachability | None = None,
) -> OpsServer | None:
    """Metrics, /healthz and systemd notify for a running daemon; the server if ``listen``."""
    names = [rule.name for rule in settings.watches]
    heartbeat = Heartbeat(watchdog_interval_s=watchdog_interval_s(env), watches=names)
    daemon.ops = DaemonOps(
        metrics=metrics,
        heartbeat=heartbeat,
        notifier=SystemdNotifier(env),
        ledger=daemon.ledger,
        clock=utc_now,
    )
    outage = reachability.outage if reachability is not None else lambda: None

    def seconds_down() -> float:
        current = outage()
        return 0.0 if current is None else (utc_now() - current.since).total_seconds()

    metrics.track_ark_outage(seconds_down)
    if reachability is not None:
        reachability.on_held = metrics.ark_held

    def ark() -> ArkStatus:
        holds = reachability.holds() if reachability is not None else []
        held = tuple(f"ark refuses the account: {h.code}: {h.hint}" for h in holds)
        first_starts = tuple(daemon.first_starts_held.values())
        return ArkStatus(outage=outage(), held=held + first_starts)

    address = settings.daemon.listen_address
    if address is None:
        return None

    def due() -> dict[str, int]:
        return {name: daemon.ledger.counts(name)[State.PENDING] for name in names}

    probe = health_probe(
        heartbeat=heartbeat,
        poll_interval_s=settings.daemon.poll_interval_s,
        started_at=time.time(),
        due=due,
        ledger_writable=ledger_writable(settings.ledger.path, daemon.ledger.displaced),
        ark=ark,
    )
    server = OpsServer(address, metrics, probe)
    try:
        server.start()
    except ListenError as exc:
        raise UsageError(str(exc)) from exc
    return server


def no_ledger(path: Path, config: Path | None = None) -> str:
    """What to say when a command finds no ledger where the config points."""
    setting = "[ledger] path" + (f" of {config}" if config is not None else "")
    return (
        f"no ledger at {path} ({setting}): nothing has run with this config yet, "
        "or it points elsewhere"
    )


def open_ledger(
    settings: Settings, *, readonly: bool = False, daemon: bool = False, create: bool = False
) -> SqliteLedger:
    """The ledger for a daemon (locked: one daemon per ledger) or for a short command.

    Short commands (``retry``, ``backfill``, ``forget``, ``submit``) write beside a running
    daemon: each change is one transaction the ledger's state rules guard, and the daemon's
    workers read the ledger anew at least every second. Only ``submit`` (and the daemon) may
    create a missing ledger; for the others a missing one is a mistaken path.
    """
    path = settings.ledger.path
    if path.is_dir():
        raise UsageError(
            f"[ledger] path {path} is a folder: name a file in it (say {path / 'ledger.sqlite3'})"
        )
    if not (daemon or create) and not path.exists():
        raise UsageError(no_ledger(path))
    try:
        return SqliteLedger.open(path, lock=daemon, readonly=readonly)
    except Exception as exc:
        raise UsageError(str(exc)) from exc


def watches_for(settings: Settings, s3: S3Client) -> dict[str, tuple[Watch, TosBucket]]:
    """Each watch with its bucket; bucket watches look objects up by HEAD before submitting."""
    watches: dict[str, tuple[Watch, TosBucket]] = {}
    for rule in settings.watches:
        bucket = TosBucket(s3, rule.bucket)
        mounted = rule.local_dir is not None and rule.local_mode == "mounted"
        # A mounted file is the object: its watcher already saw it complete, and HEAD through
        # S3 may not even be reachable (the demo has no S3 at all).
        lookup = None if mounted else bucket.head
        preflight: Preflight = (
            BucketPreflight(bucket)
            if rule.local_dir is None
            else FolderPreflight(rule.local_dir, rule.prefix)
        )
        watches[rule.name] = (Watch(rule, lookup, preflight), bucket)
    return watches


def build_submitter(
    settings: Settings,
    *,
    ledger: SqliteLedger,
    api: ArkClient,
    s3: S3Client,
    reachability: Reachability | None = None,
) -> Submitter:
    """The exactly-once protocol for the watches of ``settings`` (``submit`` needs no more)."""
    return Submitter(
        ledger=ledger,
        api=api,
        watches={name: watch for name, (watch, _) in watches_for(settings, s3).items()},
        clock=utc_now,
        policy=RetryPolicy(),
        reachability=reachability,
        prior_jobs=PriorJobs(api=api, upcoming=ledger.upcoming, clock=utc_now),
        # A Create that outlived the client's read time-out may still be carried out: twice
        # that is the wait before "no job listed" counts as "no job made".
        late_create_s=2 * settings.ark.timeout_s,
    )


def build_daemon(
    settings: Settings,
    *,
    ledger: SqliteLedger,
    api: ArkClient,
    s3: S3Client,
    reachability: Reachability | None = None,
    baseline_anyway: bool = False,
) -> Daemon:
    """``baseline_anyway``: a first start baselines what is there even when the platform
    holds the watch's jobs (``run --baseline-anyway``; otherwise it waits for the operator)."""
    submitter = build_submitter(settings, ledger=ledger, api=api, s3=s3, reachability=reachability)
    options = DaemonOptions(
        poll_interval_s=settings.daemon.poll_interval_s,
        concurrency=settings.daemon.concurrency,
        drain_timeout_s=settings.daemon.drain_timeout_s,
        once_max_wait_s=settings.daemon.once_max_wait_s,
        retention_days=settings.ledger.retention_days,
        track_interval_s=settings.daemon.track_interval_s,
    )
    daemon = Daemon(ledger=ledger, pollers=[], submitter=submitter, options=options, clock=utc_now)
    daemon.first_start = FirstStart(api, ledger_knows(ledger), baseline_anyway=baseline_anyway)
    daemon.tracker = Tracker(
        ledger=ledger, api=api, projects={}, clock=utc_now, reachability=reachability
    )
    apply_watches(daemon, settings, ledger=ledger, s3=s3)
    return daemon


def apply_watches(
    daemon: Daemon, settings: Settings, *, ledger: SqliteLedger, s3: S3Client
) -> None:
    """Give the daemon the watches of ``settings``: at start, and again on SIGHUP.

    Folder watches whose rule is unchanged keep running (their settle state and first-scan
    status with them); others are stopped and new ones built. In-flight submissions finish
    with the rules they were claimed under.
    """
    watches = watches_for(settings, s3)
    daemon.pollers = [
        BucketWatch(watch.rule, bucket.pages, ledger, utc_now, daemon.first_start)
        for watch, bucket in watches.values()
        if watch.rule.local_dir is None
    ]
    kept = {folder.rule.name: folder for folder in daemon.folders}
    folders: list[FolderWatch] = []
    for watch, bucket in watches.values():
        if watch.rule.local_dir is None:
            continue
        same = kept.get(watch.rule.name)
        if same is not None and same.rule == watch.rule:
            folders.append(kept.pop(watch.rule.name))
            continue
        folder = FolderWatch(
            rule=watch.rule,
            ledger=ledger,
            bucket=bucket,
            clock=utc_now,
            poll_interval_s=settings.daemon.poll_interval_s,
            on_new=daemon.wake,
            first_start=daemon.first_start,
        )
        folders.append(folder)
    for stale in kept.values():
        stale.stop()
    daemon.folders = folders
    daemon.submitter.replace_watches({name: watch for name, (watch, _) in watches.items()})
    daemon.caps = {
        rule.name: rule.max_active_jobs
        for rule in settings.watches
        if rule.max_active_jobs is not None
    }
    if daemon.tracker is not None:
        daemon.tracker.replace_projects({r.name: r.project_name for r in settings.watches})
