"""A reload that changes which feeds the watches name says a restart is needed: the feeds'
consumers and routes are made at the start, so nothing else would tell the operator that a
watch given ``feed`` by SIGHUP has no consumer yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from structlog.testing import capture_logs

from dropzone import runtime
from dropzone.daemon.build import _settings_again
from tests.harness import free_port

if TYPE_CHECKING:
    from dropzone.config import Settings
    from tests.harness import Stage


def running(stage: Stage) -> Settings:
    return runtime.settings_from(str(stage.write_config()), stage.env())


def reloaded(stage: Stage, before: Settings) -> list[str] | None:
    """The stage's config now read again over ``before``: what it says needs a restart."""
    env = stage.env()  # the config written as the stage has it now
    with capture_logs() as logs:
        assert _settings_again(env["DROPZONE_CONFIG"], env, before) is not None
    (line,) = [e for e in logs if e["event"] == "config.reloaded"]
    needs: list[str] | None = line["needs_restart"]
    return needs


def test_a_watch_given_a_feed_by_a_reload_needs_a_restart(stage: Stage) -> None:
    secret = stage.tmp / "events-secret"
    secret.write_text("shared-secret\n", encoding="utf-8")
    stage.events = {"http_secret_file": str(secret)}
    stage.daemon.update(listen=f"127.0.0.1:{free_port()}")
    without_feed = running(stage)
    stage.watch.update(feed="http")
    assert reloaded(stage, without_feed) == ["events"]


def test_a_reload_that_leaves_the_feeds_as_they_are_needs_none(stage: Stage) -> None:
    first = running(stage)
    stage.watch.update(min_age_s=3)
    assert reloaded(stage, first) is None
