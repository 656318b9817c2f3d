"""Settings: the TOML file, environment overrides, error reports and credentials."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from dropzone import config
from dropzone.config import (
    ArkSettings,
    ConfigError,
    Settings,
    config_path,
    default_output_prefix,
    load_credentials,
    load_settings,
)
from dropzone.config.model import redact
from dropzone.config.notify import NotifySettings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "dropzone.toml"
WATCH = """
[[watch]]
name = "chat"
bucket = "my-bucket"
prefix = "batch-inference-job/dataset/"
model = { name = "doubao-pro-32k", version = "240615" }
"""
AK = "AKLTexampleaccesskey"
SK = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
TOKEN = "STS-token-very-secret"


def write(tmp_path: Path, text: str, name: str = "dropzone.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, text), env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env or {})
    assert caught.value.path == path
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert len(lines) == len(caught.value.problems)
    return caught.value.problems


# --- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "default"),
    [
        ("ark.endpoint", "https://open.volcengineapi.com"),
        ("ark.region", "cn-beijing"),
        ("ark.timeout_s", 30),
        ("ark.connect_timeout_s", 5),
        ("ark.max_requests_per_second", 5),
        ("ark.access_key_file", None),
        ("ark.secret_key_file", None),
        ("ark.session_token_file", None),
        ("tos.endpoint", "https://tos-s3-cn-beijing.volces.com"),
        ("tos.region", "cn-beijing"),
        ("tos.addressing_style", "virtual"),
        ("ledger.path", Path("/var/lib/dropzone/ledger.sqlite3")),
        ("ledger.retention_days", 30),
        ("daemon.poll_interval_s", 30),
        ("daemon.track_interval_s", 60),
        ("daemon.concurrency", 4),
        ("daemon.listen", "127.0.0.1:9464"),
        ("daemon.listen_address", ("127.0.0.1", 9464)),
        ("daemon.drain_timeout_s", 30),
        ("daemon.once_max_wait_s", 300),
        ("daemon.log_level", "info"),
        ("watches[0].pattern", "*.jsonl"),
        ("watches[0].output_prefix", "batch-inference-job/output/"),
        ("watches[0].output_template", "{output_prefix}{relpath_stem}/"),
        ("watches[0].name_template", "{stem}"),
        ("watches[0].project_name", "default"),
        ("watches[0].custom_model_id", None),
        ("watches[0].completion_window", "1d"),
        ("watches[0].tags", {}),
        ("watches[0].on_start", "skip-existing"),
        ("watches[0].on_change", "resubmit"),
        ("watches[0].preflight", False),
        ("watches[0].report", False),
        ("watches[0].min_age_s", 5),
        ("watches[0].local_dir", None),
        ("watches[0].local_mode", "upload"),
        ("watches[0].settle_s", 2),
        ("watches[0].sync_timeout_s", 300),
        ("watches[0].ignore", (".*", "*.tmp", "*.part", "*~", "*.crdownload", "*.swp")),
        ("watches[0].max_active_jobs", None),
    ],
)
def test_defaults(tmp_path: Path, setting: str, default: object) -> None:
    """A file with one minimal watch gets every other setting at its documented default."""
    settings = load(tmp_path, WATCH)
    owner, _, attribute = setting.partition(".")
    holder = settings.watches[0] if owner == "watches[0]" else getattr(settings, owner)
    assert getattr(holder, attribute) == default


@pytest.mark.parametrize(
    ("prefix", "output_prefix"),
    [
        ("batch-inference-job/dataset/", "batch-inference-job/output/"),
        ("a/b/c/", "a/b/output/"),
        ("data/", "output/"),
        ("", "output/"),
    ],
)
def test_default_output_prefix(prefix: str, output_prefix: str) -> None:
    """The default output prefix sits beside the watched folder."""
    assert default_output_prefix(prefix) == output_prefix


@pytest.mark.parametrize(
    ("line", "prefix", "output_prefix"),
    [
        ('prefix = "inbox"', "inbox/", "output/"),
        ('prefix = "a/inbox"\noutput_prefix = "results"', "a/inbox/", "results/"),
        ('prefix = ""\npattern = "in/*"', "", "output/"),
        ('prefix = "a/in/"\noutput_prefix = ""', "a/in/", ""),
    ],
)
def test_prefixes_are_folders(tmp_path: Path, line: str, prefix: str, output_prefix: str) -> None:
    """A prefix without a trailing '/' means that folder; "" stays the whole bucket."""
    text = f'[[watch]]\nname = "w"\nbucket = "b"\ncustom_model_id = "ep-1"\n{line}\n'
    rule = load(tmp_path, text).watches[0]
    assert (rule.prefix, rule.output_prefix) == (prefix, output_prefix)


def test_settings_are_frozen(tmp_path: Path) -> None:
    """The settings object cannot be changed after loading."""
    settings = load(tmp_path, WATCH)
    with pytest.raises(ValidationError):
        settings.daemon.concurrency = 8  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.watches[0].bucket = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("listen", "address"),
    [("", None), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9464", ("::1", 9464))],
)
def test_listen_address(tmp_path: Path, listen: str, address: object) -> None:
    """listen splits into a socket address; "" disables the endpoint."""
    settings = load(tmp_path, f'[daemon]\nlisten = "{listen}"\n{WATCH}')
    assert settings.daemon.listen_address == address


def test_full_watch_loads(tmp_path: Path) -> None:
    """Every watch setting given explicitly is taken as given."""
    text = """
[[watch]]
name = "team.a-1"
bucket = "b"
prefix = "in/"
pattern = "*/input.jsonl"
output_prefix = "in/out/"
output_template = "{output_prefix}{date}/{relpath_stem}/"
name_template = "{date}-{stem}"
project_name = "p"
custom_model_id = "ep-123"
completion_window = "28d"
tags = { team = "nlp", "cost centre" = "42" }
on_start = "submit-existing"
on_change = "ignore"
validate = true
report = true
min_age_s = 0
local_dir = "/srv/in"
local_mode = "mounted"
settle_s = 0.5
sync_timeout_s = 10
ignore = ["*.bak"]
max_active_jobs = 3
"""
    rule = load(tmp_path, text).watches[0]
    assert rule.preflight is True
    assert rule.report is True
    assert rule.local_dir == Path("/srv/in")
    assert rule.tags == {"team": "nlp", "cost centre": "42"}
    assert rule.ignore == ("*.bak",)
    assert (rule.max_active_jobs, rule.settle_s, rule.completion_window) == (3, 0.5, "28d")


# --- validation errors ----------------------------------------------------------------------

BAD_SECTIONS = [
    ('[ark]\nendpoint = "ftp://x"', "ark.endpoint", "is not http(s)://host[:port]"),
    ('[ark]\nendpoint = "https://h/path"', "ark.endpoint", "no path"),
    ('[ark]\nendpoint = "https://h:99999"', "ark.endpoint", "invalid port"),
    ("[ark]\ntimeout_s = 0", "ark.timeout_s", "must be above 0, at most 3600 (got 0)"),
    ("[ark]\ntimeout_s = nan", "ark.timeout_s", "finite number above 0, at most 3600"),
    ("[ark]\nconnect_timeout_s = -1", "ark.connect_timeout_s", "above 0, at most 3600"),
    ("[ark]\nmax_requests_per_second = 0", "ark.max_requests_per_second", "from 0.01 to 100000"),
    ('[ark]\nregion = ""', "ark.region", "at least 1 character"),
    ('[tos]\naddressing_style = "virtul"', "tos.addressing_style", "'virtual', 'path' or 'auto'"),
    ("[ledger]\nretention_days = 0", "ledger.retention_days", "from 1 to 3650 (got 0)"),
    ("[daemon]\npoll_interval_s = 0", "daemon.poll_interval_s", "from 0.1 to 86400"),
    ("[daemon]\ntrack_interval_s = -1", "daemon.track_interval_s", "from 0 to 86400"),
    ("[daemon]\nconcurrency = 0", "daemon.concurrency", "out of range: must be from 1 to 64"),
    ("[daemon]\nconcurrency = 65", "daemon.concurrency", "from 1 to 64 (got 65)"),
    ("[daemon]\nconcurrency = 2.5", "daemon.concurrency", "expected an integer (got 2.5)"),
    ('[daemon]\nlisten = "9464"', "daemon.listen", 'is not "host:port"'),
    ('[daemon]\nlisten = "::1:9464"', "daemon.listen", 'is not "host:port"'),
    ('[daemon]\nlisten = "h:65536"', "daemon.listen", 'is not "host:port"'),
    ("[daemon]\nmax_transient_attempts = 10", "daemon.max_transient_attempts", "never reject"),
    ("[daemon]\ndrain_timeout_s = -1", "daemon.drain_timeout_s", "from 0 to 3600"),
    ("[daemon]\nonce_max_wait_s = -1", "daemon.once_max_wait_s", "from 0 to 86400"),
    ('[daemon]\nlog_level = "verbose"', "daemon.log_level", "'debug', 'info', 'warning' or"),
    # Issue 12 item 6: each was taken, then crashed the daemon with a traceback.
    ("[ledger]\nretention_days = 1000000", "ledger.retention_days", "(got 1000000)"),
    ("[ark]\ntimeout_s = 1e300", "ark.timeout_s", "at most 3600 (got 1e+300)"),
    ("[ark]\nmax_requests_per_second = 1e-300", "ark.max_requests_per_second", "(got 1e-300)"),
    ("[daemon]\ndrain_timeout_s = 1e300", "daemon.drain_timeout_s", "to 3600 (got 1e+300)"),
    ("[tos]\nconnect_timeout_s = inf", "tos.connect_timeout_s", "finite number above 0"),
    ("[daemon]\nonce_max_wait_s = -inf", "daemon.once_max_wait_s", "(got -Infinity)"),
    ('[ledger]\npath = ""', "ledger.path", "must not be empty: give a path, or leave the"),
    ('[ark]\nsecret_key_file = "  "', "ark.secret_key_file", "must not be empty"),
]


@pytest.mark.parametrize(("text", "setting", "message"), BAD_SECTIONS)
def test_section_errors(tmp_path: Path, text: str, setting: str, message: str) -> None:
    """Each out-of-range section setting is refused with the file, the setting and the reason."""
    found = problems(tmp_path, f"{text}\n{WATCH}")
    assert len(found) == 1
    assert found[0].startswith(f"{setting}: ")
    assert message in found[0]


def test_after_active_needs_job_tracking(tmp_path: Path) -> None:
    """on_change = "after-active" waits for a job that only tracking sees end: with tracking
    off the watch is refused, naming both settings; with tracking on it is taken."""
    text = f'[daemon]\ntrack_interval_s = 0\n{WATCH}on_change = "after-active"\n'
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("watch: watch 'chat': ")
    assert 'on_change = "after-active"' in problem
    assert "[daemon] track_interval_s above 0" in problem
    tracked = write(tmp_path, text.replace("track_interval_s = 0", "track_interval_s = 5"))
    assert load_settings(tracked, {}).watches[0].on_change == "after-active"


BAD_WATCHES = [
    ('name = "bad name"', ".name", "letters, digits"),
    ('name = ""', ".name", "letters, digits"),
    ('bucket = ""', ".bucket", "at least 1 character"),
    ('prefix = "/abs/"', ".prefix", "must not start with '/'"),
    ('output_prefix = "/out"', ".output_prefix", "must not start with '/'"),
    ('pattern = ""', ".pattern", "at least 1 character"),
    ('output_template = "{output_prefix}{stemm}/"', ".output_template", "unknown field {stemm}"),
    ('output_template = "{}"', ".output_template", "unknown field {}"),
    ('name_template = "{stem"', ".name_template", "malformed template"),
    ('name_template = "{stem:d}"', ".name_template", "does not render"),
    ('project_name = ""', ".project_name", "at least 1 character"),
    ('completion_window = "0d"', ".completion_window", '"1d" to "28d"'),
    ('completion_window = "29d"', ".completion_window", '"1d" to "28d"'),
    ('completion_window = "01d"', ".completion_window", '"1d" to "28d"'),
    ('completion_window = "24h"', ".completion_window", '"1d" to "28d"'),
    ('tags = { "dropzone-input" = "x" }', ".tags", "'dropzone-input' is reserved"),
    ('tags = { "dropzone-watch" = "x" }', ".tags", "'dropzone-watch' is reserved"),
    ('tags = { "sys:ark" = "x" }', ".tags", "belong to the platform"),
    ('tags = { "" = "x" }', ".tags", "1-128 characters"),
    (f'tags = {{ k = "{"v" * 257}" }}', ".tags", "at most 256"),
    ("tags = { k = 1 }", ".tags.k", "expected a string (got 1)"),
    ('on_start = "skip"', ".on_start", "'skip-existing' or 'submit-existing'"),
    ('on_change = "always"', ".on_change", "'resubmit', 'ignore' or 'after-active'"),
    ('validate = "maybe"', ".validate", 'expected true or false (got "maybe")'),
    ("min_age_s = -1", ".min_age_s", "from 0 to 86400"),
    ("min_age_s = 1e12", ".min_age_s", "from 0 to 86400 (got 1000000000000.0)"),
    ('local_mode = "fuse"', ".local_mode", "'upload', 'synced' or 'mounted'"),
    ("settle_s = -0.5", ".settle_s", "from 0 to 3600"),
    ("settle_s = inf", ".settle_s", "finite number from 0 to 3600 (got Infinity)"),
    ("sync_timeout_s = 0", ".sync_timeout_s", "above 0, at most 86400"),
    ('ignore = [""]', ".ignore[0]", "at least 1 character"),
    ("max_active_jobs = 0", ".max_active_jobs", "from 1 to 10000 (got 0)"),
    ("max_active_jobs = 10001", ".max_active_jobs", "from 1 to 10000 (got 10001)"),
    ('local_dir = ""', ".local_dir", "must not be empty"),
    ('custom_model_id = "ep-1"', ".model", "exactly one of model"),
    ('model = { version = "1" }', ".model.name", "required setting is missing"),
]


@pytest.mark.parametrize(("line", "setting", "message"), BAD_WATCHES)
def test_watch_errors(tmp_path: Path, line: str, setting: str, message: str) -> None:
    """Each bad watch setting is refused naming the watch by index and name, and the setting."""
    key = line.split(" =", maxsplit=1)[0]
    base = [ln for ln in WATCH.strip().splitlines() if not ln.startswith(f"{key} =")]
    found = problems(tmp_path, "\n".join([*base, line]) + "\n")
    assert len(found) == 1, found
    assert re.match(r'watch\[0\]( \(name "[^"]*"\))?' + re.escape(setting) + ": ", found[0])
    assert message in found[0]


def test_too_many_tags(tmp_path: Path) -> None:
    """More than 20 tags on a watch is refused, with the budget the job's tags come from."""
    tags = ", ".join(f"t{i} = 'v'" for i in range(21))
    found = problems(tmp_path, f"{WATCH}tags = {{ {tags} }}\n")
    expected = (
        'watch[0] (name "chat").tags: at most 20 tags (dropzone adds 2 of its own to each job, '
        "and the platform its 'sys:' tags)"
    )
    assert found == [expected]


def test_a_model_is_required(tmp_path: Path) -> None:
    """A watch with neither model nor custom_model_id is refused at .model."""
    text = '[[watch]]\nname = "chat"\nbucket = "b"\nprefix = "in/"\n'
    assert problems(tmp_path, text) == [
        (
            'watch[0] (name "chat").model: set exactly one of '
            "model = { name = ..., version = ... } or custom_model_id"
        )
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "watch: at least one [[watch]] table is required"),
        ("watch = []", "watch: at least one [[watch]] table is required"),
        ('[watch]\nname = "x"', "watch: expected [[watch]] tables (an array of tables)"),
        (
            WATCH + WATCH.replace('"chat"', '"Chat"'),
            "watch: watch names must be unique (ignoring case): watch[0] and watch[1]",
        ),
        (
            '[[watch]]\nbucket = "b"\nprefix = "in/"\ncustom_model_id = "m"',
            "watch[0].name: required setting",
        ),
    ],
)
def test_watch_list_errors(tmp_path: Path, text: str, message: str) -> None:
    """The watch list needs at least one watch, as an array of tables, with unique names."""
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(message)


def test_a_watch_feeding_on_itself_is_refused(tmp_path: Path) -> None:
    """Results under the watched prefix that match its pattern are refused at load time."""
    found = problems(tmp_path, f'{WATCH}output_prefix = "batch-inference-job/dataset/out/"\n')
    assert len(found) == 1
    assert found[0].startswith('watch[0] (name "chat"): output_template/output_prefix put results')
    assert "would submit its own results" in found[0]


def test_an_output_template_rendering_nothing_is_refused(tmp_path: Path) -> None:
    """A template that can render an empty output folder is refused at load time."""
    found = problems(
        tmp_path, f'{WATCH}output_prefix = ""\noutput_template = "/{{output_prefix}}"\n'
    )
    assert found == [
        "watch[0] (name \"chat\"): output_template '/{output_prefix}' renders an empty folder"
    ]


def test_a_feeding_watch_is_reported_with_its_other_problems(tmp_path: Path) -> None:
    """A watch feeding on its own results is reported even when other settings of the same watch
    are wrong, in the same error as them and as the problems of another watch."""
    text = f"""{WATCH}output_prefix = "batch-inference-job/dataset/out/"
min_age_s = "soon"
patern = "*.json"

[[watch]]
name = "embed"
bucket = "b"
prefix = "in/"
output_prefix = "in/results/"
custom_model_id = "ep"
on_start = "later"
"""
    found = problems(tmp_path, text)
    assert [line.split(": ")[0] for line in found] == [
        'watch[0] (name "chat").min_age_s',
        'watch[0] (name "chat").patern',
        'watch[0] (name "chat")',
        'watch[1] (name "embed").on_start',
        'watch[1] (name "embed")',
    ]
    for line, prefix in [(found[2], "batch-inference-job/dataset/"), (found[4], "in/")]:
        assert line.startswith(
            f"{line.split(': ')[0]}: output_template/output_prefix put results under the watched "
            f"prefix {prefix!r} where the pattern '*.jsonl' matches them"
        )
        assert "the watch would submit its own results" in line


def test_a_feeding_check_is_not_guessed_from_a_wrong_layout(tmp_path: Path) -> None:
    """When a setting the check reads is itself wrong, only the wrong settings are reported."""
    text = WATCH.replace('prefix = "batch-inference-job/dataset/"', "prefix = 3")
    found = problems(tmp_path, f'{text}output_prefix = "out/"\nmin_age_s = "soon"\n')
    assert [line.split(": ")[0] for line in found] == [
        'watch[0] (name "chat").prefix',
        'watch[0] (name "chat").min_age_s',
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Problems in several sections and watches come out together, one line each."""
    text = """
[ark]
timeout_s = 0
[tos]
addressing_style = "sideways"
[daemon]
concurrency = 0
listen = "nowhere"

[[watch]]
name = "chat"
bucket = "b"
prefix = "in/"
model = { name = "m" }
completion_window = "99d"

[[watch]]
name = "embed"
bucket = "b"
prefix = "in/"
custom_model_id = "ep"
on_start = "later"
"""
    found = problems(tmp_path, text)
    assert [line.split(":")[0] for line in found] == [
        "ark.timeout_s",
        "tos.addressing_style",
        "daemon.concurrency",
        "daemon.listen",
        'watch[0] (name "chat").completion_window',
        'watch[1] (name "embed").on_start',
    ]


# --- unknown keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"[daemn]\nconcurrency = 2\n{WATCH}", "daemn: unknown setting (did you mean 'daemon'?)"),
        (
            f"[daemon]\npoll_intervl_s = 3\n{WATCH}",
            "daemon.poll_intervl_s: unknown setting (did you mean 'poll_interval_s'?)",
        ),
        (
            f'{WATCH}patern = "*.json"\n',
            "watch[0] (name \"chat\").patern: unknown setting (did you mean 'pattern'?)",
        ),
        (
            WATCH.replace("version", "verison"),
            "watch[0] (name \"chat\").model.verison: unknown setting (did you mean 'version'?)",
        ),
        (
            f"{WATCH}preflight = true\n",
            "watch[0] (name \"chat\").preflight: unknown setting (did you mean 'prefix'?)",
        ),
        (f"[ark]\nzzz = 1\n{WATCH}", "ark.zzz: unknown setting"),
        (f'_secrets_dir = "/"\n{WATCH}', "_secrets_dir: unknown setting"),
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, expected: str) -> None:
    """A misspelt key is an error naming it, with the closest known key when there is one."""
    assert problems(tmp_path, text) == [expected]


def test_unknown_key_value_is_never_shown(tmp_path: Path) -> None:
    """A secret pasted under a wrong key (say [ark] secret_key) does not appear in the error."""
    message = str(problems(tmp_path, f'[ark]\nsecret_key = "{SK}"\n{WATCH}'))
    assert "secret_key: unknown setting" in message
    assert SK not in message


def test_credentials_in_an_endpoint_are_refused_without_showing_them(tmp_path: Path) -> None:
    """An endpoint carrying user:password is refused, and the password is not repeated."""
    found = problems(tmp_path, f'[tos]\nendpoint = "ftp://ak:{SK}@host"\n{WATCH}')
    assert found == [
        "tos.endpoint: must not carry credentials; they come from the environment or files"
    ]


# --- the file itself ------------------------------------------------------------------------


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error says where it is: line and column."""
    found = problems(tmp_path, "[daemon]\nconcurrency = 4\nlisten 9464\n")
    assert len(found) == 1
    assert found[0].startswith("TOML syntax error: ")
    assert "line 3, column 8" in found[0]


def test_missing_file(tmp_path: Path) -> None:
    """A missing config file is one clear error naming the path and how to choose another."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert str(caught.value) == (
        f"{path}: config file not found (give -c FILE or set DROPZONE_CONFIG)"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    """A path that cannot be read (here a folder) is an error naming it."""
    with pytest.raises(ConfigError, match="cannot read the config file") as caught:
        load_settings(tmp_path, {})
    assert caught.value.path == tmp_path


def test_file_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused with the byte offset, not the bytes."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(at byte 5\)"):
        load_settings(path, {})


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [
        ("/a.toml", {"DROPZONE_CONFIG": "/b.toml"}, Path("/a.toml")),
        (None, {"DROPZONE_CONFIG": "/b.toml"}, Path("/b.toml")),
        (None, {"DROPZONE_CONFIG": ""}, Path("/etc/dropzone/dropzone.toml")),
        (None, {}, Path("/etc/dropzone/dropzone.toml")),
        ("", {}, Path("/etc/dropzone/dropzone.toml")),
    ],
)
def test_config_path(cli: str | None, env: dict[str, str], expected: Path) -> None:
    """-c FILE, else $DROPZONE_CONFIG, else /etc/dropzone/dropzone.toml."""
    assert config_path(cli, env) == expected


# --- environment overrides ------------------------------------------------------------------


def test_section_override_wins_over_file(tmp_path: Path) -> None:
    """DROPZONE_<SECTION>__<KEY> replaces the file's value and is parsed to the setting's type."""
    text = f"[daemon]\npoll_interval_s = 30\n{WATCH}"
    env = {
        "DROPZONE_DAEMON__POLL_INTERVAL_S": "5",
        "dropzone_daemon__listen": "",  # names are case-insensitive
        "DROPZONE_TOS__ADDRESSING_STYLE": "auto",
        "DROPZONE_LEDGER__PATH": "/tmp/l.sqlite3",
        "DROPZONE_ARK__SECRET_KEY_FILE": "/run/sk",
    }
    settings = load(tmp_path, text, env)
    assert settings.daemon.poll_interval_s == 5
    assert settings.daemon.listen_address is None
    assert settings.tos.addressing_style == "auto"
    assert settings.ledger.path == Path("/tmp/l.sqlite3")
    assert settings.ark.secret_key_file == Path("/run/sk")


def test_unrelated_variables_are_ignored(tmp_path: Path) -> None:
    """DROPZONE_CONFIG and DROPZONE_ names without '__' are not overrides."""
    env = {"DROPZONE_CONFIG": "/x.toml", "DROPZONE_LOG_FORMAT": "json", "OTHER__X": "1"}
    assert load(tmp_path, WATCH, env).daemon.concurrency == 4


def test_os_environ_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the given mapping counts: pydantic-settings' own sources are switched off."""
    monkeypatch.setenv("DROPZONE_DAEMON__CONCURRENCY", "9")
    monkeypatch.setenv("DAEMON", '{"concurrency": 9}')
    monkeypatch.setenv("CONCURRENCY", "9")
    assert load(tmp_path, WATCH, {}).daemon.concurrency == 4


def test_watch_override_by_name(tmp_path: Path) -> None:
    """DROPZONE_WATCH__<NAME>__<KEY> changes that watch only, '-' and '.' written as '_'."""
    text = WATCH + WATCH.replace('"chat"', '"team-a.v2"')
    env = {
        "DROPZONE_WATCH__TEAM_A_V2__MIN_AGE_S": "0",
        "DROPZONE_WATCH__TEAM_A_V2__VALIDATE": "true",
        "DROPZONE_WATCH__TEAM_A_V2__TAGS__TEAM": "nlp",
        "DROPZONE_WATCH__TEAM_A_V2__IGNORE": '["*.bak"]',
        "DROPZONE_WATCH__TEAM_A_V2__MODEL__VERSION": "250101",
        "DROPZONE_WATCH__TEAM_A_V2__PREFIX": "other/in/",
    }
    chat, team = load(tmp_path, text, env).watches
    assert (chat.min_age_s, chat.preflight, chat.tags) == (5, False, {})
    assert (team.min_age_s, team.preflight, team.tags) == (0, True, {"team": "nlp"})
    assert team.ignore == ("*.bak",)
    assert team.model is not None
    assert team.model.version == "250101"
    assert (team.prefix, team.output_prefix) == ("other/in/", "other/output/")


def test_empty_value_unsets_an_optional_setting(tmp_path: Path) -> None:
    """An empty value unsets a setting unset by default: here switching to a custom model."""
    env = {"DROPZONE_WATCH__CHAT__MODEL": "", "DROPZONE_WATCH__CHAT__CUSTOM_MODEL_ID": "ep-9"}
    rule = load(tmp_path, WATCH, env).watches[0]
    assert (rule.model, rule.custom_model_id) == (None, "ep-9")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DROPZONE_WATCH__NOPE__MIN_AGE_S": "1"},
            "environment DROPZONE_WATCH__NOPE__MIN_AGE_S: no watch named 'nope' (watches: chat)",
        ),
        (
            {"DROPZONE_DEAMON__CONCURRENCY": "1"},
            (
                "environment DROPZONE_DEAMON__CONCURRENCY: unknown section 'deamon' "
                "(did you mean 'daemon'?)"
            ),
        ),
        (
            {"DROPZONE_WATCH__CHAT": "1"},
            (
                "environment DROPZONE_WATCH__CHAT: name a watch and a key: "
                "DROPZONE_WATCH__<NAME>__<KEY>"
            ),
        ),
        (
            {"DROPZONE_DAEMON__": "1"},
            "environment DROPZONE_DAEMON__: empty key between '__' separators",
        ),
        (
            {"DROPZONE_WATCH__CHAT__TAGS": "team=nlp"},
            "environment DROPZONE_WATCH__CHAT__TAGS: tags takes a JSON list or table",
        ),
        (
            {"DROPZONE_DAEMON__CONCURRENCY": "many"},
            (
                "daemon.concurrency (from environment DROPZONE_DAEMON__CONCURRENCY): expected an "
                'integer (got "many")'
            ),
        ),
        (
            {"DROPZONE_DAEMON__CONCURENCY": "2"},
            (
                "daemon.concurency (from environment DROPZONE_DAEMON__CONCURENCY): unknown setting "
                "(did you mean 'concurrency'?)"
            ),
        ),
        (
            {"DROPZONE_WATCH__CHAT__MODEL__NAME__X": "2"},
            (
                "environment DROPZONE_WATCH__CHAT__MODEL__NAME__X: 'name' in the config file has "
                "another shape"
            ),
        ),
    ],
)
def test_override_errors(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    """A bad override is an error naming the variable, alongside any other problem."""
    assert problems(tmp_path, WATCH, env) == [expected]


def test_override_matching_two_watches_is_an_error(tmp_path: Path) -> None:
    """Watches whose names differ only by '-' versus '_' cannot be told apart by name."""
    text = WATCH.replace('"chat"', '"a-b"') + WATCH.replace('"chat"', '"a_b"')
    found = problems(tmp_path, text, {"DROPZONE_WATCH__A_B__MIN_AGE_S": "1"})
    assert found == [
        (
            "environment DROPZONE_WATCH__A_B__MIN_AGE_S: the name A_B matches several watches: "
            "['a-b', 'a_b']"
        )
    ]


def test_environment_and_file_problems_together(tmp_path: Path) -> None:
    """Problems from the environment and from the file are reported in one go."""
    found = problems(tmp_path, f"[ark]\ntimeout_s = 0\n{WATCH}", {"DROPZONE_X__Y": "1"})
    assert len(found) == 2
    assert found[0].startswith("environment DROPZONE_X__Y: unknown section 'x'")
    assert found[1].startswith("ark.timeout_s: ")


# --- the example file -----------------------------------------------------------------------


def test_example_config_loads() -> None:
    """config/dropzone.toml loads as it ships."""
    settings = load_settings(EXAMPLE, {})
    assert [rule.name for rule in settings.watches] == ["chat"]


def test_example_config_shows_the_defaults() -> None:
    """Every value the example sets equals the code's default: the docs cannot drift."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    defaults = Settings.model_validate(
        {"watch": [{"name": "x", "bucket": "b", "prefix": "in/", "custom_model_id": "m"}]}
    )
    for section in config.SECTIONS:
        expected = json.loads(getattr(defaults, section).model_dump_json())
        assert {k: expected[k] for k in data[section]} == data[section]
    rule_defaults = defaults.watches[0].model_dump(mode="json", by_alias=True)
    chosen = {"name", "bucket", "prefix", "output_prefix", "model", "tags"}
    watch = data["watch"][0]
    assert {k: rule_defaults[k] for k in watch if k not in chosen} == {
        k: v for k, v in watch.items() if k not in chosen
    }


@pytest.mark.parametrize(
    ("model", "section"),
    [
        (config.ArkSettings, "[ark]"),
        (config.TosSettings, "[tos]"),
        (config.LedgerSettings, "[ledger]"),
        (config.DaemonSettings, "[daemon]"),
        (config.EventsSettings, "[events]"),
        (config.WatchRule, "[[watch]]"),
        (NotifySettings, "# [watch.notify]"),  # commented out: the example tells nobody
    ],
)
def test_example_config_documents_every_key(model: type[Any], section: str) -> None:
    """Every setting appears in the example, set or commented out, in its own section."""
    text = EXAMPLE.read_text(encoding="utf-8")
    body = text.split(f"\n{section}\n", 1)[1].split("\n[", 1)[0]
    for name, info in model.model_fields.items():
        key = info.alias or name
        assert re.search(rf"^#? ?{key} = ", body, re.MULTILINE), f"{section} {key}"


# --- credentials ----------------------------------------------------------------------------

NO_FILES = ArkSettings()


def secret_dir(tmp_path: Path, name: str, **files: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    for file_name, content in files.items():
        (directory / file_name).write_text(content, encoding="utf-8")
    return directory


def test_no_credentials_anywhere() -> None:
    """With no source at all the answer is None (the caller decides what to say)."""
    assert load_credentials(NO_FILES, {}, ()) is None


def test_volcengine_variables_come_first(tmp_path: Path) -> None:
    """VOLCENGINE_* wins over every other source and brings its session token."""
    env = {
        "VOLCENGINE_ACCESS_KEY": AK,
        "VOLCENGINE_SECRET_KEY": f" {SK}\n",
        "VOLCENGINE_SESSION_TOKEN": TOKEN,
        "VOLC_ACCESSKEY": "other",
        "VOLC_SECRETKEY": "other",
        "CREDENTIALS_DIRECTORY": str(secret_dir(tmp_path, "c", access_key="x", secret_key="y")),
    }
    found = load_credentials(NO_FILES, env, ())
    assert found is not None
    assert found.source == "environment VOLCENGINE_*"
    assert (found.credentials.access_key, found.credentials.secret_key) == (AK, SK)
    assert found.credentials.session_token == TOKEN


def test_volc_variables_come_second(tmp_path: Path) -> None:
    """VOLC_ACCESSKEY / VOLC_SECRETKEY are used when VOLCENGINE_* are absent, before files."""
    ark = ArkSettings(
        access_key_file=write(tmp_path, "x", "ak"), secret_key_file=write(tmp_path, "y", "sk")
    )
    found = load_credentials(ark, {"VOLC_ACCESSKEY": AK, "VOLC_SECRETKEY": SK}, ())
    assert found is not None
    assert found.source == "environment VOLC_*"
    assert found.credentials.secret_key == SK
    assert found.credentials.session_token is None


def test_setting_files_come_third(tmp_path: Path) -> None:
    """The [ark] *_file settings are read, stripped, and beat the credential folders."""
    ark = ArkSettings(
        access_key_file=write(tmp_path, f"{AK}\n", "ak"),
        secret_key_file=write(tmp_path, f"\n  {SK}  \n", "sk"),
        session_token_file=write(tmp_path, f"{TOKEN}\n", "token"),
    )
    env = {"CREDENTIALS_DIRECTORY": str(secret_dir(tmp_path, "c", access_key="x", secret_key="y"))}
    found = load_credentials(ark, env, ())
    assert found is not None
    assert found.source == (
        "files named by [ark] access_key_file, [ark] secret_key_file, [ark] session_token_file"
    )
    assert (found.credentials.access_key, found.credentials.secret_key) == (AK, SK)
    assert found.credentials.session_token == TOKEN


def test_credentials_directory_before_secret_dirs(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY (systemd) is read before the given folders (/run/secrets)."""
    systemd = secret_dir(tmp_path, "systemd", access_key=AK, secret_key=SK, session_token=TOKEN)
    container = secret_dir(tmp_path, "secrets", access_key="x", secret_key="y")
    found = load_credentials(NO_FILES, {"CREDENTIALS_DIRECTORY": str(systemd)}, (container,))
    assert found is not None
    assert found.source == (
        f"files {systemd / 'access_key'}, {systemd / 'secret_key'}, {systemd / 'session_token'}"
    )
    assert found.credentials.session_token == TOKEN


def test_secret_dirs_in_order(tmp_path: Path) -> None:
    """Folders without credentials (or missing) are skipped; the first complete one is used."""
    empty = secret_dir(tmp_path, "empty")
    second = secret_dir(tmp_path, "second", access_key=f"{AK}\n", secret_key=f"{SK}\n")
    third = secret_dir(tmp_path, "third", access_key="x", secret_key="y")
    found = load_credentials(NO_FILES, {}, (tmp_path / "missing", empty, second, third))
    assert found is not None
    assert found.source == f"files {second / 'access_key'}, {second / 'secret_key'}"
    assert found.credentials.secret_key == SK


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VOLCENGINE_ACCESS_KEY": AK},
            "VOLCENGINE_ACCESS_KEY set, but VOLCENGINE_SECRET_KEY missing or empty",
        ),
        (
            {"VOLCENGINE_SECRET_KEY": SK, "VOLCENGINE_ACCESS_KEY": "  "},
            "VOLCENGINE_SECRET_KEY set, but VOLCENGINE_ACCESS_KEY missing or empty",
        ),
        (
            {"VOLCENGINE_SESSION_TOKEN": TOKEN},
            (
                "VOLCENGINE_SESSION_TOKEN set, but VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY "
                "missing or empty"
            ),
        ),
        ({"VOLC_SECRETKEY": SK}, "VOLC_SECRETKEY set, but VOLC_ACCESSKEY missing or empty"),
    ],
)
def test_half_a_pair_in_the_environment(env: dict[str, str], message: str) -> None:
    """Half a pair is an error naming the half that is missing, and never the secret."""
    with pytest.raises(ConfigError) as caught:
        load_credentials(NO_FILES, env, ())
    assert str(caught.value) == f"incomplete credentials: {message}"
    assert SK not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_half_a_pair_in_setting_files(tmp_path: Path) -> None:
    """Only access_key_file set: the error names the missing secret_key_file setting."""
    ark = ArkSettings(access_key_file=write(tmp_path, AK, "ak"))
    with pytest.raises(ConfigError) as caught:
        load_credentials(ark, {}, ())
    assert str(caught.value) == (
        "incomplete credentials: [ark] access_key_file set, "
        "but [ark] secret_key_file missing or empty"
    )


def test_half_a_pair_in_a_folder(tmp_path: Path) -> None:
    """A folder with only secret_key is an error naming the missing access_key file."""
    folder = secret_dir(tmp_path, "s", secret_key=SK, access_key="\n")
    with pytest.raises(ConfigError) as caught:
        load_credentials(NO_FILES, {}, (folder,))
    assert str(caught.value) == (
        f"incomplete credentials: {folder / 'secret_key'} set, but {folder / 'access_key'} "
        "missing or empty"
    )
    assert SK not in str(caught.value)


def test_missing_setting_file(tmp_path: Path) -> None:
    """A configured credential file that does not exist is an error naming the setting, and
    not its value: a secret pasted where the path belongs is not printed back (issue 12
    item 8; it was, as the error's file name)."""
    ark = ArkSettings(access_key_file=write(tmp_path, AK, "ak"), secret_key_file=Path(SK))
    with pytest.raises(ConfigError) as caught:
        load_credentials(ark, {}, ())
    assert caught.value.path is None
    assert str(caught.value) == "[ark] secret_key_file: no such file (the value is not shown)"


def test_unreadable_secret_file(tmp_path: Path) -> None:
    """A credential file that cannot be read is an error naming the file, not its content."""
    folder = secret_dir(tmp_path, "s", access_key=AK)
    (folder / "secret_key").mkdir()  # a folder where a file should be: unreadable as a file
    with pytest.raises(ConfigError) as caught:
        load_credentials(NO_FILES, {}, (folder,))
    assert caught.value.path == folder / "secret_key"
    assert str(caught.value).startswith(f"{folder / 'secret_key'}: secret_key: cannot read: ")


def test_secret_file_not_utf8(tmp_path: Path) -> None:
    """A credential file that is not text is refused without showing any of its bytes."""
    path = tmp_path / "sk"
    path.write_bytes(b"\xffsecret\xfe")
    ark = ArkSettings(access_key_file=write(tmp_path, AK, "ak"), secret_key_file=path)
    with pytest.raises(ConfigError) as caught:
        load_credentials(ark, {}, ())
    assert str(caught.value) == "[ark] secret_key_file: not UTF-8 text"


# --- secrets stay secret --------------------------------------------------------------------


def test_secrets_never_print(tmp_path: Path) -> None:
    """Loaded secrets appear in no repr, str or redacted view of what was loaded."""
    settings = load(tmp_path, WATCH)
    env = {"VOLCENGINE_ACCESS_KEY": AK, "VOLCENGINE_SECRET_KEY": SK}
    env["VOLCENGINE_SESSION_TOKEN"] = TOKEN
    found = load_credentials(settings.ark, env, ())
    assert found is not None
    views = [repr(found), str(found), repr(found.credentials), repr(settings), str(settings)]
    shown = " ".join([*views, json.dumps(settings.redacted())])
    assert SK not in shown
    assert TOKEN not in shown
    assert "[secure]" in repr(found)


def test_redacted_is_plain_json(tmp_path: Path) -> None:
    """redacted() is the effective config as JSON data, keyed as in the TOML file."""
    settings = load(tmp_path, f'[ark]\nsecret_key_file = "/run/sk"\n{WATCH}')
    data = settings.redacted()
    assert json.loads(json.dumps(data)) == data
    # A credential setting's value is never shown, even a path (it may be a pasted secret).
    assert data["ark"]["secret_key_file"] == "[secure]"
    assert data["ark"]["access_key_file"] is None
    assert data["watch"][0]["validate"] is False
    assert data["watch"][0]["ignore"] == [".*", "*.tmp", "*.part", "*~", "*.crdownload", "*.swp"]
    # WatchRule is assembled from bases; a watch still reads name first, then where it looks.
    assert list(data["watch"][0])[:4] == ["name", "bucket", "prefix", "pattern"]


def test_redaction_hides_secret_values() -> None:
    """Any SecretStr inside the dumped settings shows as [secure]."""
    assert redact({"a": [SecretStr(SK), Path("/p")], "b": (1,)}) == {
        "a": ["[secure]", "/p"],
        "b": [1],
    }


# --- numbers at their edges and credentials of the wrong kind (issue 12 items 6, 7) -----------

NUMERIC = [
    (model, key, info)
    for model in (
        config.ArkSettings,
        config.TosSettings,
        config.LedgerSettings,
        config.DaemonSettings,
        config.WatchRule,
    )
    for key, info in model.model_fields.items()
    if re.search(r"\b(int|float)\b", str(info.annotation))
]


@pytest.mark.parametrize(
    ("model", "key", "info"), NUMERIC, ids=[f"{n[0].__name__}.{n[1]}" for n in NUMERIC]
)
def test_every_numeric_setting_has_a_range(model: type[Any], key: str, info: Any) -> None:
    """Every number has a lower and an upper bound, so that no value the clocks and timers
    cannot hold (1e300 seconds, a million days) gets past loading."""
    assert config.range_text(info) is not None, f"{model.__name__}.{key}"


@pytest.mark.parametrize("value", ["1e300", "inf", "-inf", "nan", "1e-300"])
@pytest.mark.parametrize("key", ["TIMEOUT_S", "MAX_REQUESTS_PER_SECOND"])
def test_edge_numbers_from_the_environment(tmp_path: Path, key: str, value: str) -> None:
    """An environment value out of range, infinite or not a number is refused naming the
    variable and the range, as one from the file is."""
    name = f"DROPZONE_ARK__{key}"
    if key == "TIMEOUT_S" and value == "1e-300":
        value = "0"
    (problem,) = problems(tmp_path, WATCH, {name: value})
    assert problem.startswith(f"ark.{key.lower()} (from environment {name}): ")
    assert re.search(r"(out of range: must be|must be a finite number) (from|above) ", problem)


def test_an_empty_path_in_the_environment_is_refused(tmp_path: Path) -> None:
    """DROPZONE_LEDGER__PATH="" was the config file's folder, and the ledger "disk I/O error"
    (issue 12 item 2); an empty value for a path that is unset by default still unsets it."""
    env = {"DROPZONE_LEDGER__PATH": "", "DROPZONE_WATCH__CHAT__LOCAL_DIR": ""}
    (problem,) = problems(tmp_path, WATCH, env)
    assert problem == (
        "ledger.path (from environment DROPZONE_LEDGER__PATH): must not be empty: give a path, "
        "or leave the setting out"
    )


def test_a_credential_setting_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    """`secret_key_file = 12345678` (a secret typed where its path belongs) is refused without
    showing the value."""
    (problem,) = problems(tmp_path, f"[ark]\nsecret_key_file = 12345678\n{WATCH}")
    assert problem == "ark.secret_key_file: expected a path (a string) (the value is not shown)"


BAD_CREDENTIALS = [
    ("VOLCENGINE_ACCESS_KEY", "AKLTaccès", "must be printable ASCII without spaces"),
    ("VOLCENGINE_ACCESS_KEY", "AKLT key", "must be printable ASCII without spaces"),
    ("VOLCENGINE_SESSION_TOKEN", TOKEN + "é", "must be printable ASCII without spaces"),
    ("VOLCENGINE_SESSION_TOKEN", TOKEN + "\udcff", "must be printable ASCII without spaces"),
    # os.environ holds an undecodable byte as a lone surrogate: UTF-8 cannot encode it.
    ("VOLCENGINE_SECRET_KEY", SK + "\udcff", "is not valid UTF-8 text"),
    ("VOLCENGINE_SECRET_KEY", SK + "\x00x", "must not hold spaces, line breaks or control"),
    ("VOLCENGINE_SECRET_KEY", "two\nlines", "must not hold spaces, line breaks or control"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_CREDENTIALS)
def test_credentials_the_signer_cannot_use_are_refused(name: str, value: str, message: str) -> None:
    """A credential the signer or an HTTP header cannot carry is refused at load, naming the
    variable, never showing the value (issue 12 item 7: a UnicodeEncodeError traceback in
    every worker, for ever)."""
    env = {"VOLCENGINE_ACCESS_KEY": AK, "VOLCENGINE_SECRET_KEY": SK, name: value}
    with pytest.raises(ConfigError) as caught:
        load_credentials(NO_FILES, env, ())
    assert str(caught.value).startswith(f"{name}: {message}")
    assert str(caught.value).endswith("(the value is not shown)")
    assert value.strip() not in str(caught.value)


def test_credentials_from_files_are_checked_naming_the_setting(tmp_path: Path) -> None:
    """A file's credential is checked as the environment's, naming the setting (not the path);
    a folder's names the file."""
    ark = ArkSettings(
        access_key_file=write(tmp_path, "AKLTé\n", "ak"), secret_key_file=write(tmp_path, SK, "sk")
    )
    with pytest.raises(ConfigError) as caught:
        load_credentials(ark, {}, ())
    assert str(caught.value) == (
        "[ark] access_key_file: must be printable ASCII without spaces (it is sent in an HTTP "
        "header) (the value is not shown)"
    )
    folder = secret_dir(tmp_path, "s", access_key=AK, secret_key=SK, session_token="tök")
    with pytest.raises(ConfigError) as caught:
        load_credentials(NO_FILES, {}, (folder,))
    assert str(caught.value).startswith(f"{folder / 'session_token'}: must be printable ASCII")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://dz:pw-in-url@db/dz",
        "postgresql://dz@db/dz?password=pw-in-url",
        "postgresql://dz@db/dz?%70assword=pw-in-url",  # libpq decodes the name
        "postgresql://dz@db/dz?sslmode=require&PASSWORD=pw-in-url",
    ],
)
def test_a_ledger_url_holding_a_password_is_refused_unshown(tmp_path: Path, url: str) -> None:
    """However a password is written into [ledger] url, it is refused, and neither the
    error nor anything else shows it: it belongs in password_file."""
    found = problems(tmp_path, f'[ledger]\nurl = "{url}"\n{WATCH}')
    assert found == [
        (
            "ledger.url: holds a password: give it in [ledger] password_file (or libpq's"
            " PGPASSWORD) instead, so that the config can be shown and shared (the value is not"
            " shown)"
        )
    ]
    assert "pw-in-url" not in " ".join(found)


def test_a_ledger_is_a_file_or_a_database(tmp_path: Path) -> None:
    """url selects PostgreSQL; with path as well it is ambiguous; password_file needs url;
    the redacted config never shows the password file's path."""
    url = "postgresql://dz@db.internal:5432/dz?sslmode=require"
    settings = load(tmp_path, f'[ledger]\nurl = "{url}"\npassword_file = "pw"\n{WATCH}')
    assert settings.ledger.url == url
    assert settings.redacted()["ledger"]["password_file"] == "[secure]"
    both = problems(tmp_path, f'[ledger]\nurl = "{url}"\npath = "l.sqlite3"\n{WATCH}')
    assert both == ["ledger: set path (an SQLite ledger) or url (PostgreSQL), not both"]
    alone = problems(tmp_path, f'[ledger]\npassword_file = "pw"\n{WATCH}')
    assert alone == ["ledger: password_file is the PostgreSQL ledger's: it needs url"]
    other = problems(tmp_path, f'[ledger]\nurl = "mysql://db/dz"\n{WATCH}')
    assert other == [
        "ledger.url: must be postgresql://[user@]host[:port]/database (the value is not shown)"
    ]
