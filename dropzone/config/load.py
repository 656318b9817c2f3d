"""The config file found, read, overlaid with the environment and validated once."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    ValidationError,
)

from dropzone.config.env import apply_environment
from dropzone.config.fields import config_folder
from dropzone.config.model import Settings
from dropzone.config.problems import ConfigError, describe_errors

if TYPE_CHECKING:
    from collections.abc import Mapping


DEFAULT_CONFIG_PATH = Path("/etc/dropzone/dropzone.toml")
CONFIG_ENV = "DROPZONE_CONFIG"


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


def _private_keys(data: dict[str, Any]) -> list[str]:
    # A leading "_" would reach BaseSettings' constructor options (_env_file, _secrets_dir ...).
    return [key for key in data if key.startswith("_")]


def load_settings(path: Path, env: Mapping[str, str]) -> Settings:
    """The validated settings from ``path`` and ``env``; ConfigError lists every problem."""
    # The folder made absolute, so that the settings mean the same from any folder.
    token = config_folder.set(path.absolute().parent)
    try:
        return _validated(path, env)
    finally:
        config_folder.reset(token)


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
