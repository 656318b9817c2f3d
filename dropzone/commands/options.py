"""Command-line values turned into what they name: a state, a watch, an object's URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropzone.ledger import State
from dropzone.runtime import UsageError

if TYPE_CHECKING:
    from dropzone.config import Settings, WatchRule


def state_option(value: str | None) -> State | None:
    if value is None:
        return None
    try:
        return State(value)
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise UsageError(f"--state {value!r} is not a state; states: {names}") from None


def single_watch(settings: Settings, name: str | None) -> WatchRule | None:
    if name is None:
        return None
    for rule in settings.watches:
        if rule.name == name:
            return rule
    raise UsageError(f"--watch {name!r}: no such watch in the configuration")


def parse_tos_url(url: str) -> tuple[str, str]:
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "tos" or not bucket or not key:
        raise UsageError(f"{url!r} is not tos://BUCKET/KEY")
    return bucket, key


def watch_for(settings: Settings, name: str | None, bucket: str, key: str) -> WatchRule:
    chosen = single_watch(settings, name)
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
