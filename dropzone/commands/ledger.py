"""The commands that read or change the ledger beside a daemon: status, backfill, retry, forget."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.commands import status_view
from dropzone.commands.options import single_watch, state_option
from dropzone.commands.output import entry_record, json_text, print_json
from dropzone.ledger import State
from dropzone.runtime import UsageError

if TYPE_CHECKING:
    import argparse

    from dropzone.config import Settings, WatchRule
    from dropzone.ledger import Ledger


def status(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    state = state_option(args.state)
    _status_watch(settings, args.watch)
    ledger = runtime.existing_ledger(settings)
    if ledger is None:
        print(runtime.no_ledger(settings, runtime.config_file(args.config)), file=sys.stderr)
        return 1
    try:
        if args.nodes:
            for line in node_lines(ledger, json_lines=args.json):
                print(line)
            return 0
        if not args.json and sys.stdout.isatty():
            entries = list(ledger.entries(state=state, watch=args.watch))
            columns = shutil.get_terminal_size().columns
            print("\n".join(status_view.table(entries, runtime.utc_now(), columns)))
            return 0
        for entry in ledger.entries(state=state, watch=args.watch):
            if args.json:
                print_json(entry_record(entry))
            else:
                job = entry.job_id or "-"
                phase = entry.phase or "-"
                line = f"{entry.watch}\t{entry.state}\t{job}\t{phase}\ttos://{entry.bucket}/{entry.key}"
                print(f"{line}\t{entry.error}" if entry.error else line)
    finally:
        ledger.close()
    return 0


def node_lines(ledger: Ledger, *, json_lines: bool) -> list[str]:
    """``status --nodes``: a line per node with a lease (lapsed ones too), then the attempts
    held by nodes that have none (gone: the next reconcile takes them over)."""
    claims = ledger.claims_by_node()
    roles = ledger.roles()
    lines: list[str] = []
    leases = ledger.nodes()
    for lease in leases:
        held = sorted(role for role, holder in roles.items() if holder == lease.id)
        record = {
            "node": lease.id,
            "host": lease.host,
            "started_at": lease.started_at,
            "live": lease.live,
            "lease_remaining_s": round(lease.remaining_s, 1),
            "claims": claims.get(lease.id, 0),
            "roles": held,
        }
        left = (
            f"lease {lease.remaining_s:.1f} s left"
            if lease.live
            else f"lease lapsed {-lease.remaining_s:.1f} s ago"
        )
        text = f"{lease.id}\t{lease.host}\t{left}\t{record['claims']} in flight"
        lines.append(json_text(record) if json_lines else f"{text}\t{', '.join(held) or '-'}")
    known = {lease.id for lease in leases}
    for node, count in sorted(claims.items(), key=lambda item: str(item[0])):
        if node in known:
            continue
        record = {"node": node, "host": None, "live": False, "claims": count, "roles": []}
        who = "no node" if node is None else f"{node} (gone)"
        text = f"{who}\t{count} in flight: taken over by the next node to look"
        lines.append(json_text(record) if json_lines else text)
    if not lines and not json_lines:
        return ["no nodes: no daemon runs on this ledger"]
    return lines


def _status_watch(settings: Settings, name: str | None) -> None:
    """Refuse a --watch that names nothing: neither a configured watch nor, for one since
    removed from the config, any entry in the ledger."""
    configured = [rule.name for rule in settings.watches]
    if name is None or name in configured:
        return
    ledger = runtime.existing_ledger(settings)
    if ledger is not None:
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


def backfill(args: argparse.Namespace) -> int:
    settings = runtime.settings_from(args.config)
    rule = single_watch(settings, args.watch)
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


def _open_first(ledger: Ledger, rule: WatchRule) -> bool:
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
    rule = single_watch(settings, args.watch)
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
