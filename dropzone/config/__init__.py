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

The package, from the values inward:

- :mod:`~dropzone.config.fields`: the kinds of value a setting holds and their checks;
- :mod:`~dropzone.config.model`: the sections, the watch rule and :class:`Settings`;
- :mod:`~dropzone.config.events`: the ``[events]`` section and what a watch's feed needs;
- :mod:`~dropzone.config.locate`: where a setting lives in the model;
- :mod:`~dropzone.config.env`: the environment laid over the file;
- :mod:`~dropzone.config.problems`: :class:`ConfigError` and errors in a person's words;
- :mod:`~dropzone.config.load`: :func:`load_settings`, the one entry point;
- :mod:`~dropzone.config.credentials`: :func:`load_credentials`;
- :mod:`~dropzone.config.text`: the effective configuration printed as TOML.
"""

from dropzone.config.credentials import CredentialsFound, load_credentials
from dropzone.config.events import EventsSettings
from dropzone.config.fields import MAX_TAGS, default_output_prefix
from dropzone.config.load import CONFIG_ENV, DEFAULT_CONFIG_PATH, config_path, load_settings
from dropzone.config.model import (
    CREDENTIAL_FILE_NAMES,
    SECTIONS,
    ArkSettings,
    DaemonSettings,
    LedgerSettings,
    ModelSpec,
    Settings,
    TosSettings,
    WatchLayout,
    WatchRule,
)
from dropzone.config.problems import ConfigError, range_text

__all__ = [
    "CONFIG_ENV",
    "CREDENTIAL_FILE_NAMES",
    "DEFAULT_CONFIG_PATH",
    "MAX_TAGS",
    "SECTIONS",
    "ArkSettings",
    "ConfigError",
    "CredentialsFound",
    "DaemonSettings",
    "EventsSettings",
    "LedgerSettings",
    "ModelSpec",
    "Settings",
    "TosSettings",
    "WatchLayout",
    "WatchRule",
    "config_path",
    "default_output_prefix",
    "load_credentials",
    "load_settings",
    "range_text",
]
