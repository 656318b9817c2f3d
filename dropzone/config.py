"""Settings: one frozen, validated object built from a TOML file and the environment.

``load_settings`` reads the file, lays the given environment over it and validates the result
once, so that every problem is reported together, each naming the file and the setting. It
never reads ``os.environ`` itself: the caller passes the environment, and tests pass a dict.

Environment overrides (names are case-insensitive, keys are lower-cased):

- ``DROPZONE_<SECTION>__<KEY>`` for the ``ark``, ``tos``, ``ledger`` and ``daemon`` sections,
  e.g. ``DROPZONE_DAEMON__POLL_INTERVAL_S=5``;
- ``DROPZONE_WATCH__<NAME>__<KEY>`` for the watch with that name, where ``-`` and ``.`` in the
  name are written ``_`` (``DROPZONE_WATCH__TEAM_A__MIN_AGE_S`` sets watch ``team-a``). Deeper
  keys address tables (``..._MODEL__VERSION``, ``..._TAGS__TEAM``); a whole list or table
  (``ignore``, ``tags``, ``model``) is given as JSON; a name holding ``__`` cannot be
  addressed. An empty value unsets a setting whose default is unset
  (``DROPZONE_WATCH__CHAT__MODEL=`` plus ``..._CUSTOM_MODEL_ID=cm-...``).

The file's values are validated strictly (TOML has types: ``min_age_s = "5"`` is an error),
each environment string is first read as its setting's type (``"5"`` -> 5, ``"yes"`` -> True).

Environment wins over the file. pydantic-settings' own environment source is not used: it reads
``os.environ`` and cannot address a watch by name. ``Settings`` takes its values from the
constructor alone, so nothing (no ``.env`` file, no secrets directory) is read behind our back.

Credentials never live in ``Settings``: :func:`load_credentials` finds them, at the moment
they are needed, as a :class:`~dropzone.ark.signer.Credentials` whose repr hides the secrets.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import re
import tomllib
import types
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretBytes,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dropzone import plan
from dropzone.ark.signer import Credentials
from dropzone.log import DEFAULT_LEVEL, LogLevel
from dropzone.sources.local.files import DEFAULT_IGNORE

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from pydantic_core import ErrorDetails, InitErrorDetails

DEFAULT_CONFIG_PATH = Path("/etc/dropzone/dropzone.toml")
ENV_PREFIX = "DROPZONE_"
CONFIG_ENV = "DROPZONE_CONFIG"
SECTIONS = ("ark", "tos", "ledger", "daemon")
MAX_TAGS = 20
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
NO_WATCH = "at least one [[watch]] table is required"
# Settings that once existed: a config written for an earlier version says what became of them.
REMOVED_SETTINGS = {
    "max_transient_attempts": (
        "no longer a setting: transient failures (5xx, time-outs, connection errors) never "
        "reject a file, so an outage of any length holds files pending; delete this line"
    ),
}
CREDENTIAL_FILE_NAMES = ("access_key", "secret_key", "session_token")
# The [ark] settings naming credential files. Their values are never printed, not even as a
# path: a secret pasted where its file's path belongs would be shown back otherwise.
CREDENTIAL_SETTINGS = frozenset(f"{name}_file" for name in CREDENTIAL_FILE_NAMES)
NOT_SHOWN = "(the value is not shown)"
SECURE = "[secure]"
_ENV_CREDENTIALS = (
    (
        "environment VOLCENGINE_*",
        ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "VOLCENGINE_SESSION_TOKEN"),
    ),
    ("environment VOLC_*", ("VOLC_ACCESSKEY", "VOLC_SECRETKEY")),
)

Loc = tuple[str | int, ...]

_WATCH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COMPLETION_WINDOW = re.compile(r"([1-9][0-9]?)d")  # "01d" is no window the platform takes
_PORT = re.compile(r"[0-9]{1,5}")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason found, not the first."""

    def __init__(self, path: Path | None, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return "\n".join(where + problem for problem in self.problems)


# --- field checks ---------------------------------------------------------------------------


def _check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    # Checked first: the other messages show the value, and this one must not.
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; they come from the environment or files")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not http(s)://host[:port]")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError("must be scheme://host[:port] with no path, query or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"has an invalid port: {exc}") from exc
    return value.rstrip("/")


def _check_listen(value: str) -> str:
    if value == "":
        return value
    host, _, port = value.rpartition(":")
    bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not host or bare_ipv6 or not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(
            f'{value!r} is not "host:port" (e.g. "127.0.0.1:9464", "[::1]:9464"); "" disables'
        )
    return value


def _as_folder(value: str) -> str:
    if value.startswith("/"):
        raise ValueError("must not start with '/': object keys are relative to the bucket")
    return value if not value or value.endswith("/") else value + "/"


def default_output_prefix(prefix: str) -> str:
    """Beside the watched folder: ``a/in/`` -> ``a/output/``; ``data/`` or ``""`` -> ``output/``."""
    parent = prefix.rstrip("/").rpartition("/")[0]
    return f"{parent}/output/" if parent else "output/"


def _from_config_folder(value: Path) -> Path:
    """A relative path means the config file's folder, not wherever the command was started.

    Otherwise ``run --once`` from another folder makes a second, empty ledger beside it (and
    escapes the one-daemon lock that guards the first).
    """
    value = value.expanduser()
    base = _config_folder.get()
    if value.is_absolute() or base is None:
        return value
    return base / value


# Set by load_settings while it validates. A context variable, not pydantic's validation
# context: BaseSettings has its own __init__, through which pydantic drops that context.
_config_folder: ContextVar[Path | None] = ContextVar("config_folder", default=None)
NonEmpty = Annotated[str, Field(min_length=1)]
# Every number has a range, checked at load: wide enough for any real deployment, narrow
# enough for the clocks, timers and sockets that take it (1e300 seconds overflows them all,
# mid-run, as a traceback). Documented beside each setting, in the README (checked by
# tests/test_readme.py) and config/dropzone.toml.
HOUR_S = 3600
DAY_S = 86400
MAX_RETENTION_DAYS = 3650
MAX_ACTIVE_JOBS = 10_000
Timeout = Annotated[float, Field(gt=0, le=HOUR_S)]
# Settings are strict: TOML has types, and `validate = "yes"` or `min_age_s = "5"` is a mistake
# to report, not a string to guess at (environment strings are typed before validation, see
# _typed_env_string). TOML has no path and no tuple type: those alone are taken from strings
# and arrays, as lax validation takes them.
FromToml = Field(strict=False)


def _not_empty_path(value: object) -> object:
    # Before the conversion: Path("") is Path("."), which would quietly mean the config
    # file's own folder (a ledger that "cannot open", a watched folder nobody meant).
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty: give a path, or leave the setting out")
    return value


TomlPath = Annotated[Path, FromToml, BeforeValidator(_not_empty_path)]
# Relative paths are the config file's folder's (see _from_config_folder).
ConfigPath = Annotated[TomlPath, AfterValidator(_from_config_folder)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)


class ArkSettings(_Section):
    endpoint: str = "https://open.volcengineapi.com"
    region: NonEmpty = "cn-beijing"
    timeout_s: Timeout = 30
    connect_timeout_s: Timeout = 5
    # At least one call per 100 s (a slower cap would hold a Create for minutes); at most
    # 100,000, which is no cap at all (the throughput bench uses it).
    max_requests_per_second: Annotated[float, Field(ge=0.01, le=100_000)] = 5
    access_key_file: ConfigPath | None = None
    secret_key_file: ConfigPath | None = None
    session_token_file: ConfigPath | None = None

    _endpoint = field_validator("endpoint")(_check_endpoint)


# TOS's own hosts: tos-s3-<region>.volces.com, and .ivolces.com on the private network.
_TOS_HOSTS = (".volces.com", ".ivolces.com")


class TosSettings(_Section):
    endpoint: str = "https://tos-s3-cn-beijing.volces.com"
    region: NonEmpty = "cn-beijing"
    addressing_style: Literal["virtual", "path", "auto"] = "virtual"
    # TOS calls have time-outs of their own: a listing page of a large prefix may take longer
    # than any one Ark call should.
    timeout_s: Timeout = 60
    connect_timeout_s: Timeout = 10

    _endpoint = field_validator("endpoint")(_check_endpoint)

    @model_validator(mode="after")
    def _tos_serves_virtual_hosts(self) -> Self:
        host = urlsplit(self.endpoint).hostname or ""
        if self.addressing_style == "path" and host.endswith(_TOS_HOSTS):
            raise ValueError(
                f'addressing_style = "path" with the TOS endpoint {host}: TOS serves '
                'virtual-hosted style only; use "virtual" ("path" is for local S3 servers)'
            )
        return self


class LedgerSettings(_Section):
    path: ConfigPath = Path("/var/lib/dropzone/ledger.sqlite3")
    retention_days: Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] = 30


class DaemonSettings(_Section):
    # A floor: a listing as fast as the loop turns is no interval.
    poll_interval_s: Annotated[float, Field(ge=0.1, le=DAY_S)] = 30
    track_interval_s: Annotated[float, Field(ge=0, le=DAY_S)] = 60
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    listen: str = "127.0.0.1:9464"
    drain_timeout_s: Annotated[float, Field(ge=0, le=HOUR_S)] = 30
    once_max_wait_s: Annotated[float, Field(ge=0, le=DAY_S)] = 300
    log_level: LogLevel = DEFAULT_LEVEL

    _listen = field_validator("listen")(_check_listen)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """(host, port) for a socket, brackets of an IPv6 host removed; None when disabled."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ModelSpec(_Section):
    name: NonEmpty
    version: NonEmpty | None = None


def _check_template(value: str) -> str:
    problem = plan.template_error(value)
    if problem:
        raise ValueError(problem)
    return value


class _WatchName(_Section):
    # A base of its own, listed after WatchLayout among WatchRule's bases, so that `name` stays
    # a watch's first setting (in errors and in `dropzone check`) yet a layout needs no name.
    name: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _WATCH_NAME.fullmatch(value):
            raise ValueError('must be 1-64 characters of letters, digits, "_", "." or "-"')
        return value


class WatchLayout(_Section):
    """Which keys a watch takes and where their results land: all that feeds_itself reads.

    A model of its own so that it can be checked alone when another setting of the watch is
    wrong (see ``WatchRule._report_layout_problems``).
    """

    bucket: NonEmpty
    prefix: str = ""
    pattern: NonEmpty = "*.jsonl"
    # Filled from the prefix before validation when absent (see _fill_output_prefix).
    output_prefix: str = "output/"
    output_template: str = "{output_prefix}{relpath_stem}/"

    _output_template = field_validator("output_template")(_check_template)

    @model_validator(mode="before")
    @classmethod
    def _fill_output_prefix(cls, data: Any) -> Any:  # noqa: ANN401 - raw input of any shape
        if isinstance(data, dict) and "output_prefix" not in data:
            prefix = data.get("prefix", "")
            if isinstance(prefix, str) and not prefix.startswith("/"):
                return {**data, "output_prefix": default_output_prefix(_as_folder(prefix))}
        return data

    @field_validator("prefix", "output_prefix")
    @classmethod
    def _check_folder(cls, value: str) -> str:
        return _as_folder(value)

    @model_validator(mode="after")
    def _check_not_feeding_itself(self) -> Self:
        reason = plan.feeds_itself(self)
        if reason:
            raise ValueError(reason)
        return self


class WatchRule(WatchLayout, _WatchName):
    """One ``[[watch]]``: where inputs appear and how each becomes a job."""

    name_template: str = "{stem}"
    project_name: NonEmpty = "default"
    custom_model_id: NonEmpty | None = None
    # Declared after custom_model_id so that its check sees it, and reports at `.model`.
    model: ModelSpec | None = Field(default=None, validate_default=True)
    completion_window: str = "1d"
    # At most MAX_TAGS: with dropzone's two every Create carries at most 22, the platform's
    # `sys:` tags come on top. Volcengine publishes no per-job number; 22 stays well under the
    # 50 other clouds allow per resource, and the emulator proves the full set goes through.
    tags: dict[str, str] = Field(default_factory=dict)
    on_start: Literal["skip-existing", "submit-existing"] = "skip-existing"
    on_change: Literal["resubmit", "ignore", "after-active"] = "resubmit"
    # `validate` would shadow a BaseModel method; the TOML key stays `validate`.
    preflight: bool = Field(default=False, alias="validate")
    report: bool = False
    min_age_s: Annotated[float, Field(ge=0, le=DAY_S)] = 5
    local_dir: ConfigPath | None = None
    local_mode: Literal["upload", "synced", "mounted"] = "upload"
    settle_s: Annotated[float, Field(ge=0, le=HOUR_S)] = 2
    sync_timeout_s: Annotated[float, Field(gt=0, le=DAY_S)] = 300
    ignore: Annotated[tuple[NonEmpty, ...], FromToml] = DEFAULT_IGNORE
    max_active_jobs: Annotated[int, Field(ge=1, le=MAX_ACTIVE_JOBS)] | None = None

    _name_template = field_validator("name_template")(_check_template)

    @field_validator("model")
    @classmethod
    def _check_one_model(cls, value: ModelSpec | None, info: ValidationInfo) -> ModelSpec | None:
        if "custom_model_id" not in info.data:
            return value  # custom_model_id has its own error
        if (value is None) == (info.data["custom_model_id"] is None):
            raise ValueError(
                "set exactly one of model = { name = ..., version = ... } or custom_model_id"
            )
        return value

    @field_validator("completion_window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        days = _COMPLETION_WINDOW.fullmatch(value)
        if not days or not 1 <= int(days.group(1)) <= 28:
            raise ValueError(f'{value!r}: must be whole days from "1d" to "28d"')
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [_tag_problem(k, v) for k, v in value.items()]
        if len(value) > MAX_TAGS:
            problems.append(
                f"at most {MAX_TAGS} tags (dropzone adds {len(plan.RESERVED_TAG_KEYS)} of its "
                "own to each job, and the platform its 'sys:' tags)"
            )
        found = [p for p in problems if p]
        if found:
            raise ValueError("; ".join(found))
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _report_layout_problems(
        cls,
        data: Any,  # noqa: ANN401 - raw input of any shape
        handler: ModelWrapValidatorHandler[Self],
    ) -> Self:
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            # An error at the watch itself means its model checks ran; otherwise a setting
            # failed, pydantic skipped them, and a watch feeding on its own results would only
            # be reported once the user had fixed everything else.
            if not isinstance(data, dict) or any(not error["loc"] for error in errors):
                raise
            found = _layout_problems(data)
            if not found:
                raise
            details = [*map(_init_details, errors), *found]
            raise ValidationError.from_exception_data(exc.title, details) from None


def _layout_problems(data: dict[Any, Any]) -> list[InitErrorDetails]:
    """The watch-level problems of the layout in ``data``, checked on its own.

    Its setting errors are left out: validating the whole watch reported them already.
    """
    layout = {key: value for key, value in data.items() if key in WatchLayout.model_fields}
    try:
        WatchLayout.model_validate(layout)
    except ValidationError as exc:
        return [_init_details(error) for error in exc.errors() if not error["loc"]]
    return []


def _init_details(error: ErrorDetails) -> InitErrorDetails:
    details: InitErrorDetails = {
        "type": error["type"],
        "loc": error["loc"],
        "input": error["input"],
    }
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def _tag_problem(key: str, value: str) -> str | None:
    if key in plan.RESERVED_TAG_KEYS:
        return f"tag key {key!r} is reserved: dropzone sets it on every job"
    if key.startswith("sys:"):
        return f"tag key {key!r}: keys starting with 'sys:' belong to the platform"
    if not 1 <= len(key) <= MAX_TAG_KEY_CHARS:
        return f"tag key {key!r} must be 1-{MAX_TAG_KEY_CHARS} characters"
    if len(value) > MAX_TAG_VALUE_CHARS:
        return f"tag {key!r}: the value must be at most {MAX_TAG_VALUE_CHARS} characters"
    return None


class Settings(BaseSettings):
    """The effective configuration: frozen, validated, free of secrets."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    ark: ArkSettings = Field(default_factory=ArkSettings)
    tos: TosSettings = Field(default_factory=TosSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    # Not min_length: pydantic would add "at least 1 item" to a list whose items are invalid.
    watches: tuple[WatchRule, ...] = Field(alias="watch", strict=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - the hook's fixed signature
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - deliberately unused
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - deliberately unused
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - deliberately unused
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @field_validator("watches")
    @classmethod
    def _check_watches(
        cls, value: tuple[WatchRule, ...], info: ValidationInfo
    ) -> tuple[WatchRule, ...]:
        if not value:
            raise ValueError(NO_WATCH)
        daemon = info.data.get("daemon")
        first: dict[str, int] = {}
        for index, rule in enumerate(value):
            if rule.on_change == "after-active" and daemon and not daemon.track_interval_s:
                # Only tracking sees the awaited job end: without it the version would wait forever.
                raise ValueError(
                    f'watch {rule.name!r}: on_change = "after-active" needs job tracking;'
                    " set [daemon] track_interval_s above 0"
                )
            seen = first.setdefault(rule.name.lower(), index)
            if seen != index:
                raise ValueError(
                    f"watch names must be unique (ignoring case): watch[{seen}] and "
                    f"watch[{index}] are both named {rule.name!r}"
                )
        return value

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, any secret shown as ``[secure]``."""
        plain = _redact(self.model_dump(by_alias=True))
        assert isinstance(plain, dict)
        ark = plain["ark"]
        for name in CREDENTIAL_SETTINGS:  # a path, but perhaps a secret pasted by mistake
            if ark[name] is not None:
                ark[name] = SECURE
        return plain


def _redact(value: object) -> object:
    if isinstance(value, SecretStr | SecretBytes):
        return SECURE
    if isinstance(value, dict):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --- locating settings in the models --------------------------------------------------------


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _fields_by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that holds the settings at ``loc`` (indexes of lists are stepped over)."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        info = _fields_by_key(model).get(part) if model else None
        model = _model_in(info.annotation) if info else None
    return model


def _field_at(loc: Loc) -> FieldInfo | None:
    model = _model_at(loc[:-1])
    return _fields_by_key(model).get(str(loc[-1])) if model else None


def _is_structured(annotation: object) -> bool:
    """Whether a setting holds a list or table (given as JSON in the environment)."""
    if get_origin(annotation) in {Union, types.UnionType, Annotated}:
        return any(_is_structured(arg) for arg in get_args(annotation))
    return get_origin(annotation) in {dict, tuple, list} or _model_in(annotation) is not None


# --- reading the file -----------------------------------------------------------------------


def config_path(cli_value: str | None, env: Mapping[str, str]) -> Path:
    """``-c FILE``, else ``$DROPZONE_CONFIG``, else /etc/dropzone/dropzone.toml."""
    chosen = cli_value or env.get(CONFIG_ENV) or ""
    return Path(chosen) if chosen else DEFAULT_CONFIG_PATH


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        problem = f"config file not found (give -c FILE or set {CONFIG_ENV})"
        raise ConfigError(path, [problem]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the config file: {exc.strerror}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (at byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None


# --- the environment ------------------------------------------------------------------------


class _EnvProblem(Exception):
    pass


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _env_name_form(name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", name.upper())


def _watch_index(data: dict[str, Any], name: str) -> int:
    watches = data.get("watch")
    items = watches if isinstance(watches, list) else []
    names = [w.get("name") if isinstance(w, dict) else None for w in items]
    hits = [i for i, n in enumerate(names) if isinstance(n, str) and _env_name_form(n) == name]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise _EnvProblem(f"the name {name} matches several watches: {[names[i] for i in hits]}")
    known = ", ".join(str(n) for n in names) or "none"
    raise _EnvProblem(f"no watch named {name.lower()!r} (watches: {known})")


def _env_loc(data: dict[str, Any], upper_name: str) -> Loc:
    section, _, rest = upper_name.removeprefix(ENV_PREFIX).partition("__")
    parts = rest.split("__")
    if not all(parts):
        raise _EnvProblem("empty key between '__' separators")
    section = section.lower()
    if section in SECTIONS:
        return (section, *(p.lower() for p in parts))
    if section == "watch":
        if len(parts) < 2:
            raise _EnvProblem("name a watch and a key: DROPZONE_WATCH__<NAME>__<KEY>")
        index = _watch_index(data, _env_name_form(parts[0]))
        return ("watch", index, *(p.lower() for p in parts[1:]))
    choices = [*SECTIONS, "watch"]
    raise _EnvProblem(f"unknown section {section!r}{_suggest(section, choices)}")


def _env_value(loc: Loc, raw: str) -> object:
    info = _field_at(loc)
    if info is None:
        return raw  # an unknown setting: validation reports it with a suggestion
    if raw == "" and info.default is None:
        return None
    if not _is_structured(info.annotation):
        return _typed_env_string(info, raw)
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise _EnvProblem(f"{loc[-1]} takes a JSON list or table") from None


def _typed_env_string(info: FieldInfo, raw: str) -> object:
    """The string read as the setting's type reads one ("5" -> 5, "true" -> true), as TOML
    would have typed it: the file's values are taken strictly, but the environment has only
    strings. One the type cannot read is left as it is, for validation to report."""
    if info.annotation is None or not raw:
        # "" is no value of any type; as a path it would become "." (see _not_empty_path).
        return raw
    try:
        return TypeAdapter(info.annotation).validate_python(raw)
    except ValidationError:
        return raw


def _place(data: dict[str, Any], loc: Loc, value: object) -> None:
    node: Any = data
    for part, following in itertools.pairwise(loc):
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        if not isinstance(node, list if isinstance(following, int) else dict):
            raise _EnvProblem(f"{part!r} in the config file has another shape")
    node[loc[-1]] = value


def _overrides(env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for name in sorted(env):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and "__" in upper:
            yield name, upper


def apply_environment(
    data: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[Loc, str], list[str]]:
    """(data with the overrides laid over it, env var name per overridden setting, problems)."""
    data = copy.deepcopy(data)
    origins: dict[Loc, str] = {}
    problems: list[str] = []
    for name, upper in _overrides(env):
        try:
            loc = _env_loc(data, upper)
            _place(data, loc, _env_value(loc, env[name]))
        except _EnvProblem as exc:
            problems.append(f"environment {name}: {exc}")
        else:
            origins[loc] = name
    return data, origins, problems


# --- describing validation errors -----------------------------------------------------------


def _setting_path(loc: Loc, data: dict[str, Any]) -> str:
    text = ""
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            if loc[:depth] == ("watch",):
                text += _watch_label(data, part)
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _watch_label(data: dict[str, Any], index: int) -> str:
    watches: Any = data.get("watch")
    try:
        name = watches[index]["name"]
    except (TypeError, LookupError):
        return ""
    return f" (name {json.dumps(name, ensure_ascii=False)})" if isinstance(name, str) else ""


def _origin(loc: Loc, origins: Mapping[Loc, str]) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return f" (from environment {origins[loc[:end]]})"
    return ""


# pydantic's words for a value of the wrong type name Python's types ("a valid tuple", "instance
# of ModelSpec", "<class 'pathlib.Path'>"); these are TOML's.
_EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "path_type": "expected a path (a string)",
    "tuple_type": "expected an array",
    "list_type": "expected an array",
    "dict_type": "expected a table",
    "model_type": "expected a table",
}
_UNQUOTED = {"int_type", "float_type", "bool_type"}
_MAX_SHAPE_KEYS = 3


def _expected(error: ErrorDetails) -> str:
    loc, kind = error["loc"], error["type"]
    if loc == ("watch",) and kind == "tuple_type":
        return "expected [[watch]] tables (an array of tables), not one [watch] table"
    expected = _EXPECTED[kind]
    model = _model_at(loc) if kind == "model_type" else None
    keys = list(_fields_by_key(model)) if model else []
    if 0 < len(keys) <= _MAX_SHAPE_KEYS:
        expected += " { " + ", ".join(f"{key} = ..." for key in keys) + " }"
    return expected


def _quoted_scalar(value: object) -> bool:
    """Whether ``value`` is a string that, without its quotes, TOML reads as a number or boolean
    ("5", "true"; not "soon")."""
    if not isinstance(value, str):
        return False
    try:
        unquoted = tomllib.loads(f"value = {value}").get("value")
    except tomllib.TOMLDecodeError:
        return False
    return isinstance(unquoted, int | float | bool)


_RANGE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "finite_number",
}


def _constraints(annotation: object, metadata: Sequence[object]) -> Iterator[object]:
    yield from metadata
    for arg in get_args(annotation):  # `Annotated[int, Field(ge=1)] | None` holds them inside
        if isinstance(arg, FieldInfo):
            yield from arg.metadata
        else:
            yield from _constraints(arg, ())


def range_text(info: FieldInfo) -> str | None:
    """A numeric setting's range in words: "from 1 to 3650", "above 0, at most 3600"."""
    low = high = None
    for item in _constraints(info.annotation, info.metadata):
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = item
        elif isinstance(item, annotated_types.Le):
            high = item.le
    if low is None or high is None:
        return None
    if isinstance(low, annotated_types.Ge):
        return f"from {low.ge:g} to {high:g}"
    return f"above {low.gt:g}, at most {high:g}"


def _range_message(error: ErrorDetails) -> str:
    info = _field_at(error["loc"])
    span = range_text(info) if info is not None else None
    if span is None:
        return str(error["msg"])
    if error["type"] == "finite_number":
        return f"must be a finite number {span}"
    return f"out of range: must be {span}"


def _message(error: ErrorDetails, *, from_file: bool) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        if loc[-1] in REMOVED_SETTINGS and _model_at(loc[:-1]) is DaemonSettings:
            return REMOVED_SETTINGS[str(loc[-1])]
        model = _model_at(loc[:-1])
        keys = list(_fields_by_key(model)) if model else []
        return "unknown setting" + _suggest(str(loc[-1]), keys)
    if error["type"] == "missing":
        return NO_WATCH if loc == ("watch",) else "required setting is missing"
    if error["type"] in _EXPECTED:
        message = _expected(error)
    elif error["type"] in _RANGE_ERRORS:
        message = _range_message(error)
    else:
        message = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    if loc[-1] in CREDENTIAL_SETTINGS and _model_at(loc[:-1]) is ArkSettings:
        return f"{message} {NOT_SHOWN}"
    # pydantic's own messages do not show the value; ours (value_error) say what they need to.
    if isinstance(shown, str | int | float | bool) and error["type"] != "value_error":
        message += f" (got {json.dumps(shown, ensure_ascii=False)[:80]})"
        if from_file and error["type"] in _UNQUOTED and _quoted_scalar(shown):
            message += "; in TOML, numbers and true/false are written without quotes"
    return message


def describe_errors(
    exc: ValidationError, data: dict[str, Any], origins: Mapping[Loc, str]
) -> list[str]:
    """One line per validation error: ``setting.path (from environment X): what is wrong``."""
    described = []
    for error in exc.errors(include_url=False):
        origin = _origin(error["loc"], origins)
        message = _message(error, from_file=not origin)
        described.append(f"{_setting_path(error['loc'], data)}{origin}: {message}")
    return described


# --- loading --------------------------------------------------------------------------------


def _private_keys(data: dict[str, Any]) -> list[str]:
    # A leading "_" would reach BaseSettings' constructor options (_env_file, _secrets_dir ...).
    return [key for key in data if key.startswith("_")]


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """The validated settings from ``path`` and ``env``; ConfigError lists every problem."""
    # The folder made absolute, so that the settings mean the same from any folder.
    token = _config_folder.set(path.absolute().parent)
    try:
        return _validated(path, env)
    finally:
        _config_folder.reset(token)


def _validated(path: Path, env: Mapping[str, str]) -> Settings:
    data, origins, problems = apply_environment(_read_toml(path), env)
    for key in _private_keys(data):
        del data[key]
        problems.append(f"{key}: unknown setting")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(path, [*problems, *describe_errors(exc, data, origins)]) from None
    if problems:
        raise ConfigError(path, problems)
    return settings


# --- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialsFound:
    """Credentials and where they came from (the repr hides the secrets)."""

    credentials: Credentials
    source: str


def _pair(values: Sequence[str | None], names: Sequence[str]) -> Credentials | None:
    """Credentials from (access key, secret key, token) or None; half a pair is an error."""
    access_key, secret_key, token = values
    if access_key and secret_key:
        problems = [
            f"{name}: {problem} {NOT_SHOWN}"
            for name, value, check in zip(names, values, _CREDENTIAL_CHECKS, strict=True)
            if value and (problem := check(value))
        ]
        if problems:
            raise ConfigError(None, problems)
        return Credentials(access_key, secret_key, token or None)
    if not (access_key or secret_key or token):
        return None
    present = [n for n, v in zip(names, values, strict=True) if v]
    missing = [n for n, v in zip(names[:2], values[:2], strict=True) if not v]
    problem = f"{' and '.join(present)} set, but {' and '.join(missing)} missing or empty"
    raise ConfigError(None, [f"incomplete credentials: {problem}"])


# The checks the signer and the HTTP clients need, made once at load: otherwise a bad byte
# fails every call, deep inside, as a UnicodeEncodeError traceback and a worker loop.
_HEADER_CHARACTERS = re.compile(r"[!-~]+")  # visible ASCII: no space, control or other letter


def _header_value_problem(value: str) -> str | None:
    if _HEADER_CHARACTERS.fullmatch(value):
        return None
    return "must be printable ASCII without spaces (it is sent in an HTTP header)"


def _secret_key_problem(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"  # a byte the environment could not decode
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "must not hold spaces, line breaks or control characters"
    return None


_CREDENTIAL_CHECKS = (_header_value_problem, _secret_key_problem, _header_value_problem)


def _from_env(env: Mapping[str, str], names: Sequence[str]) -> Credentials | None:
    values = [(env.get(n) or "").strip() or None for n in names] + [None] * (3 - len(names))
    return _pair(values, [*names, "session token"][:3])


def _read_secret(path: Path, what: str, *, required: bool, show_path: bool) -> str | None:
    where = path if show_path else None
    hint = "" if show_path else f" {NOT_SHOWN}"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        if required:
            raise ConfigError(where, [f"{what}: no such file{hint}"]) from None
        return None
    except OSError as exc:
        raise ConfigError(where, [f"{what}: cannot read: {exc.strerror}{hint}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(where, [f"{what}: not UTF-8 text"]) from None
    return text.strip() or None


def _from_setting_files(ark: ArkSettings) -> CredentialsFound | None:
    files = (ark.access_key_file, ark.secret_key_file, ark.session_token_file)
    names = [f"[ark] {n}_file" for n in CREDENTIAL_FILE_NAMES]
    values = [
        _read_secret(p, n, required=True, show_path=False) if p else None
        for p, n in zip(files, names, strict=True)
    ]
    found = _pair(values, names)
    shown = ", ".join(n for p, n in zip(files, names, strict=True) if p)
    return CredentialsFound(found, f"files named by {shown}") if found else None


def _from_directory(directory: Path) -> CredentialsFound | None:
    paths = [directory / name for name in CREDENTIAL_FILE_NAMES]
    # Fixed names in a folder the service manager or the container gives: safe to show.
    values = [_read_secret(p, p.name, required=False, show_path=True) for p in paths]
    found = _pair(values, [str(p) for p in paths])
    shown = ", ".join(str(p) for p, v in zip(paths, values, strict=True) if v)
    return CredentialsFound(found, f"files {shown}") if found else None


def load_credentials(
    ark: ArkSettings, env: Mapping[str, str], secret_dirs: Sequence[Path] = ()
) -> CredentialsFound | None:
    """The first complete credentials, in this order, or None when there are none at all.

    ``VOLCENGINE_ACCESS_KEY``/``VOLCENGINE_SECRET_KEY``(/``VOLCENGINE_SESSION_TOKEN``); then
    ``VOLC_ACCESSKEY``/``VOLC_SECRETKEY``; then the ``[ark] *_file`` settings; then files named
    ``access_key``, ``secret_key``, ``session_token`` in ``$CREDENTIALS_DIRECTORY`` (systemd
    ``LoadCredential=``) and then in each of ``secret_dirs``. A source that has half a pair is
    an error, not a reason to look further: it is almost always a mistake worth knowing.
    """
    for source, names in _ENV_CREDENTIALS:
        credentials = _from_env(env, names)
        if credentials:
            return CredentialsFound(credentials, source)
    found = _from_setting_files(ark)
    if found:
        return found
    systemd = env.get("CREDENTIALS_DIRECTORY", "")
    directories = [Path(systemd)] if systemd else []
    for directory in [*directories, *secret_dirs]:
        found = _from_directory(directory)
        if found:
            return found
    return None
