"""From a stored object and the watch rule that saw it to the CreateBatchInferenceJob request.

Pure: no I/O, no clock (the caller passes ``now``), no environment. What is decided here:

- which keys a watch takes as input (:func:`is_candidate`);
- where a job writes its results (:func:`output_dir`) and what it is called (:func:`job_name`);
- the ``dropzone-input`` tag that lets a restarted daemon find the job it may already have
  created (:func:`input_tag`);
- whether a watch would take its own results for new input (:func:`feeds_itself`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Protocol

from dropzone.ark.models import (
    CreateJobRequest,
    FoundationModel,
    ModelReference,
    Tag,
    TosLocation,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

INPUT_TAG_KEY = "dropzone-input"
WATCH_TAG_KEY = "dropzone-watch"
RESERVED_TAG_KEYS = frozenset({INPUT_TAG_KEY, WATCH_TAG_KEY})
REPORT_SUFFIX = ".dropzone-error.json"
# Keys that are never input: folder markers and dropzone's own reports.
_NOT_FILES = ("/", REPORT_SUFFIX)
TEMPLATE_FIELDS = (
    "bucket",
    "key",
    "prefix",
    "relpath",
    "relpath_stem",
    "stem",
    "date",
    "output_prefix",
)
NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 300
FALLBACK_NAME = "dropzone-job"
# TOS keys are at most 1,024 bytes; the platform writes {OutputDir}{job ID}/output/results.jsonl
# and {OutputDir}{job ID}/error/errors.jsonl (about 50 bytes below the folder): keep 128 free.
OUTPUT_DIR_MAX_BYTES = 1024 - 128
_NAME_HASH_HEX = 8

# The console's Name rule is "letters, digits, Chinese characters, - and _"; the API's own rule
# is unpublished. Letters and digits are ASCII only: str.isalnum() would also let through Greek,
# Arabic-Indic digits and thousands of other code points that the console may refuse. "Chinese
# characters" is read as U+4E00..U+9FA5, the range Chinese web forms check (`[\u4e00-\u9fa5]`):
# it holds the common ideographs, and keeping inside it means a name is never refused for an
# ideograph added to Unicode later than that validator was written.
_NAME_DISALLOWED = re.compile(r"[^A-Za-z0-9_\u4e00-\u9fa5-]+")
_DASH_RUNS = re.compile(r"-{2,}")
_SLASH_RUNS = re.compile(r"/{2,}")

# Where Ark writes a job's files under OutputDir (one copy of the guide says output/errors.jsonl,
# so both spellings are checked), and a job ID of the documented shape.
_SAMPLE_JOB_ID = "bi-20240918194641-r2nwq"
_RESULT_FILES = ("output/results.jsonl", "error/errors.jsonl", "output/errors.jsonl")
_SAMPLE_RELPATHS = ("input.jsonl", "team/input.jsonl", "a/b/input.jsonl")
_SAMPLE_NOW = datetime(2024, 9, 18, tzinfo=UTC)


class Layout(Protocol):
    """Which keys a watch takes and where their results land (the config's ``WatchLayout``):
    what planning reads of a watch, so that it needs no settings model (which checks its
    templates with this module)."""

    @property
    def bucket(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def output_prefix(self) -> str: ...
    @property
    def output_template(self) -> str: ...


class ModelName(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str | None: ...


class JobRule(Layout, Protocol):
    """A watch as its jobs are planned (the config's ``WatchRule``)."""

    @property
    def name(self) -> str: ...
    @property
    def name_template(self) -> str: ...
    @property
    def project_name(self) -> str: ...
    @property
    def model(self) -> ModelName | None: ...
    @property
    def custom_model_id(self) -> str | None: ...
    @property
    def completion_window(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class ObjectRef:
    """One version of one object: what a job is planned for."""

    bucket: str
    key: str
    etag: str
    size: int | None = None


def relative_key(rule: Layout, key: str) -> str | None:
    """The key below the watch's prefix, or None when the key is not under it."""
    if not key.startswith(rule.prefix):
        return None
    return key[len(rule.prefix) :]


def _pattern_filter(rule: Layout) -> Callable[[str], bool]:
    """Under the prefix, a file (not a folder marker, not a report) and matching the pattern;
    the pattern compiled once, as a poll asks this of every key."""
    prefix, start = rule.prefix, len(rule.prefix)
    matches = re.compile(fnmatch.translate(rule.pattern)).match

    def accepts(key: str) -> bool:
        if len(key) <= start or not key.startswith(prefix) or key.endswith(_NOT_FILES):
            return False
        return matches(key, start) is not None

    return accepts


def _matches_pattern(rule: Layout, key: str) -> bool:
    return _pattern_filter(rule)(key)


def candidate_filter(rule: JobRule) -> Callable[[str], bool]:
    """``is_candidate`` for one rule, to ask of many keys."""
    prefix, output = rule.prefix, rule.output_prefix
    is_input = _pattern_filter(rule)
    # Only an output prefix strictly inside the watched prefix is skipped: one equal to the
    # prefix would otherwise hide every input.
    if output == prefix or not output.startswith(prefix):
        return is_input
    return lambda key: is_input(key) and not key.startswith(output)


def is_candidate(rule: JobRule, key: str) -> bool:
    """Whether the watch takes this key as input."""
    return candidate_filter(rule)(key)


def template_fields(rule: Layout, key: str, now: datetime) -> dict[str, str]:
    """The values a template may use, for a key under the watch's prefix."""
    relpath = relative_key(rule, key)
    if relpath is None:
        raise ValueError(f"key {key!r} is not under the prefix {rule.prefix!r}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return {
        "bucket": rule.bucket,
        "key": key,
        "prefix": rule.prefix,
        "relpath": relpath,
        "relpath_stem": posixpath.splitext(relpath)[0],
        "stem": posixpath.splitext(posixpath.basename(relpath))[0],
        "date": _day(now.astimezone(UTC)),
        "output_prefix": rule.output_prefix,
    }


def _day(utc: datetime) -> str:
    # strftime costs five times this, and planning asks it of every job.
    return "%04d%02d%02d" % (utc.year, utc.month, utc.day)  # noqa: UP031 - the cheapest here


def template_error(template: str) -> str | None:
    """What is wrong with a template string, or None when it renders."""
    try:
        parsed = [(name, spec) for _, name, spec, _ in string.Formatter().parse(template)]
    except ValueError as exc:
        return f"malformed template {template!r}: {exc}"
    if any(spec and "{" in spec for _, spec in parsed):
        return f"template {template!r}: fields inside a format spec are not supported"
    unknown = [name for name, _ in parsed if name is not None and name not in TEMPLATE_FIELDS]
    if unknown:
        allowed = ", ".join(TEMPLATE_FIELDS)
        return f"unknown field {{{unknown[0]}}} in {template!r}; fields: {allowed}"
    try:
        template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x"))
    except (ValueError, TypeError) as exc:
        return f"template {template!r} does not render: {exc}"
    return None


def output_dir(rule: Layout, key: str, now: datetime) -> str:
    """The job's OutputDir: the rendered output_template as a folder, ``a/b/`` shaped.

    One longer than ``OUTPUT_DIR_MAX_BYTES`` is cut and ends with a hash of the key, so that
    the platform's result keys below it stay within TOS's 1,024 bytes and distinct keys keep
    distinct folders.
    """
    return _output_dir(rule, key, template_fields(rule, key, now))


def _output_dir(rule: Layout, key: str, fields: Mapping[str, str]) -> str:
    rendered = rule.output_template.format(**fields)
    folder = _SLASH_RUNS.sub("/", rendered).strip("/")
    if not folder:
        raise ValueError(f"output_template {rule.output_template!r} renders an empty folder")
    encoded = folder.encode("utf-8", "surrogatepass")
    if len(encoded) + 1 > OUTPUT_DIR_MAX_BYTES:
        room = OUTPUT_DIR_MAX_BYTES - _NAME_HASH_HEX - 2  # "-", the hash, "/"
        head = encoded[:room].decode("utf-8", "ignore")
        folder = f"{head.rstrip('/-')}-{_short_hash(key)}"
    return folder + "/"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_NAME_HASH_HEX]


def sanitize_name(text: str, key: str) -> str:
    """A Name the console accepts; ``key`` keeps names that had to be cut distinct."""
    # NFKC first, so full-width letters and digits (common in CJK file names) stay readable.
    name = _NAME_DISALLOWED.sub("-", unicodedata.normalize("NFKC", text))
    name = _DASH_RUNS.sub("-", name).strip("-")
    if len(name) > NAME_MAX_CHARS:
        head = name[: NAME_MAX_CHARS - _NAME_HASH_HEX - 1].rstrip("-")
        name = f"{head}-{_short_hash(key)}"
    # Nothing usable left (all punctuation, or letters of other scripts): still one name per key.
    return name or f"{FALLBACK_NAME}-{_short_hash(key)}"


def job_name(rule: JobRule, key: str, now: datetime) -> str:
    """The job's Name: the rendered name_template, sanitized to the console's rule."""
    return _job_name(rule, key, template_fields(rule, key, now))


def _job_name(rule: JobRule, key: str, fields: Mapping[str, str]) -> str:
    return sanitize_name(rule.name_template.format(**fields), key)


def _cut_utf16(text: str, limit: int) -> str:
    # The console counts characters the JavaScript way (UTF-16 units): an emoji counts twice.
    # Counted in C first: nearly every text fits, and the loop below costs a step a character.
    if len(text) * 2 <= limit or len(text.encode("utf-16-le", "surrogatepass")) <= limit * 2:
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[: max(index - 1, 0)] + "…"
    return text


def description(obj: ObjectRef) -> str:
    return _cut_utf16(f"dropzone: tos://{obj.bucket}/{obj.key}", DESCRIPTION_MAX_CHARS)


# A version's tag is asked for by the prior-job look-ahead, its look-up and its request: kept
# for the versions in flight rather than hashed three times.
@lru_cache(maxsize=4096)
def input_tag(bucket: str, key: str, etag: str) -> str:
    """The ``dropzone-input`` tag value: 32 hex digits naming one version of one object.

    Reconciliation finds jobs by this value, so it must never change between versions of
    dropzone: a different hash would make every job created before an upgrade unfindable, and an
    input whose Create outcome was unknown would be submitted a second time.
    Each part is length-prefixed (netstring style) so that no two triples share an encoding.
    """
    encoded = b"dropzone-input/1\n"
    for part in (bucket, key, etag):
        data = part.encode("utf-8", "surrogatepass")
        encoded += b"%d:%s," % (len(data), data)
    return hashlib.sha256(encoded).hexdigest()[:32]


def model_reference(rule: JobRule) -> ModelReference:
    if rule.model is not None:
        return _model_reference(rule.model.name, rule.model.version, None)
    return _model_reference(None, None, rule.custom_model_id)


@cache
def _model_reference(name: str | None, version: str | None, custom: str | None) -> ModelReference:
    # Built once per model: the same (frozen) reference serves every request of a watch, and
    # validating it again cost a fifth of planning one.
    if name is not None:
        return ModelReference(foundation_model=FoundationModel(name=name, model_version=version))
    return ModelReference(custom_model_id=custom)


def job_tags(rule: JobRule, obj: ObjectRef) -> tuple[Tag, ...]:
    version = Tag(key=INPUT_TAG_KEY, value=input_tag(obj.bucket, obj.key, obj.etag))
    if RESERVED_TAG_KEYS.isdisjoint(rule.tags):
        head, watch = _watch_tags(tuple(rule.tags.items()), rule.name)
        return (*head, version, watch)
    # A rule the config did not check (the config refuses reserved keys): ours win, in place.
    own = {INPUT_TAG_KEY: version.value, WATCH_TAG_KEY: rule.name}
    return tuple(Tag(key=k, value=v) for k, v in {**rule.tags, **own}.items())


@lru_cache(maxsize=256)
def _watch_tags(tags: tuple[tuple[str, str], ...], watch: str) -> tuple[tuple[Tag, ...], Tag]:
    # The same (frozen) tags serve every request of a watch; only the version's is new.
    return tuple(Tag(key=k, value=v) for k, v in tags), Tag(key=WATCH_TAG_KEY, value=watch)


def plan_request(obj: ObjectRef, rule: JobRule, now: datetime) -> CreateJobRequest:
    """The CreateBatchInferenceJob request for one object version seen by one watch."""
    fields = template_fields(rule, obj.key, now)
    return CreateJobRequest(
        name=_job_name(rule, obj.key, fields),
        description=description(obj),
        model_reference=model_reference(rule),
        input_file_tos_location=TosLocation(bucket_name=obj.bucket, object_key=obj.key),
        output_dir_tos_location=TosLocation(
            bucket_name=obj.bucket, object_key=_output_dir(rule, obj.key, fields)
        ),
        project_name=rule.project_name,
        completion_window=rule.completion_window,
        tags=job_tags(rule, obj),
    )


def _sample_relpaths(pattern: str) -> list[str]:
    derived = [re.sub(r"\*+|\?", filler, pattern) for filler in ("x", "team/x")]
    return [*derived, *_SAMPLE_RELPATHS]


def feeds_itself(rule: Layout) -> str | None:
    """Why the watch would take its own results for input, or None when it would not.

    Checked on the rendered output folder of representative input keys (output_template can
    put results anywhere, not only under output_prefix), against the prefix and the pattern
    alone. The output-prefix skip in :func:`is_candidate` is deliberately not counted: it only
    covers the *current* output_prefix, so after an edit of output_prefix or output_template
    every earlier result file would become new input. Only a pattern that excludes the results
    makes such a layout safe, as the design's contract says.
    """
    samples = [rule.prefix + relpath for relpath in _sample_relpaths(rule.pattern)]
    inputs = [key for key in samples if _matches_pattern(rule, key)] or samples
    for key in inputs:
        folder = output_dir(rule, key, _SAMPLE_NOW)
        for result in _RESULT_FILES:
            produced = f"{folder}{_SAMPLE_JOB_ID}/{result}"
            if _matches_pattern(rule, produced):
                return (
                    f"output_template/output_prefix put results under the watched prefix "
                    f"{rule.prefix!r} where the pattern {rule.pattern!r} matches them "
                    f"(input {key!r} -> result {produced!r}): the watch would submit its own "
                    f"results; set output_prefix outside the prefix or narrow the pattern"
                )
    return None
