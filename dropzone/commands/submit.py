"""``dropzone submit tos://BUCKET/KEY``: one object recorded and submitted at once, as run does."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.commands.options import parse_tos_url, watch_for
from dropzone.commands.output import entry_record, print_json
from dropzone.daemon.build import build_submitter
from dropzone.daemon.lease import LeaseKeeper
from dropzone.ledger import State
from dropzone.notify.routes import wanted
from dropzone.runtime import UsageError
from dropzone.sources.base import SourceError
from dropzone.sources.tos import TosBucket

if TYPE_CHECKING:
    import argparse


def submit(args: argparse.Namespace) -> int:
    """Record one object as pending and submit it now, with the same protocol as the daemon."""
    settings = runtime.settings_from(args.config)
    bucket_name, key = parse_tos_url(args.url)
    rule = watch_for(settings, args.watch, bucket_name, key)
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
    # Its outcome is told of as the daemon's are: the notice is written with it, and the
    # daemon's notifier delivers it.
    ledger.announce(wanted(settings))
    api = runtime.ark_client(settings, credentials)
    # A node of the ledger while it submits, as a daemon is: a claim of no live node is a
    # crashed one's to the daemons beside it, which took this one over while it was sending.
    lease = LeaseKeeper(ledger=ledger, ttl_s=settings.ledger.lease_ttl_s, clock=runtime.utc_now)
    lease.renew()
    leased = threading.Event()
    lease.keep(leased)
    try:
        now = runtime.utc_now()
        entry, created = ledger.add_object(
            rule.name, bucket_name, key, stored.etag, stored.size, State.PENDING, now
        )
        if not created and entry.state is not State.PENDING:
            print_json(entry_record(entry))
            print("already in the ledger; use `dropzone retry` or `forget` first", file=sys.stderr)
            return 1
        claimed = ledger.claim_one(entry.id, now, node=lease.node)
        if claimed is None:
            print("the entry is being submitted by a running daemon", file=sys.stderr)
            return 1
        submitter = build_submitter(settings, ledger=ledger, api=api, s3=bucket.s3)
        final = submitter.submit(claimed)
        recorded = ledger.get(entry.id)
        print_json(entry_record(recorded))
    finally:
        leased.set()
        lease.leave()  # an attempt left in submitting is the daemons' to reconcile at once
        api.close()
        ledger.close()
    if final in {State.PENDING, State.SUBMITTING}:
        print(
            f"not submitted yet ({recorded.error or final}); the entry is {final} and the "
            "daemon, or `dropzone run --once`, will go on with it",
            file=sys.stderr,
        )
    return 0 if final in {State.SUBMITTED, State.DUPLICATE} else 1
