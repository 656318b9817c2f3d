"""``dropzone results KEY``: a job's result files fetched on demand, for any watch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.commands.options import single_watch
from dropzone.jobs.results import S3Results, fetch_results, job_folder
from dropzone.runtime import UsageError
from dropzone.sources.base import SourceError

if TYPE_CHECKING:
    import argparse

    from dropzone.config import Settings, WatchRule
    from dropzone.ledger import Entry


def results(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    rule, entry = _latest_job(settings, args.key, args.watch)
    assert entry.job_id is not None
    if entry.output_dir is None:
        raise UsageError(f"{args.key}: job {entry.job_id} has no output folder on record")
    into = Path(args.to) if args.to else Path("results") / Path(args.key).stem
    if entry.phase != "Completed":
        phase = entry.phase or "not tracked yet"
        print(
            f"{args.key}: job {entry.job_id} is {phase}; fetching what it has written so far",
            file=sys.stderr,
        )
    s3 = runtime.s3_client(settings, runtime.credentials_for(settings))
    folder = job_folder(entry.output_dir, entry.job_id)
    try:
        fetched = fetch_results(S3Results(s3), rule.bucket, folder, into)
    except SourceError as exc:
        print(f"dropzone results: {exc}", file=sys.stderr)
        return 1
    for item in fetched:
        print(f"{item.path}\t{item.size}\t{'fetched' if item.fresh else 'already there'}")
    if not fetched:
        print(f"{args.key}: nothing under tos://{rule.bucket}/{folder} yet", file=sys.stderr)
        return 1
    return 0


def _latest_job(settings: Settings, key: str, watch: str | None) -> tuple[WatchRule, Entry]:
    """The newest version of ``key`` with a job (its own, or the one a duplicate named)."""
    only = single_watch(settings, watch)
    rules = [only] if only is not None else list(settings.watches)
    ledger = runtime.open_ledger(settings, readonly=True)
    try:
        found = [
            (entry.first_seen_at, entry.id, rule, entry)
            for rule in rules
            for entry in ledger.find(rule.name, rule.bucket, key)
            if entry.job_id is not None
        ]
    finally:
        ledger.close()
    if not found:
        where = f"watch {watch!r}" if watch else "any watch"
        raise UsageError(
            f"{key}: no job on record for it in {where}; give the object key as `dropzone"
            " status` shows it"
        )
    _, _, rule, entry = max(found, key=lambda row: (row[0], row[1]))
    return rule, entry
