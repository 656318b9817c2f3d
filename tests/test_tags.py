"""The tag budget: a watch's own tags, dropzone's two and the platform's `sys:` tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropzone.config import MAX_TAGS
from dropzone.plan import RESERVED_TAG_KEYS

if TYPE_CHECKING:
    from tests.harness import Stage


def test_a_watch_with_the_most_tags_makes_its_job_with_every_one(stage: Stage) -> None:
    """MAX_TAGS of the watch's own, dropzone's two, and the platform's createdBy on top."""
    own = {f"team-{number}": f"v{number}" for number in range(MAX_TAGS)}
    stage.watch["tags"] = own
    stage.put("a.jsonl")
    done = stage.dropzone("run", "--once")
    assert done.returncode == 0, done.stderr
    [job] = stage.jobs()
    tags = {tag["Key"]: tag["Value"] for tag in job["Tags"]}
    assert {key: tags[key] for key in own} == own
    assert tags.keys() >= RESERVED_TAG_KEYS
    assert [key for key in tags if key.startswith("sys:")] == ["sys:ark:createdBy"]
    assert len(tags) == MAX_TAGS + len(RESERVED_TAG_KEYS) + 1
