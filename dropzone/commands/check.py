"""``dropzone check``: the config shown, then everything the daemon will use, contacted."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.commands import probes
from dropzone.commands.output import print_json
from dropzone.commands.preview import Verdict, WatchPreview, watch_previews
from dropzone.config.text import config_text
from dropzone.runtime import UsageError
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from mypy_boto3_s3 import S3Client

    from dropzone.ark.signer import Credentials
    from dropzone.config import Settings
    from dropzone.sources.tos import TosBucket


def _credential_findings(settings: Settings) -> tuple[Credentials | None, probes.Finding]:
    try:
        credentials = runtime.credentials_for(settings)
    except UsageError as exc:
        return None, probes.Finding("credentials", ok=False, detail=str(exc))
    shown = f"access key {credentials.access_key[:6]}..."
    return credentials, probes.Finding("credentials", ok=True, detail=f"found ({shown})")


def _local_findings(settings: Settings) -> Iterator[probes.Finding]:
    url = settings.ledger.url
    if url is not None:
        yield probes.postgres_ledger_finding(settings, url)
    else:
        yield probes.ledger_finding(settings.ledger.path)
    for rule in settings.watches:
        yield from probes.folder_findings(rule)
    yield from probes.feed_secret_findings(settings)
    yield from probes.notify_findings(settings)


def _remote_findings(settings: Settings, credentials: Credentials) -> Iterator[probes.Finding]:
    with runtime.ark_client(settings, credentials) as api:
        projects = [rule.project_name for rule in settings.watches]
        yield from probes.ark_findings(api, settings.ark.endpoint, projects)
    s3 = runtime.s3_client(settings, credentials)
    for rule in settings.watches:
        # A mounted folder is the bucket itself: the daemon never reaches it over S3.
        if rule.local_dir is None or rule.local_mode != "mounted":
            yield from probes.bucket_findings(
                rule, _tos_bucket(s3, rule.bucket), settings.tos.region
            )


def _findings(settings: Settings, *, offline: bool) -> Iterator[probes.Finding]:
    credentials, found = _credential_findings(settings)
    yield found
    yield from _local_findings(settings)
    if offline:
        return
    yield from probes.kafka_finding(settings)  # the brokers want none of Ark's credentials
    if credentials is None:
        yield probes.Finding("ark and tos", ok=False, detail="not contacted: no credentials")
        return
    yield from _remote_findings(settings, credentials)


def _show_config(settings: Settings, *, as_json: bool) -> None:
    if as_json or not sys.stdout.isatty():
        print_json(settings.redacted())
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
    ok = True
    with watch_previews(settings) as preview:
        for rule in settings.watches:
            try:
                summary = _trial_listing(preview(rule))
            except SourceError as exc:
                summary, ok = f"FAILED: {exc}", False
            print(
                f"watch {rule.name}: tos://{rule.bucket}/{rule.prefix}: {summary}", file=sys.stderr
            )
    return ok


def _trial_listing(preview: WatchPreview) -> str:
    objects = matching = new = 0
    for seen in preview.items:
        objects += 1
        matching += seen.verdict is not Verdict.OTHER
        new += seen.verdict.is_new
    baseline = (
        " (would be recorded as baseline on first start)" if new and preview.baselines else ""
    )
    return f"{objects} objects, {matching} match, {new} new{baseline}"


def _tos_bucket(s3: S3Client, name: str) -> TosBucket:
    # Imported when a bucket is read: boto3 is a third of the start-up of a command that
    # reads none (check --offline).
    from dropzone.sources.tos import TosBucket  # noqa: PLC0415

    return TosBucket(s3, name)
