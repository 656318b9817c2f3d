"""The settings model: one frozen, validated object per config, section by section."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SecretBytes,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dropzone import plan
from dropzone.config.events import EVENTS_SECRETS, EventsSettings, feed_problem
from dropzone.config.fields import (
    COMPLETION_WINDOW,
    DAY_S,
    HOUR_S,
    MAX_ACTIVE_JOBS,
    MAX_RETENTION_DAYS,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    WATCH_NAME,
    ConfigPath,
    FromToml,
    NonEmpty,
    Section,
    Timeout,
    as_folder,
    check_endpoint,
    check_ledger_url,
    check_listen,
    check_template,
    default_output_prefix,
)
from dropzone.config.notify import NotifySettings, check_results_dir, results_root, shown_url
from dropzone.ignore import DEFAULT_IGNORE
from dropzone.levels import DEFAULT_LEVEL, LogLevel

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails, InitErrorDetails


SECTIONS = ("ark", "tos", "ledger", "daemon", "events")
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
# The [ledger] settings whose values an error never shows: a url may hold a password typed
# where it does not belong, a password file's path may be the password pasted by mistake.
LEDGER_SECRETS = frozenset({"url", "password_file"})
NOT_SHOWN = "(the value is not shown)"
SECURE = "[secure]"


class ArkSettings(Section):
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
    # How long the platform accepts a signed request (Ark's: 900 s). An attempt taken over
    # from a node that may be stalled is sent again only once its signature expired; only an
    # emulator with a shorter lifetime has a reason to change it.
    signature_validity_s: Annotated[float, Field(ge=1, le=DAY_S)] = 900

    _endpoint = field_validator("endpoint")(check_endpoint)


# TOS's own hosts: tos-s3-<region>.volces.com, and .ivolces.com on the private network.
_TOS_HOSTS = (".volces.com", ".ivolces.com")


class TosSettings(Section):
    endpoint: str = "https://tos-s3-cn-beijing.volces.com"
    region: NonEmpty = "cn-beijing"
    addressing_style: Literal["virtual", "path", "auto"] = "virtual"
    # TOS calls have time-outs of their own: a listing page of a large prefix may take longer
    # than any one Ark call should.
    timeout_s: Timeout = 60
    connect_timeout_s: Timeout = 10

    _endpoint = field_validator("endpoint")(check_endpoint)

    @model_validator(mode="after")
    def _tos_serves_virtual_hosts(self) -> Self:
        host = urlsplit(self.endpoint).hostname or ""
        if self.addressing_style == "path" and host.endswith(_TOS_HOSTS):
            raise ValueError(
                f'addressing_style = "path" with the TOS endpoint {host}: TOS serves '
                'virtual-hosted style only; use "virtual" ("path" is for local S3 servers)'
            )
        return self


class LedgerSettings(Section):
    """``path``: the SQLite ledger (the default store); ``url``: a PostgreSQL database instead,
    its password in ``password_file`` (or libpq's ``PGPASSWORD``), never in the url."""

    path: ConfigPath = Path("/var/lib/dropzone/ledger.sqlite3")
    url: str | None = None
    password_file: ConfigPath | None = None
    retention_days: Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] = 30
    # A node whose lease is this much older (by the database's clock) is taken for gone: its
    # roles pass on and its attempts are reconciled by another. Renewed every third of it.
    lease_ttl_s: Annotated[float, Field(ge=3, le=HOUR_S)] = 30

    _url = field_validator("url")(check_ledger_url)

    @model_validator(mode="after")
    def _one_store(self) -> Self:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("set path (an SQLite ledger) or url (PostgreSQL), not both")
        if self.password_file is not None and self.url is None:
            raise ValueError("password_file is the PostgreSQL ledger's: it needs url")
        return self


class DaemonSettings(Section):
    # A floor: a listing as fast as the loop turns is no interval.
    poll_interval_s: Annotated[float, Field(ge=0.1, le=DAY_S)] = 30
    track_interval_s: Annotated[float, Field(ge=0, le=DAY_S)] = 60
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    listen: str = "127.0.0.1:9464"
    drain_timeout_s: Annotated[float, Field(ge=0, le=HOUR_S)] = 30
    once_max_wait_s: Annotated[float, Field(ge=0, le=DAY_S)] = 300
    log_level: LogLevel = DEFAULT_LEVEL

    _listen = field_validator("listen")(check_listen)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """(host, port) for a socket, brackets of an IPv6 host removed; None when disabled."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ModelSpec(Section):
    name: NonEmpty
    version: NonEmpty | None = None


class _WatchName(Section):
    # A base of its own, listed after WatchLayout among WatchRule's bases, so that `name` stays
    # a watch's first setting (in errors and in `dropzone check`) yet a layout needs no name.
    name: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not WATCH_NAME.fullmatch(value):
            raise ValueError('must be 1-64 characters of letters, digits, "_", "." or "-"')
        return value


class WatchLayout(Section):
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

    _output_template = field_validator("output_template")(check_template)

    @model_validator(mode="before")
    @classmethod
    def _fill_output_prefix(cls, data: Any) -> Any:  # noqa: ANN401 - raw input of any shape
        if isinstance(data, dict) and "output_prefix" not in data:
            prefix = data.get("prefix", "")
            if isinstance(prefix, str) and not prefix.startswith("/"):
                return {**data, "output_prefix": default_output_prefix(as_folder(prefix))}
        return data

    @field_validator("prefix", "output_prefix")
    @classmethod
    def _check_folder(cls, value: str) -> str:
        return as_folder(value)

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
    # Notifications as the trigger; the listing, every reconcile_interval_s, stays the truth.
    feed: Literal["http", "kafka"] | None = None
    reconcile_interval_s: Annotated[float, Field(ge=1, le=DAY_S)] = 600
    # Who hears when a job ends or an upload is turned away.
    notify: NotifySettings | None = None
    # A folder watch: where a completed job's result files are put, below local_dir ("" none).
    results_dir: str = "results/{relpath_stem}/"

    _name_template = field_validator("name_template")(check_template)

    @field_validator("results_dir")
    @classmethod
    def _check_results_dir(cls, value: str) -> str:
        if not value:
            return value
        problem = check_results_dir(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def folder_ignore(self) -> tuple[str, ...]:
        """What a folder watch leaves alone: ``ignore``, and the results it puts there itself."""
        if self.local_dir is None or not self.results_dir:
            return self.ignore
        return (*self.ignore, f"{results_root(self.results_dir)}*")

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
        days = COMPLETION_WINDOW.fullmatch(value)
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
    events: EventsSettings = Field(default_factory=EventsSettings)
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
            problem = feed_problem(rule, info.data.get("events"), daemon)
            if problem:
                raise ValueError(f"watch {rule.name!r}: {problem}")
            seen = first.setdefault(rule.name.lower(), index)
            if seen != index:
                raise ValueError(
                    f"watch names must be unique (ignoring case): watch[{seen}] and "
                    f"watch[{index}] are both named {rule.name!r}"
                )
        return value

    @property
    def bucket_watches(self) -> tuple[WatchRule, ...]:
        """The rules that list their bucket: those without ``local_dir`` (a folder watch's
        source is its folder, and what it uploads the bucket's listing never sees)."""
        return tuple(rule for rule in self.watches if rule.local_dir is None)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as JSON-ready data, any secret shown as ``[secure]``."""
        plain = redact(self.model_dump(by_alias=True))
        assert isinstance(plain, dict)
        ark = plain["ark"]
        for name in CREDENTIAL_SETTINGS:  # a path, but perhaps a secret pasted by mistake
            if ark[name] is not None:
                ark[name] = SECURE
        if plain["ledger"]["password_file"] is not None:
            plain["ledger"]["password_file"] = SECURE
        for name in EVENTS_SECRETS:
            if plain["events"][name] is not None:
                plain["events"][name] = SECURE
        for watch in plain["watch"]:
            notify = watch["notify"]
            if notify is not None:
                notify["url"] = None if notify["url"] is None else shown_url(notify["url"])
                notify["secret_file"] = None if notify["secret_file"] is None else SECURE
        return plain


def redact(value: object) -> object:
    if isinstance(value, SecretStr | SecretBytes):
        return SECURE
    if isinstance(value, dict):
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
