"""The parts every command makes from settings: the config, credentials, clients, the ledger.

The one place that reads the environment and the clock; what is made here is passed into the
pieces that use it, so each can be tested with real local stand-ins. A daemon's own wiring is
:mod:`dropzone.daemon.build`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone.config import ConfigError, config_path, load_credentials, load_settings
from dropzone.errors import ConfigurationError
from dropzone.ledger import LedgerError, LedgerMissing, SqliteLedger
from dropzone.log import register_secrets, use_setting

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

    from dropzone.ark.client import ArkClient, CallObserver
    from dropzone.ark.signer import Credentials
    from dropzone.config import Settings
    from dropzone.ledger import Ledger

CONTAINER_SECRETS = Path("/run/secrets")


class UsageError(ConfigurationError):
    """A configuration or usage problem: the message names the file and the setting."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def config_file(cli_value: str | None) -> Path:
    """The config file a command reads: ``-c FILE``, else $DROPZONE_CONFIG, else the default."""
    return config_path(cli_value, os.environ)


def settings_from(cli_value: str | None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    try:
        settings = load_settings(config_path(cli_value, env), env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    # Here, so that every command and a SIGHUP reload log at the configured level.
    use_setting(settings.daemon.log_level)
    return settings


def credentials_for(settings: Settings, env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    try:
        found = load_credentials(settings.ark, env, (CONTAINER_SECRETS,))
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    if found is None:
        raise UsageError(
            "no Volcengine credentials found: set VOLCENGINE_ACCESS_KEY and "
            "VOLCENGINE_SECRET_KEY (or VOLC_ACCESSKEY / VOLC_SECRETKEY), or [ark] "
            "access_key_file / secret_key_file, or put files access_key and secret_key in "
            f"$CREDENTIALS_DIRECTORY (systemd LoadCredential=) or in {CONTAINER_SECRETS} "
            "(container secrets)"
        )
    creds = found.credentials
    register_secrets([creds.secret_key, creds.session_token])
    return creds


def s3_client(settings: Settings, credentials: Credentials | None) -> S3Client:
    # Imported here, as the client below: boto3 and httpx are most of a command's start-up,
    # and status or check --offline use neither.
    from dropzone.sources.tos import make_s3_client  # noqa: PLC0415

    return make_s3_client(
        endpoint=settings.tos.endpoint,
        region=settings.tos.region,
        addressing_style=settings.tos.addressing_style,
        credentials=credentials,
        timeout_s=settings.tos.timeout_s,
        connect_timeout_s=settings.tos.connect_timeout_s,
    )


def ark_client(
    settings: Settings, credentials: Credentials, observer: CallObserver | None = None
) -> ArkClient:
    from dropzone.ark.client import ArkClient  # noqa: PLC0415 - see s3_client

    return ArkClient(
        endpoint=settings.ark.endpoint,
        region=settings.ark.region,
        credentials=credentials,
        timeout_s=settings.ark.timeout_s,
        connect_timeout_s=settings.ark.connect_timeout_s,
        max_requests_per_second=settings.ark.max_requests_per_second,
        observer=observer,
    )


def fan_out(*observers: CallObserver) -> CallObserver:
    """One client observer that tells each of ``observers`` about every call."""

    def observe(action: str, outcome: str, seconds: float, detail: str = "") -> None:
        for observer in observers:
            observer(action, outcome, seconds, detail)

    return observe


def no_ledger(settings: Settings, config: Path | None = None) -> str:
    """What to say when a command finds no ledger where the config points."""
    of = f" of {config}" if config is not None else ""
    where, setting = (
        (settings.ledger.url, "[ledger] url")
        if settings.ledger.url is not None
        else (settings.ledger.path, "[ledger] path")
    )
    return (
        f"no ledger at {where} ({setting}{of}): nothing has run with this config yet,"
        " or it points elsewhere"
    )


def open_ledger(
    settings: Settings, *, readonly: bool = False, daemon: bool = False, create: bool = False
) -> Ledger:
    """The ledger for a daemon (an SQLite file locked: one daemon per file; a PostgreSQL one
    shared by replicas) or for a short command.

    Short commands (``retry``, ``backfill``, ``forget``, ``submit``) write beside a running
    daemon: each change is one transaction the ledger's state rules guard, and the daemon's
    workers read the ledger anew at least every second. Only ``submit`` (and the daemon) may
    create a missing ledger; for the others a missing one is a mistaken path.
    """
    if settings.ledger.url is not None:
        return _open_postgres(settings, readonly=readonly, daemon=daemon, create=create)
    path = settings.ledger.path
    if path.is_dir():
        raise UsageError(
            f"[ledger] path {path} is a folder: name a file in it (say {path / 'ledger.sqlite3'})"
        )
    if not (daemon or create) and not path.exists():
        raise UsageError(no_ledger(settings))
    try:
        return SqliteLedger.open(path, lock=daemon, readonly=readonly)
    except Exception as exc:
        raise UsageError(str(exc)) from exc


def existing_ledger(settings: Settings) -> Ledger | None:
    """The ledger opened read-only, or None when there is none yet (``status``, previews)."""
    if settings.ledger.url is None and not settings.ledger.path.exists():
        return None
    try:
        return open_ledger(settings, readonly=True)
    except UsageError as exc:
        if isinstance(exc.__cause__, LedgerMissing):
            return None
        raise


def ledger_password(settings: Settings) -> str | None:
    """The PostgreSQL ledger's password from ``[ledger] password_file``; None: libpq's own
    (``PGPASSWORD``, ``.pgpass``) or none."""
    if settings.ledger.password_file is None:
        return None
    return read_password(settings.ledger.password_file, "[ledger] password_file")


def read_password(path: Path, setting: str) -> str:
    """A database password from its file (``setting`` names where it was given), masked in
    every log line from here on."""
    return _read_masked(path, setting, holding="the database password")


def read_secret(path: Path, setting: str) -> str:
    """A shared secret from its file, as :func:`read_password`; an empty one is refused (an
    HMAC with no key proves nothing)."""
    secret = _read_masked(path, setting, holding="the shared secret")
    if not secret:
        raise UsageError(f"{setting}: {path} is empty; it must hold the shared secret")
    return secret


def _read_masked(path: Path, setting: str, *, holding: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{setting}: cannot read it ({type(exc).__name__}); give a readable file holding"
            f" {holding}"
        ) from exc
    register_secrets([secret])
    return secret


def _open_postgres(settings: Settings, *, readonly: bool, daemon: bool, create: bool) -> Ledger:
    url = settings.ledger.url
    assert url is not None
    # Here, not at the top: psycopg takes about 0.3 s to import, which a command on an SQLite
    # ledger (the default) should not pay.
    from dropzone.ledger.postgres import PostgresLedger  # noqa: PLC0415

    password = ledger_password(settings)
    try:
        return PostgresLedger.open(
            url, password=password, lock=daemon, readonly=readonly, create=create or daemon
        )
    except LedgerError as exc:
        raise UsageError(str(exc)) from exc
