"""A configuration's notification routes: per watch, the events it wants and its targets.

The webhook secrets are read here, at the start (and at a reload), so that a missing or
unreadable file is one clear line before the daemon runs, and the secret is masked in every
log line from then on.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.notify.notifier import DEFAULT_GIVE_UP_S, Route
from dropzone.notify.results import ResultsTarget
from dropzone.notify.targets import CommandTarget, Target, WebhookTarget
from dropzone.runtime import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import httpx
    from standardwebhooks import Webhook

    from dropzone.config import Settings, WatchRule
    from dropzone.config.notify import NotifySettings
    from dropzone.jobs.results import ResultStore


def fetches_results(rule: WatchRule) -> bool:
    return rule.local_dir is not None and bool(rule.results_dir)


def wanted(settings: Settings) -> dict[str, frozenset[str]]:
    """The events each watch asked to hear of (what the ledger writes notices of): its
    notify's, and Completed for a folder watch that puts the results back."""
    found: dict[str, frozenset[str]] = {}
    for rule in settings.watches:
        events = frozenset(rule.notify.events) if rule.notify is not None else frozenset()
        if fetches_results(rule):
            events |= {"Completed"}
        if events:
            found[rule.name] = events
    return found


def routes_for(
    settings: Settings,
    client: Callable[[], httpx.Client],
    clock: Callable[[], datetime],
    results: ResultStore | None,
) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    events = wanted(settings)
    for rule in settings.watches:
        if rule.name not in events:
            # Known here, asking for nothing: its notices (from before a reload) are skipped.
            routes[rule.name] = Route(frozenset(), (), DEFAULT_GIVE_UP_S)
            continue
        targets: list[Target] = []
        give_up_s = DEFAULT_GIVE_UP_S
        if rule.notify is not None:
            setting = f"watch {rule.name!r} notify.secret_file"
            targets.extend(_targets(rule.notify, setting, client, clock))
            give_up_s = rule.notify.give_up_after_s
        if fetches_results(rule) and results is not None:
            targets.append(ResultsTarget(rule, results))
        routes[rule.name] = Route(events[rule.name], tuple(targets), give_up_s)
    return routes


def _targets(
    notify: NotifySettings,
    setting: str,
    client: Callable[[], httpx.Client],
    clock: Callable[[], datetime],
) -> tuple[Target, ...]:
    targets: list[Target] = []
    if notify.url is not None and notify.secret_file is not None:
        signer = signer_from(runtime.read_secret(notify.secret_file, setting), setting)
        targets.append(
            WebhookTarget(notify.url, signer, client(), clock, notify.timeout_s, notify.events)
        )
    if notify.command is not None:
        targets.append(CommandTarget(notify.command, notify.timeout_s, notify.events))
    return tuple(targets)


_PREFIX = "whsec_"
_MIN_KEY_BYTES = 16


def signer_from(secret: str, setting: str) -> Webhook:
    """The secret as Standard Webhooks libraries take it: ``whsec_`` and the key in base64,
    checked strictly (the library itself would sign with whatever a lax decode left)."""
    # Imported here: only a watch with a webhook needs it, and it adds 20 ms to a start.
    from standardwebhooks import Webhook  # noqa: PLC0415

    key = b""
    if secret.startswith(_PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(_PREFIX), validate=True)
        except binascii.Error:
            key = b""
    if len(key) < _MIN_KEY_BYTES:
        raise UsageError(
            f"{setting}: the file must hold a Standard Webhooks secret, whsec_ and at least"
            f" {_MIN_KEY_BYTES} bytes in base64 (the value is not shown); make one with:"
            " printf 'whsec_%s' \"$(openssl rand -base64 32)\""
        )
    return Webhook(key)
