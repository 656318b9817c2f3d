"""Builds the running parts from settings: the one place that reads the environment and the clock.

Everything built here is passed into the pieces that use it (ledger, Ark client, S3 client,
clock), so each piece can be tested with real local stand-ins.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone.ark.client import ArkClient
from dropzone.config import ConfigError, config_path, load_credentials, load_settings
from dropzone.daemon import Daemon, DaemonOptions
from dropzone.folder import FolderWatch
from dropzone.ledger import SqliteLedger
from dropzone.log import register_secrets
from dropzone.policy import RetryPolicy
from dropzone.scan import WatchPoller
from dropzone.sources.tos import TosBucket, make_s3_client
from dropzone.submitter import Submitter, Watch
from dropzone.tracker import Tracker

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

    from dropzone.ark.signer import Credentials
    from dropzone.config import Settings

CONTAINER_SECRETS = Path("/run/secrets")


class UsageError(Exception):
    """A configuration or usage problem: the message names the file and the setting."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def settings_from(cli_value: str | None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    try:
        return load_settings(config_path(cli_value, env), env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


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
            "access_key_file / secret_key_file, or systemd credentials access_key / secret_key"
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
        timeout_s=settings.ark.timeout_s,
    )


def ark_client(settings: Settings, credentials: Credentials) -> ArkClient:
    return ArkClient(
        endpoint=settings.ark.endpoint,
        region=settings.ark.region,
        credentials=credentials,
        timeout_s=settings.ark.timeout_s,
        connect_timeout_s=settings.ark.connect_timeout_s,
        max_requests_per_second=settings.ark.max_requests_per_second,
    )


def open_ledger(settings: Settings, *, readonly: bool = False) -> SqliteLedger:
    try:
        return SqliteLedger.open(settings.ledger.path, lock=not readonly, readonly=readonly)
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
        watches[rule.name] = (Watch(rule, None if mounted else bucket.head), bucket)
    return watches


def build_daemon(
    settings: Settings, *, ledger: SqliteLedger, api: ArkClient, s3: S3Client
) -> Daemon:
    watches = watches_for(settings, s3)
    pollers = [
        WatchPoller(watch.rule, bucket.pages, ledger, utc_now)
        for watch, bucket in watches.values()
        if watch.rule.local_dir is None
    ]
    submitter = Submitter(
        ledger=ledger,
        api=api,
        watches={name: watch for name, (watch, _) in watches.items()},
        clock=utc_now,
        policy=RetryPolicy(max_transient_attempts=settings.daemon.max_transient_attempts),
    )
    options = DaemonOptions(
        poll_interval_s=settings.daemon.poll_interval_s,
        concurrency=settings.daemon.concurrency,
        drain_timeout_s=settings.daemon.drain_timeout_s,
        once_max_wait_s=settings.daemon.once_max_wait_s,
        retention_days=settings.ledger.retention_days,
        track_interval_s=settings.daemon.track_interval_s,
    )
    daemon = Daemon(
        ledger=ledger, pollers=pollers, submitter=submitter, options=options, clock=utc_now
    )
    daemon.folders = [
        FolderWatch(
            rule=watch.rule,
            ledger=ledger,
            bucket=bucket,
            clock=utc_now,
            poll_interval_s=settings.daemon.poll_interval_s,
            on_new=daemon.wake,
        )
        for watch, bucket in watches.values()
        if watch.rule.local_dir is not None
    ]
    daemon.caps = {
        rule.name: rule.max_active_jobs
        for rule in settings.watches
        if rule.max_active_jobs is not None
    }
    daemon.tracker = Tracker(
        ledger=ledger,
        api=api,
        projects={rule.name: rule.project_name for rule in settings.watches},
        clock=utc_now,
    )
    return daemon
