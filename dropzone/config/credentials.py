"""Credentials found when they are needed: environment, setting files, a credentials folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dropzone.ark.signer import Credentials
from dropzone.config.model import CREDENTIAL_FILE_NAMES, NOT_SHOWN, ArkSettings
from dropzone.config.problems import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


_ENV_CREDENTIALS = (
    (
        "environment VOLCENGINE_*",
        ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "VOLCENGINE_SESSION_TOKEN"),
    ),
    ("environment VOLC_*", ("VOLC_ACCESSKEY", "VOLC_SECRETKEY")),
)


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
