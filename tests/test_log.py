"""Log rendering never shows a secret, whichever renderer and whichever extras are installed.

`rich` is a dev dependency on purpose: with it installed, structlog's console renderer printed
tracebacks with each frame's local variables, the session token among them, raw and
URL-encoded (issue 12 item 8). These tests render real exceptions through
:func:`dropzone.log.configure` into a stream, as the CLI does into stdout.
"""

from __future__ import annotations

import io
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
import rich  # noqa: F401 - imported so that the console tests cannot pass without it

from dropzone import log

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dropzone.levels import LogFormat

TOKEN = "STS-session-token/with+signs=and-0123456789"
SECRET = "log-test-secret-0123456789"
LOCAL_ONLY = "a-value-held-only-in-a-local-variable"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours would hide a secret cut into pieces


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so that the console renders in colour."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    log.reset()


def _fail_holding_secrets() -> None:
    headers = {"X-Security-Token": TOKEN, "Authorization": f"HMAC-SHA256 {SECRET}"}
    note = LOCAL_ONLY
    raise ValueError(f"refused {len(headers)} headers for {note[:1]}; url ?t={quote(TOKEN)}")


def _render(fmt: LogFormat, stream: io.StringIO) -> str:
    log.configure(fmt, stream=stream)
    log.register_secrets([SECRET, TOKEN])
    try:
        _fail_holding_secrets()
    except ValueError:
        log.get_logger(watch="chat").exception("worker.failed")
    return stream.getvalue()


@pytest.mark.parametrize(
    ("fmt", "stream"),
    [("console", Terminal()), ("console", io.StringIO()), ("json", io.StringIO())],
    ids=["console-rich", "console-plain", "json"],
)
def test_a_traceback_shows_no_frame_locals_and_no_secret(
    fmt: LogFormat, stream: io.StringIO
) -> None:
    """A logged exception is rendered with its frames but no local variables, and a secret in
    its message (raw or URL-encoded) is masked, on a colour terminal (rich), a plain console
    and JSON."""
    text = ANSI.sub("", _render(fmt, stream))
    assert "worker.failed" in text
    assert "_fail_holding_secrets" in text  # the frames are there
    assert "refused 2 headers" in text
    assert LOCAL_ONLY not in text
    for secret in (TOKEN, quote(TOKEN, safe=""), SECRET):
        assert secret not in text
    assert "[secure]" in text


def test_the_colour_console_uses_rich() -> None:
    """On a terminal the traceback is rich's (its boxes), not a plain one, so the test above
    covers the renderer that showed the locals: in colour while no secret would show, without
    colour (which cuts a secret into pieces redaction cannot see) when one would."""
    stream = Terminal()
    log.configure("console", stream=stream)
    try:
        raise ValueError("nothing secret")  # noqa: TRY301 - a traceback to render
    except ValueError:
        log.get_logger().exception("worker.failed")
    coloured = stream.getvalue()
    assert "╭" in coloured
    assert "\x1b[" in coloured.partition("Traceback")[2]
    log.reset()
    with_secret = _render("console", Terminal())
    assert "╭" in with_secret
    assert "\x1b[" not in with_secret.partition("Traceback")[2]
    assert f"?t={'[secure]'}" in with_secret


class Holder:
    """An object whose repr carries a secret, as a client or request object's may."""

    def __repr__(self) -> str:
        return f"Holder(token={TOKEN!r})"


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_value_whose_repr_holds_a_secret_is_masked(fmt: LogFormat) -> None:
    """A field that is not a string (an object, bytes) is printed through its repr: that repr
    is masked when it holds a registered secret, and left as it is otherwise."""
    stream = io.StringIO()
    log.configure(fmt, stream=stream)
    log.register_secrets([TOKEN])
    log.get_logger().info("call.made", holder=Holder(), body=TOKEN.encode(), count=3)
    text = stream.getvalue()
    assert TOKEN not in text
    assert "call.made" in text
    if fmt == "json":
        line = json.loads(text)
        assert line["holder"] == "Holder(token='[secure]')"
        assert (line["body"], line["count"]) == ("b'[secure]'", 3)


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("", True), ("1", False)])
def test_no_color_turns_the_console_colour_off(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None, *, coloured: bool
) -> None:
    """https://no-color.org: NO_COLOR set and not empty means no escape codes, even on a
    terminal; set but empty changes nothing."""
    if no_color is not None:
        monkeypatch.setenv("NO_COLOR", no_color)
    stream = Terminal()
    log.configure("console", stream=stream)
    log.get_logger(watch="chat").info("poll.completed", objects=3)
    text = stream.getvalue()
    assert "poll.completed" in text
    assert ("\x1b[" in text) is coloured


def test_text_fields_are_masked_one_by_one_and_only_where_a_secret_is() -> None:
    """A line's text fields are searched together: the field holding a secret (raw or
    URL-encoded) is masked, its neighbours are left whole, and a secret's halves in two
    fields are two harmless texts, not a secret."""
    stream = io.StringIO()
    log.configure("json", stream=stream)
    log.register_secrets([SECRET, TOKEN])
    half = len(SECRET) // 2
    logger = log.get_logger()
    logger.info("a", url=f"?t={quote(TOKEN, safe='')}", key="in/x.jsonl", nested={"v": SECRET})
    logger.info("b", head=SECRET[:half], tail=SECRET[half:], session_token="plain")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["url"], first["key"], first["nested"]) == (
        "?t=[secure]",
        "in/x.jsonl",
        {"v": "[secure]"},
    )
    assert (second["head"], second["tail"]) == (SECRET[:half], SECRET[half:])
    assert second["session_token"] == "[secure]"
