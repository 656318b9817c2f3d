"""The daemon's wiring: every part made from settings, given at construction, closed at the end.

:func:`build` is the one place a running daemon is put together (``dropzone run``); the
smaller builders are what ``submit``, the demo and the tests share with it. A SIGHUP reload
builds a new :class:`WatchSet` from the config read again; nothing is attached to a part
after it was made.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.daemon.lease import LeaseKeeper
from dropzone.daemon.loop import Daemon, DaemonOptions
from dropzone.daemon.parts import NO_NOTICES, NO_OPS, NO_TRACKING, WatchSet
from dropzone.daemon.wakeup import Wakeup
from dropzone.jobs.made import JobsMade
from dropzone.jobs.policy import RetryPolicy
from dropzone.jobs.prior import PriorJobs
from dropzone.jobs.reachability import Reachability
from dropzone.jobs.results import S3Results
from dropzone.jobs.submitter import Submitter
from dropzone.jobs.tracker import Tracker
from dropzone.jobs.watch import Watch
from dropzone.ledger import LedgerError, State
from dropzone.log import get_logger
from dropzone.notify.service import NotifyService
from dropzone.runtime import UsageError, utc_now
from dropzone.sources.tos import TosBucket
from dropzone.watches.bucket import BucketWatch
from dropzone.watches.first_start import FirstStart, ledger_knows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from mypy_boto3_s3 import S3Client

    from dropzone.ark.client import ArkClient
    from dropzone.ark.signer import Credentials
    from dropzone.config import Settings, WatchRule
    from dropzone.daemon.feeds import Feeds
    from dropzone.jobs.watch import Preflight
    from dropzone.ledger import Ledger
    from dropzone.ops.events import DaemonOps
    from dropzone.ops.http import OpsServer
    from dropzone.ops.metrics import Metrics
    from dropzone.sources.ahead import ListedAhead
    from dropzone.watches.folder import FolderWatch


@dataclass(frozen=True)
class DaemonParts:
    """What :func:`build` made; closed (server, client, ledger) when its block ends."""

    daemon: Daemon
    ledger: Ledger
    api: ArkClient
    server: OpsServer | None


@contextmanager
def build(  # noqa: PLR0913 - beside the settings, each part a caller may have made already
    settings: Settings,
    env: Mapping[str, str],
    *,
    config: str | None = None,
    observed: bool = True,
    baseline_anyway: bool = False,
    credentials: Credentials | None = None,
    ledger: Ledger | None = None,
    listed_ahead: ListedAhead | None = None,
) -> Iterator[DaemonParts]:
    """A daemon for ``settings``. ``observed``: with metrics, /healthz on ``daemon.listen``
    and systemd notify (``run --once`` has none); ``config``: the ``-c`` value a SIGHUP
    reads again. What the caller made already, before loading this module (``run --once``):
    ``credentials``; ``ledger``, opened for a daemon, closed with the daemon's parts;
    ``listed_ahead``, first pages asked for, and its S3 client the daemon's."""
    if credentials is None:
        credentials = runtime.credentials_for(settings, env)
    reachability = Reachability(utc_now)
    metrics: Metrics | None = None
    observer = reachability.observe
    if observed:
        # Only a daemon that serves /metrics counts: ``run --once`` has no reader for them,
        # and would pay prometheus_client's import and every call's count for nothing.
        from dropzone.ops.metrics import Metrics  # noqa: PLC0415

        metrics = Metrics([rule.name for rule in settings.watches])
        observer = runtime.fan_out(metrics.api_call, reachability.observe)
    if ledger is None:
        ledger = runtime.open_ledger(settings, daemon=True)
    api: ArkClient | None = None
    server = None
    feeds: Feeds | None = None
    notices: NotifyService | None = None
    try:
        api = runtime.ark_client(settings, credentials, observer=observer)
        s3 = (
            listed_ahead.s3
            if listed_ahead is not None
            else runtime.s3_client(settings, credentials)
        )
        notices = NotifyService(
            settings, ledger=ledger, clock=utc_now, observer=metrics, results=S3Results(s3)
        )
        lease = node_lease(settings, ledger, api)
        held: dict[str, str] = {}
        ops = _daemon_ops(settings, env, ledger, metrics) if metrics is not None else None
        daemon = build_daemon(
            settings,
            ledger=ledger,
            api=api,
            s3=s3,
            reachability=reachability,
            baseline_anyway=baseline_anyway,
            ops=ops,
            first_starts_held=held,
            config=config,
            env=env,
            lease=lease,
            notices=notices,
            listed_ahead=listed_ahead,
        )
        if ops is not None:
            # Imported here: run --once has no feeds, and their modules cost it start-up time.
            from dropzone.daemon.feeds import start_feeds  # noqa: PLC0415

            ops.metrics.track_node(lease)
            feeds = start_feeds(settings, daemon, s3, ops.metrics)
            server = _serve_ops(settings, ops, ledger, reachability, held, lease, feeds)
        yield DaemonParts(daemon, ledger, api, server)
    finally:
        if server is not None:
            server.stop()
        if feeds is not None:
            feeds.stop()  # before the ledger closes: what a feed is recording, it records
        if api is not None:
            api.close()
        if notices is not None:
            notices.close()
        ledger.close()


def node_lease(settings: Settings, ledger: Ledger, api: ArkClient) -> LeaseKeeper:
    """This process's lease; the platform's request cap is shared by the live nodes (each
    sends at most its share, so that together they keep under it)."""
    cap = settings.ark.max_requests_per_second

    def share(live_nodes: int) -> None:
        api.limiter.set_rate(cap / live_nodes)

    return LeaseKeeper(ledger=ledger, ttl_s=settings.ledger.lease_ttl_s, clock=utc_now, share=share)


def _daemon_ops(
    settings: Settings, env: Mapping[str, str], ledger: Ledger, metrics: Metrics
) -> DaemonOps:
    # Imported here, as _serve_ops's: run --once has none of these, and their modules (the
    # HTTP server's among them) cost it start-up time.
    from dropzone.ops.events import DaemonOps  # noqa: PLC0415
    from dropzone.ops.health import Heartbeat  # noqa: PLC0415
    from dropzone.ops.systemd import SystemdNotifier, watchdog_interval_s  # noqa: PLC0415

    heartbeat = Heartbeat(
        watchdog_interval_s=watchdog_interval_s(env),
        watches=[rule.name for rule in settings.watches],
    )
    return DaemonOps(
        metrics=metrics,
        heartbeat=heartbeat,
        notifier=SystemdNotifier(env),
        ledger=ledger,
        clock=utc_now,
    )


def _serve_ops(
    settings: Settings,
    ops: DaemonOps,
    ledger: Ledger,
    reachability: Reachability,
    first_starts_held: Mapping[str, str],
    lease: LeaseKeeper,
    feeds: Feeds,
) -> OpsServer | None:
    """The outage gauge and holds in metrics; /metrics and /healthz if ``listen`` is set."""
    from dropzone.ops.health import ArkStatus, health_probe, readiness_probe  # noqa: PLC0415
    from dropzone.ops.http import ListenError, OpsServer  # noqa: PLC0415

    metrics = ops.metrics

    def seconds_down() -> float:
        current = reachability.outage()
        return 0.0 if current is None else (utc_now() - current.since).total_seconds()

    metrics.track_ark_outage(seconds_down)
    reachability.on_held = metrics.ark_held
    address = settings.daemon.listen_address
    if address is None:
        return None

    def ark() -> ArkStatus:
        held = tuple(f"ark refuses the account: {h.code}: {h.hint}" for h in reachability.holds())
        return ArkStatus(
            outage=reachability.outage(), held=held + tuple(first_starts_held.values())
        )

    names = [rule.name for rule in settings.watches]

    def due() -> dict[str, int]:
        try:
            return {name: ledger.counts(name)[State.PENDING] for name in names}
        except LedgerError:
            return {}  # unknown while the ledger cannot be read: /readyz says that

    in_place, usable = _ledger_checks(settings, ledger, lease)
    probe = health_probe(
        heartbeat=ops.heartbeat,
        poll_interval_s=settings.daemon.poll_interval_s,
        started_at=time.time(),
        due=due,
        ledger_writable=in_place,
        ark=ark,
        feeds=feeds.problems,
    )
    server = OpsServer(address, metrics, probe, readiness_probe(usable), feeds.posts)
    try:
        server.start()
    except ListenError as exc:
        raise UsageError(str(exc)) from exc
    return server


def _ledger_checks(
    settings: Settings, ledger: Ledger, lease: LeaseKeeper
) -> tuple[Callable[[], bool], Callable[[], bool]]:
    """What /healthz and /readyz ask of the ledger. A file: in place and writable, for both
    (and /readyz, the lease renewed). A database: /healthz asks nothing of it (a restart
    cures no outage of the server's); /readyz, that it answers and the lease is fresh."""
    if settings.ledger.url is not None:
        from dropzone.ledger.postgres import PostgresLedger  # noqa: PLC0415 - see runtime

        if isinstance(ledger, PostgresLedger):
            return (lambda: True), (lambda: lease.fresh() and ledger.reachable())
    from dropzone.ops.events import ledger_writable  # noqa: PLC0415

    writable = ledger_writable(settings.ledger.path, ledger.displaced)
    return writable, (lambda: writable() and lease.fresh())


def build_daemon(  # noqa: PLR0913 - the parts a daemon is made of, each its own
    settings: Settings,
    *,
    ledger: Ledger,
    api: ArkClient,
    s3: S3Client,
    reachability: Reachability | None = None,
    baseline_anyway: bool = False,
    ops: DaemonOps | None = None,
    first_starts_held: dict[str, str] | None = None,
    config: str | None = None,
    env: Mapping[str, str] | None = None,
    lease: LeaseKeeper | None = None,
    notices: NotifyService | None = None,
    listed_ahead: ListedAhead | None = None,
) -> Daemon:
    """``baseline_anyway``: a first start baselines what is there even when the platform
    holds the watch's jobs (``run --baseline-anyway``; otherwise it waits for the operator).
    ``env``: given, a SIGHUP reads the config (``config``, as ``-c``) again; not, it is kept.
    ``listed_ahead``: first pages asked for already, taken by the watches' first listings."""
    # The daemon's workers record a job made with their next claim (dropzone.jobs.made).
    submitter = build_submitter(
        settings, ledger=ledger, api=api, s3=s3, reachability=reachability, jobs_made=JobsMade()
    )
    tracker = Tracker(
        ledger=ledger,
        api=api,
        projects=_projects(settings),
        clock=utc_now,
        reachability=reachability,
    )
    first_start = FirstStart(api, ledger_knows(ledger), baseline_anyway=baseline_anyway)
    wake = Wakeup()
    make = _WatchMaker(ledger, s3, first_start, wake, listed_ahead)
    watches = make(settings, WatchSet())

    def reload(running: WatchSet) -> WatchSet | None:
        if env is None:
            return None
        fresh = _settings_again(config, env, settings)
        if fresh is None:
            return None
        submitter.replace_watches(_submit_watches(fresh, s3))
        tracker.replace_projects(_projects(fresh))
        if notices is not None:
            notices.replace(fresh)
        return make(fresh, running)

    return Daemon(
        ledger=ledger,
        watches=watches,
        submitter=submitter,
        options=daemon_options(settings),
        clock=utc_now,
        ops=ops if ops is not None else NO_OPS,
        tracker=tracker if settings.daemon.track_interval_s > 0 else NO_TRACKING,
        reload=reload,
        wake=wake,
        first_starts_held=first_starts_held,
        lease=lease or node_lease(settings, ledger, api),
        notices=notices if notices is not None else NO_NOTICES,
        requests_per_second=lambda: api.limiter.rate,
        warm_up=api.warm_up,
    )


def build_submitter(
    settings: Settings,
    *,
    ledger: Ledger,
    api: ArkClient,
    s3: S3Client,
    reachability: Reachability | None = None,
    jobs_made: JobsMade | None = None,
) -> Submitter:
    """The exactly-once protocol for the watches of ``settings`` (``submit`` needs no more;
    ``jobs_made``: for the daemon, whose claims record them)."""
    return Submitter(
        ledger=ledger,
        api=api,
        watches=_submit_watches(settings, s3),
        clock=utc_now,
        policy=RetryPolicy(),
        reachability=reachability,
        prior_jobs=PriorJobs(api=api, upcoming=ledger.upcoming, clock=utc_now),
        # A Create that outlived the client's read time-out may still be carried out: twice
        # that is the wait before "no job listed" counts as "no job made".
        late_create_s=2 * settings.ark.timeout_s,
        signature_validity_s=settings.ark.signature_validity_s,
        jobs_made=jobs_made,
    )


def _preflight(rule: WatchRule, bucket: TosBucket) -> Preflight | None:
    """The watch's file check, for a watch that validates (a reload makes it anew)."""
    if not rule.preflight:
        return None
    # Imported here: the validator's modules cost every run of a watch without it.
    from dropzone.preflight.readers import BucketPreflight, FolderPreflight  # noqa: PLC0415

    if rule.local_dir is None:
        return BucketPreflight(bucket)
    return FolderPreflight(rule.local_dir, rule.prefix)


def _submit_watches(settings: Settings, s3: S3Client) -> dict[str, Watch]:
    """Each watch as the submitter sees it; bucket watches look objects up by HEAD first."""
    watches: dict[str, Watch] = {}
    for rule in settings.watches:
        bucket = TosBucket(s3, rule.bucket)
        mounted = rule.local_dir is not None and rule.local_mode == "mounted"
        # A mounted file is the object: its watcher already saw it complete, and HEAD through
        # S3 may not even be reachable (the demo has no S3 at all).
        lookup = None if mounted else bucket.head
        watches[rule.name] = Watch(rule, lookup, _preflight(rule, bucket))
    return watches


@dataclass(frozen=True)
class _WatchMaker:
    """The watches of a configuration; folder watches whose rule is unchanged keep running
    (their settle state and first-scan status with them), others are stopped and new ones
    built. In-flight submissions finish with the rules they were claimed under."""

    ledger: Ledger
    s3: S3Client
    first_start: FirstStart
    wake: Wakeup
    listed_ahead: ListedAhead | None = None

    def __call__(self, settings: Settings, running: WatchSet) -> WatchSet:
        kept = {folder.rule.name: folder for folder in running.folders}
        folders: list[FolderWatch] = []
        for rule in settings.watches:
            if rule.local_dir is None:  # a bucket watch, made below
                continue
            same = kept.get(rule.name)
            if same is not None and same.rule == rule:
                folders.append(kept.pop(rule.name))
                continue
            # Imported for the first folder watch: watchdog is of no use to bucket watches.
            from dropzone.watches.folder import FolderWatch  # noqa: PLC0415

            folder = FolderWatch(
                rule=rule,
                ledger=self.ledger,
                bucket=TosBucket(self.s3, rule.bucket),
                clock=utc_now,
                poll_interval_s=settings.daemon.poll_interval_s,
                on_new=self.wake.notify,
                first_start=self.first_start,
            )
            folders.append(folder)
        for stale in kept.values():
            stale.stop()
        buckets = tuple(
            BucketWatch(
                rule,
                TosBucket(self.s3, rule.bucket, self.listed_ahead).pages,
                self.ledger,
                utc_now,
                self.first_start,
                on_new=self.wake.notify,
            )
            for rule in settings.bucket_watches
        )
        caps = {
            r.name: r.max_active_jobs for r in settings.watches if r.max_active_jobs is not None
        }
        return WatchSet(buckets, tuple(folders), caps)


def _settings_again(
    config: str | None, env: Mapping[str, str], running: Settings
) -> Settings | None:
    """The config read again; a bad one is refused with one clear line and the old one kept."""
    logger = get_logger()
    try:
        fresh = runtime.settings_from(config, env)
    except UsageError as exc:
        logger.error(  # noqa: TRY400 - a bad config is not a bug: its message says it all
            "config.reload_refused", error=str(exc), note="the previous config stays"
        )
        return None
    restart_only = [
        section
        for section in ("ark", "tos", "ledger", "daemon", "events")
        if getattr(fresh, section) != getattr(running, section)
    ]
    # A feed's consumer or route is made at the start: a watch that names a feed none had
    # before (or no longer names the last one) gets it only from a restart.
    if _feeds_named(fresh) != _feeds_named(running) and "events" not in restart_only:
        restart_only.append("events")
    logger.info(
        "config.reloaded",
        watches=[rule.name for rule in fresh.watches],
        needs_restart=restart_only or None,
    )
    return fresh


def _feeds_named(settings: Settings) -> set[str]:
    return {rule.feed for rule in settings.watches if rule.feed is not None}


def _projects(settings: Settings) -> dict[str, str]:
    return {rule.name: rule.project_name for rule in settings.watches}


def daemon_options(settings: Settings) -> DaemonOptions:
    return DaemonOptions(
        poll_interval_s=settings.daemon.poll_interval_s,
        concurrency=settings.daemon.concurrency,
        drain_timeout_s=settings.daemon.drain_timeout_s,
        once_max_wait_s=settings.daemon.once_max_wait_s,
        retention_days=settings.ledger.retention_days,
        track_interval_s=settings.daemon.track_interval_s,
    )
