"""Planning: from an object and a watch rule to the CreateBatchInferenceJob request."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dropzone import plan
from dropzone.ark.models import CreateJobRequest
from dropzone.config import WatchRule, default_output_prefix

NOW = datetime(2024, 9, 18, 12, 30, tzinfo=UTC)
PREFIX = "batch-inference-job/dataset/"
DESIGN_KEY = "batch-inference-job/dataset/team-a/my-job.jsonl"
NAME_ALPHABET = re.compile(r"[A-Za-z0-9_\u4e00-\u9fa5-]{1,200}")


def make_rule(**overrides: Any) -> WatchRule:
    values: dict[str, Any] = {
        "name": "chat",
        "bucket": "my-bucket-name",
        "prefix": PREFIX,
        "model": {"name": "doubao-pro-32k", "version": "240615"},
    }
    values.update(overrides)
    return WatchRule.model_validate(values)


RULE = make_rule()


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- the design's example -------------------------------------------------------------------


def test_design_example_fields_and_output_folder() -> None:
    """The worked example of design section 3 comes out exactly as written there."""
    fields = plan.template_fields(RULE, DESIGN_KEY, NOW)
    assert fields["relpath"] == "team-a/my-job.jsonl"
    assert fields["relpath_stem"] == "team-a/my-job"
    assert fields["stem"] == "my-job"
    assert RULE.output_prefix == "batch-inference-job/output/"
    assert plan.output_dir(RULE, DESIGN_KEY, NOW) == "batch-inference-job/output/team-a/my-job/"
    assert plan.job_name(RULE, DESIGN_KEY, NOW) == "my-job"


def test_template_fields_are_all_there() -> None:
    """Every documented template field has a value, and only those do."""
    fields = plan.template_fields(RULE, DESIGN_KEY, NOW)
    assert fields == {
        "bucket": "my-bucket-name",
        "key": DESIGN_KEY,
        "prefix": PREFIX,
        "relpath": "team-a/my-job.jsonl",
        "relpath_stem": "team-a/my-job",
        "stem": "my-job",
        "date": "20240918",
        "output_prefix": "batch-inference-job/output/",
    }
    assert set(fields) == set(plan.TEMPLATE_FIELDS)


def test_design_example_request_wire_json() -> None:
    """The planned request for the example serializes to exactly the API's body."""
    obj = plan.ObjectRef("my-bucket-name", DESIGN_KEY, "9b2cf535f27731c974343645a3985328", 10)
    request = plan.plan_request(obj, make_rule(tags={"team": "nlp"}), NOW)
    assert request.wire() == {
        "Name": "my-job",
        "Description": f"dropzone: tos://my-bucket-name/{DESIGN_KEY}",
        "ModelReference": {"FoundationModel": {"Name": "doubao-pro-32k", "ModelVersion": "240615"}},
        "InputFileTosLocation": {"BucketName": "my-bucket-name", "ObjectKey": DESIGN_KEY},
        "OutputDirTosLocation": {
            "BucketName": "my-bucket-name",
            "ObjectKey": "batch-inference-job/output/team-a/my-job/",
        },
        "ProjectName": "default",
        "CompletionWindow": "1d",
        "Tags": [
            {"Key": "team", "Value": "nlp"},
            {"Key": "dropzone-input", "Value": "c0f6582c2ce3efb30c254285ecc0904f"},
            {"Key": "dropzone-watch", "Value": "chat"},
        ],
    }


# --- which keys are inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "relative"),
    [
        (DESIGN_KEY, "team-a/my-job.jsonl"),
        (PREFIX, ""),
        ("batch-inference-job/datasets.jsonl", None),
        ("other/x.jsonl", None),
        ("", None),
    ],
)
def test_relative_key(key: str, relative: str | None) -> None:
    """relative_key strips the prefix, and says None for keys outside it."""
    assert plan.relative_key(RULE, key) == relative


@pytest.mark.parametrize(
    ("rule", "key", "expected"),
    [
        (RULE, DESIGN_KEY, True),
        (RULE, PREFIX + "top.jsonl", True),
        (RULE, PREFIX + "a/b/c/deep.jsonl", True),  # "*" crosses "/"
        (RULE, PREFIX + "upper.JSONL", False),  # case-sensitive everywhere
        (RULE, PREFIX + "notes.txt", False),
        (RULE, PREFIX + "folder.jsonl/", False),  # a folder marker
        (RULE, PREFIX, False),  # the prefix itself
        (RULE, "elsewhere/x.jsonl", False),
        (make_rule(pattern="*"), PREFIX + "x.jsonl.dropzone-error.json", False),  # a report
        (make_rule(pattern="team-a/*.jsonl"), DESIGN_KEY, True),
        (make_rule(pattern="team-b/*.jsonl"), DESIGN_KEY, False),
        (
            make_rule(pattern="*/input.jsonl", output_prefix=PREFIX + "out/"),
            PREFIX + "a/input.jsonl",
            True,
        ),
        # Defense in depth: the output area inside the prefix is never read.
        (
            make_rule(pattern="*/input.jsonl", output_prefix=PREFIX + "out/"),
            PREFIX + "out/a/input.jsonl",
            False,
        ),
        # An output prefix equal to the prefix must not hide every input.
        (make_rule(pattern="*/input.jsonl", output_prefix=PREFIX), PREFIX + "a/input.jsonl", True),
    ],
)
def test_is_candidate(rule: WatchRule, key: str, expected: bool) -> None:
    """is_candidate takes matching files under the prefix and nothing else."""
    assert plan.is_candidate(rule, key) is expected


def _candidate_by_the_book(rule: WatchRule, key: str) -> bool:
    """The rule as the docs state it, with fnmatchcase on the relative path: the reference for
    the compiled filter a poll uses."""
    relpath = key.removeprefix(rule.prefix)
    if not key.startswith(rule.prefix) or not relpath or key.endswith(("/", plan.REPORT_SUFFIX)):
        return False
    output = rule.output_prefix
    in_output = output != rule.prefix and output.startswith(rule.prefix) and key.startswith(output)
    return fnmatchcase(relpath, rule.pattern) and not in_output


_KEY_PARTS = st.sampled_from(
    ["in/", "in/out/", "a", "b/", "x.jsonl", ".jsonl", "[", "*", "\n", "/"]
)


@given(
    key=st.lists(_KEY_PARTS, max_size=6).map("".join),
    pattern=st.sampled_from(["*.jsonl", "*", "a*/x.jsonl", "[ab]*", "?", "*/x.jsonl", "[!a]*"]),
    output_prefix=st.sampled_from(["in/out/", "in/", "output/"]),
)
def test_property_the_compiled_filter_follows_the_rule(
    key: str, pattern: str, output_prefix: str
) -> None:
    # Unvalidated on purpose: the filter must follow the rule even for watches the config
    # would refuse (one that feeds on its own results, say).
    rule = make_rule(prefix="in/").model_copy(
        update={"pattern": pattern, "output_prefix": output_prefix}
    )
    assert plan.candidate_filter(rule)(key) is _candidate_by_the_book(rule, key)


# --- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "relpath_stem", "stem"),
    [
        (PREFIX + "a.b/c", "a.b/c", "c"),  # a dot in a folder is no extension
        (PREFIX + "x.tar.jsonl", "x.tar", "x.tar"),  # only the last extension goes
        (PREFIX + ".hidden", ".hidden", ".hidden"),  # a leading dot is not an extension
        (PREFIX + "noext", "noext", "noext"),
    ],
)
def test_stems(key: str, relpath_stem: str, stem: str) -> None:
    """relpath_stem and stem drop only the final extension of the file name."""
    fields = plan.template_fields(RULE, key, NOW)
    assert (fields["relpath_stem"], fields["stem"]) == (relpath_stem, stem)


def test_date_is_utc() -> None:
    """The date field is the UTC date, whatever the zone of the given time."""
    beijing = timezone(timedelta(hours=8))
    early_morning = datetime(2024, 1, 1, 1, 0, tzinfo=beijing)
    assert plan.template_fields(RULE, DESIGN_KEY, early_morning)["date"] == "20231231"


def test_naive_now_and_foreign_key_are_refused() -> None:
    """A naive time or a key outside the prefix is a programming error, said loudly."""
    with pytest.raises(ValueError, match="aware"):
        plan.template_fields(RULE, DESIGN_KEY, datetime(2024, 1, 1))  # noqa: DTZ001 - the point
    with pytest.raises(ValueError, match="not under the prefix"):
        plan.template_fields(RULE, "elsewhere/x.jsonl", NOW)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{output_prefix}{relpath_stem}/", "batch-inference-job/output/team-a/my-job/"),
        ("{output_prefix}/{relpath_stem}", "batch-inference-job/output/team-a/my-job/"),
        ("/{output_prefix}//{date}///{stem}//", "batch-inference-job/output/20240918/my-job/"),
        ("results/{bucket}/{stem}", "results/my-bucket-name/my-job/"),
        ("{prefix}../out/{relpath}", "batch-inference-job/dataset/../out/team-a/my-job.jsonl/"),
    ],
)
def test_output_dir_is_a_clean_folder(template: str, expected: str) -> None:
    """The rendered output folder has no leading '/', no '//' and exactly one trailing '/'."""
    rule = make_rule(output_template=template, pattern="team-a/*")
    assert plan.output_dir(rule, DESIGN_KEY, NOW) == expected


def test_output_dir_refuses_an_empty_folder() -> None:
    """A template that renders nothing cannot name a folder: it is an error, not '/'."""
    rule = WatchRule.model_construct(  # unvalidated: load_settings refuses this rule
        name="chat",
        bucket="b",
        prefix="data/",
        output_prefix="",
        output_template="/{output_prefix}",
    )
    with pytest.raises(ValueError, match="empty folder"):
        plan.output_dir(rule, "data/x.jsonl", NOW)


FALLBACK = plan.sanitize_name("", "key")  # "dropzone-job-" and a hash of the key


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{stem}", None),
        ("{date}-{stem:.20}", None),
        ("{{literal}}-{stem}", None),
        ("{stemm}", "unknown field {stemm}"),
        ("{}", "unknown field {}"),
        ("{0}", "unknown field {0}"),
        ("{stem.upper}", "unknown field {stem.upper}"),
        ("{stem", "malformed template"),
        ("{stem:d}", "does not render"),
        ("{stem:{date}}", "inside a format spec"),
    ],
)
def test_template_error(template: str, problem: str | None) -> None:
    """Only the documented fields may appear, and a template must render."""
    found = plan.template_error(template)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("my-job", "my-job"),
        ("my job (v2)", "my-job-v2"),
        ("报告 2024", "报告-2024"),
        (
            "\uff21\uff22\uff23\uff11\uff12\uff13",
            "ABC123",
        ),  # full-width forms read as what they are
        ("snake_case__kept", "snake_case__kept"),
        ("---", FALLBACK),
        ("", FALLBACK),
        ("🙂🙂", FALLBACK),
        ("café", "caf"),  # é is not an ASCII letter
        ("e\u0301t\u00e9", "t"),  # NFKC composes e + U+0301 into é, which is not ASCII
        ("𠀀x", "x"),  # an ideograph outside U+4E00..U+9FA5
        ("Ωmega", "mega"),  # Greek letters are letters to isalnum(), not to the console
        ("٣٤", FALLBACK),  # Arabic-Indic digits are digits to isdigit(), not here
    ],
)
def test_sanitize_name(text: str, name: str) -> None:
    """Names keep ASCII letters and digits, U+4E00..U+9FA5, '-' and '_'; others become '-'."""
    assert plan.sanitize_name(text, "key") == name


def test_a_name_with_nothing_usable_is_still_one_per_key() -> None:
    """All punctuation: "dropzone-job" and 8 hex digits of the key, which tell two keys apart."""
    one, two = plan.sanitize_name("---", "in/---.jsonl"), plan.sanitize_name("---", "in/--.jsonl")
    assert re.fullmatch(r"dropzone-job-[0-9a-f]{8}", one)
    assert one != two


def test_long_name_is_cut_and_hashed() -> None:
    """A name over 200 characters is cut and ends with '-' and 8 hex digits of the key."""
    key = PREFIX + "a" * 300 + ".jsonl"
    name = plan.job_name(RULE, key, NOW)
    assert len(name) == 200
    assert re.fullmatch(r"a{191}-[0-9a-f]{8}", name)


def test_a_long_output_dir_leaves_room_for_the_result_keys() -> None:
    """A 1,024-byte key: its folder is cut to 896 bytes, ends with a hash of the key (distinct
    keys keep distinct folders) and the platform's result keys below it fit in 1,024 bytes."""
    stem = "数" * 300  # 900 bytes: a UTF-8 character must not be cut in half
    one, two = (f"{PREFIX}{stem}{tail}.jsonl" for tail in ("a" * 90, "b" * 90))
    assert len(one.encode()) == 1024
    folder = plan.output_dir(RULE, one, NOW)
    assert len(folder.encode()) <= plan.OUTPUT_DIR_MAX_BYTES
    assert re.fullmatch(re.escape(RULE.output_prefix) + r"数+-[0-9a-f]{8}/", folder), folder
    assert folder != plan.output_dir(RULE, two, NOW)
    result = f"{folder}bi-20260101000000-abcde/output/results.jsonl"
    assert len(result.encode()) <= 1024


def test_an_output_dir_just_within_the_limit_is_kept() -> None:
    stem = "x" * (plan.OUTPUT_DIR_MAX_BYTES - len(RULE.output_prefix) - 1)
    folder = plan.output_dir(RULE, f"{PREFIX}{stem}.jsonl", NOW)
    assert folder == f"{RULE.output_prefix}{stem}/"
    assert len(folder.encode()) == plan.OUTPUT_DIR_MAX_BYTES


def test_a_name_of_exactly_200_is_kept() -> None:
    """The limit is inclusive: 200 characters are not cut."""
    assert plan.job_name(RULE, PREFIX + "b" * 200 + ".jsonl", NOW) == "b" * 200


# --- tags and the request -------------------------------------------------------------------


def test_input_tag_is_pinned() -> None:
    """The tag of a known triple never changes: reconciliation across upgrades relies on it."""
    assert plan.input_tag("b", "k", "e") == "8aaf92aa2c66e850c4e193ca1bc44337"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("ab", "c", "e"), ("a", "bc", "e")),
        (("b", "k:1,", "e"), ("b", "k", ":1,e")),
        (("b", "k", ""), ("b", "", "k")),
    ],
)
def test_input_tag_encoding_is_unambiguous(
    one: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    """Moving characters between the parts changes the tag: the encoding has no seams."""
    assert plan.input_tag(*one) != plan.input_tag(*other)


def test_custom_model_and_project() -> None:
    """A custom model is referenced by ID, and the project and window come from the rule."""
    rule = make_rule(
        model=None, custom_model_id="ep-m-123", project_name="team", completion_window="7d"
    )
    wire = plan.plan_request(plan.ObjectRef("my-bucket-name", DESIGN_KEY, "e"), rule, NOW).wire()
    assert wire["ModelReference"] == {"CustomModelId": "ep-m-123"}
    assert (wire["ProjectName"], wire["CompletionWindow"]) == ("team", "7d")


def test_model_without_version() -> None:
    """A foundation model may be named without a version; the field is then left out."""
    rule = make_rule(model={"name": "doubao-pro-32k"})
    wire = plan.plan_request(plan.ObjectRef("my-bucket-name", DESIGN_KEY, "e"), rule, NOW).wire()
    assert wire["ModelReference"] == {"FoundationModel": {"Name": "doubao-pro-32k"}}


def test_description_is_cut_to_300_utf16_units() -> None:
    """Long descriptions end with '…' within 300 UTF-16 units, emoji counted as two."""
    key = PREFIX + "🙂" * 400 + ".jsonl"
    text = plan.description(plan.ObjectRef("my-bucket-name", key, "e"))
    assert text.endswith("…")
    assert 298 <= utf16_units(text) <= 300


def test_description_of_exactly_300_utf16_units_is_kept_whole() -> None:
    """The count is the console's to the unit: 300 stays whole, 301 is cut."""
    whole = plan.description(plan.ObjectRef("b", "🙂" * 141, "e"))  # 18 + 2 x 141 units
    assert utf16_units(whole) == 300
    assert not whole.endswith("…")
    cut = plan.description(plan.ObjectRef("b", "🙂" * 141 + "x", "e"))
    assert cut.endswith("…")
    assert utf16_units(cut) <= 300


def test_the_watch_tags_are_shared_and_only_the_version_tag_is_new() -> None:
    rule = make_rule(tags={"team": "nlp", "cost": "a"})
    one = plan.job_tags(rule, plan.ObjectRef("b", PREFIX + "x.jsonl", "e1"))
    other = plan.job_tags(rule, plan.ObjectRef("b", PREFIX + "y.jsonl", "e2"))
    assert [(t.key, t.value) for t in one] == [
        ("team", "nlp"),
        ("cost", "a"),
        (plan.INPUT_TAG_KEY, plan.input_tag("b", PREFIX + "x.jsonl", "e1")),
        (plan.WATCH_TAG_KEY, "chat"),
    ]
    assert one[2] != other[2]
    assert [one[0], one[1], one[3]] == [other[0], other[1], other[3]]


def test_a_rule_tag_with_a_reserved_key_takes_dropzones_value_in_its_place() -> None:
    # Unvalidated on purpose: load_settings refuses a reserved tag key, planning must not
    # send it twice for a rule that did not pass through it.
    rule = RULE.model_copy(update={"tags": {plan.WATCH_TAG_KEY: "theirs", "team": "nlp"}})
    tags = plan.job_tags(rule, plan.ObjectRef("b", PREFIX + "x.jsonl", "e1"))
    assert [(t.key, t.value) for t in tags] == [
        (plan.WATCH_TAG_KEY, "chat"),
        ("team", "nlp"),
        (plan.INPUT_TAG_KEY, plan.input_tag("b", PREFIX + "x.jsonl", "e1")),
    ]


# --- a watch feeding on its own results -----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({}, False),  # the design's defaults: dataset/ -> output/
        ({"prefix": "data/"}, False),
        ({"prefix": "data/", "output_prefix": "data/output/"}, True),
        ({"prefix": "data/", "output_prefix": "data/output/", "pattern": "*/input.jsonl"}, False),
        ({"prefix": "data/", "output_prefix": "data/output/", "pattern": "in-*.jsonl"}, False),
        ({"prefix": "data/", "output_prefix": "data/output/", "pattern": "*.csv"}, False),
        ({"prefix": "data/", "output_prefix": "data/"}, True),
        ({"prefix": ""}, True),  # the whole bucket includes "output/"
        ({"prefix": "", "pattern": "inbox/*.jsonl"}, False),
        # The template, not only output_prefix, decides where results land.
        ({"prefix": "data/", "output_template": "{prefix}{stem}-results/"}, True),
        ({"prefix": "data/", "output_template": "{output_prefix}{stem}/"}, False),
        ({"prefix": "data/", "pattern": "[a-z]*.jsonl", "output_prefix": "data/r/"}, True),
    ],
)
def test_feeds_itself(overrides: dict[str, Any], refused: bool) -> None:
    """A watch is refused exactly when its results would match its own prefix and pattern."""
    values: dict[str, Any] = {"name": "chat", "bucket": "b", "prefix": PREFIX, **overrides}
    values.setdefault("output_prefix", default_output_prefix(values["prefix"]))
    rule = WatchRule.model_construct(**values)  # unvalidated: the check itself is under test
    reason = plan.feeds_itself(rule)
    assert (reason is not None) is refused
    if reason:
        assert "results.jsonl" in reason


# --- properties over awkward keys -----------------------------------------------------------

_AWKWARD = st.sampled_from(
    [" ", "+", "%", ".", "..", "/", "//", "-", "_", "报", "告", "🙂", "\u0301", "é", "Ω", "&", "#"]
)
_SEGMENT = st.lists(
    st.one_of(_AWKWARD, st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))),
    min_size=1,
    max_size=40,
).map("".join)
_RELPATH = st.lists(_SEGMENT, min_size=1, max_size=25).map("/".join)
_LONG_RELPATH = st.integers(min_value=200, max_value=990).map(lambda n: "x" * n)


def _keys() -> st.SearchStrategy[str]:
    relpaths = st.one_of(_RELPATH, _LONG_RELPATH, _RELPATH.map(lambda r: r + ".jsonl"))
    return relpaths.map(lambda r: PREFIX + r).filter(lambda k: len(k.encode()) <= 1024)


_TEMPLATES = st.sampled_from(["{stem}", "{relpath}", "{date}-{relpath_stem}", "{key}", "{bucket}"])


@given(key=_keys(), name_template=_TEMPLATES)
def test_property_output_dir_and_name_shapes(key: str, name_template: str) -> None:
    """For any key: one trailing '/', no '//', no leading '/'; a name within the console rule."""
    rule = make_rule(name_template=name_template)
    folder = plan.output_dir(rule, key, NOW)
    assert folder.endswith("/")
    assert not folder.endswith("//")
    assert "//" not in folder
    assert not folder.startswith("/")
    name = plan.job_name(rule, key, NOW)
    assert NAME_ALPHABET.fullmatch(name)
    assert not name.startswith("-")
    assert not name.endswith("-")
    assert "--" not in name


_LONG_STEM = st.text(alphabet="abcXYZ019_报", min_size=201, max_size=400)


@given(stem=_LONG_STEM, first=_SEGMENT, second=_SEGMENT)
def test_property_long_names_stay_distinct(stem: str, first: str, second: str) -> None:
    """Distinct keys whose names must be cut still get distinct names."""
    assume(first != second)
    key_one = f"{PREFIX}{first}/{stem}.jsonl"
    key_two = f"{PREFIX}{second}/{stem}.jsonl"
    name_one = plan.job_name(RULE, key_one, NOW)
    assert len(name_one) == 200
    assert name_one != plan.job_name(RULE, key_two, NOW)


_TRIPLE = st.tuples(st.text(max_size=30), st.text(max_size=60), st.text(max_size=40))


@given(one=_TRIPLE, other=_TRIPLE)
def test_property_input_tag(one: tuple[str, str, str], other: tuple[str, str, str]) -> None:
    """The tag is a deterministic 32-hex-digit value, distinct for distinct triples."""
    tag = plan.input_tag(*one)
    assert tag == plan.input_tag(*one)
    assert re.fullmatch(r"[0-9a-f]{32}", tag)
    if one != other:
        assert tag != plan.input_tag(*other)


@given(key=_keys(), etag=st.text(alphabet="0123456789abcdef-", min_size=1, max_size=40))
def test_property_request_validates_and_wires(key: str, etag: str) -> None:
    """The request validates, survives its own wire JSON, and carries the right fields."""
    obj = plan.ObjectRef("my-bucket-name", key, etag)
    request = plan.plan_request(obj, RULE, NOW)
    wire = json.loads(json.dumps(request.wire(), ensure_ascii=False))
    assert CreateJobRequest.model_validate(wire) == request
    assert wire["InputFileTosLocation"] == {"BucketName": "my-bucket-name", "ObjectKey": key}
    assert wire["OutputDirTosLocation"]["BucketName"] == "my-bucket-name"
    assert wire["OutputDirTosLocation"]["ObjectKey"] == plan.output_dir(RULE, key, NOW)
    assert 1 <= len(wire["Name"]) <= 200
    assert 1 <= utf16_units(wire["Description"]) <= 300
    tags = {t["Key"]: t["Value"] for t in wire["Tags"]}
    assert tags == {
        plan.INPUT_TAG_KEY: plan.input_tag("my-bucket-name", key, etag),
        plan.WATCH_TAG_KEY: "chat",
    }


@given(key=_keys(), etag=st.text(min_size=1, max_size=40))
def test_property_the_body_sent_is_the_wire_form_as_json_writes_it(key: str, etag: str) -> None:
    """The bytes a Create signs and sends are, byte for byte, ``json.dumps`` of its wire form
    (compact, non-ASCII unescaped), whatever the key holds."""
    request = plan.plan_request(plan.ObjectRef("my-bucket-name", key, etag), RULE, NOW)
    written = json.dumps(request.wire(), ensure_ascii=False, separators=(",", ":"))
    assert request.wire_json() == written.encode("utf-8")


def test_the_body_sent_escapes_as_json_does() -> None:
    key = PREFIX + '团队/a "quoted"\\ \t\u2028\x7f é.jsonl'
    request = plan.plan_request(plan.ObjectRef("my-bucket-name", key, "e"), RULE, NOW)
    written = json.dumps(request.wire(), ensure_ascii=False, separators=(",", ":"))
    assert request.wire_json() == written.encode("utf-8")
    assert f'"ObjectKey":"{PREFIX}团队/a \\"quoted\\"' in written
