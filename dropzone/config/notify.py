"""A watch's ``notify`` table: who hears of its outcomes, and how.

A webhook (``url``, its body signed as Standard Webhooks sign theirs, with the secret in
``secret_file``) and/or a command run with the notice as JSON on its standard input. A URL
often carries a token of its own (a chat's incoming webhook), so it is never shown whole:
:func:`shown_url` keeps its scheme and host.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from dropzone import plan
from dropzone.config.fields import DAY_S, ConfigPath, FromToml, NonEmpty, Section, Timeout
from dropzone.ledger.notices import EVENTS

# An error about these never shows the value: a URL's path may be a token, a secret file's
# path the secret pasted by mistake.
NOTIFY_SECRETS = frozenset({"url", "secret_file"})

Event = Literal["Completed", "Failed", "Terminated", "rejected", "invalid", "duplicate"]
assert set(Event.__args__) == set(EVENTS)  # type: ignore[attr-defined]


class NotifySettings(Section):
    url: str | None = None
    secret_file: ConfigPath | None = None
    command: Annotated[tuple[NonEmpty, ...], FromToml] | None = None
    events: Annotated[tuple[Event, ...], FromToml] = EVENTS  # type: ignore[assignment]
    timeout_s: Timeout = 10
    # Delivery is tried again, less and less often, until the notice is this old.
    give_up_after_s: Annotated[float, Field(ge=1, le=7 * DAY_S)] = DAY_S

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "no credentials in the URL (the value is not shown); the body is signed with"
                " secret_file"
            )
        if (not _has_port(value) and ":" in parts.netloc.rsplit("]", 1)[-1]) or parts.port == 0:
            raise ValueError("the port must be a number from 1 to 65535 (the value is not shown)")
        if not _sendable_host(value, parts.hostname):
            raise ValueError("the host is not a valid host name (the value is not shown)")
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('give the program and its arguments, e.g. ["/usr/bin/notify-me"]')
        return value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"name at least one of {', '.join(EVENTS)}, or leave it out (all)")
        return value

    @model_validator(mode="after")
    def _someone_to_tell(self) -> Self:
        if self.url is None and self.command is None:
            raise ValueError("set url (a webhook), command, or both")
        if self.url is not None and self.secret_file is None:
            raise ValueError(
                "a webhook needs secret_file: the secret its receiver verifies each body with"
            )
        if self.secret_file is not None and self.url is None:
            raise ValueError("secret_file signs the webhook's body: it needs url")
        return self


def shown_url(url: str) -> str:
    """The URL as a log line or an error may show it: its path and query may be a token."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "the URL (not shown)"
    port = f":{parts.port}" if _has_port(url) else ""
    rest = "/..." if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def _has_port(url: str) -> bool:
    try:
        return urlsplit(url).port is not None
    except ValueError:
        return False


def _sendable_host(url: str, hostname: str) -> bool:
    """Whether httpx can send to it: a host it refuses only when sending would otherwise be
    a failed try every time, found only in the logs."""
    import httpx  # noqa: PLC0415 - only a config with a webhook pays for the import

    try:
        httpx.URL(url)
        hostname.encode("idna")
    except (httpx.InvalidURL, UnicodeError):
        return False
    return True


def results_root(results_dir: str) -> str:
    """The fixed folder a ``results_dir`` template starts with (``results/``), or ""."""
    fixed = results_dir.split("{", 1)[0]
    return fixed[: fixed.rfind("/") + 1]


def check_results_dir(value: str) -> str | None:
    """What keeps a ``results_dir`` from working, in words; None when nothing does."""
    problem = plan.template_error(value)
    if problem:
        return problem
    parts = value.strip("/").split("/")
    if value.startswith("/") or any(part in {".", ".."} for part in parts):
        return "must be a folder below local_dir (no leading /, no . or ..)"
    root = results_root(value)
    if not root.strip("/") or "*" in root or "?" in root or "[" in root:
        return (
            "must start with a fixed folder, such as results/{relpath_stem}/, so that the"
            " watch leaves the results it puts there alone"
        )
    return None
