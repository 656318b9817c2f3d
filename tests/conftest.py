"""Shared fixtures: a clean environment for every test, and paths to shared project facts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
_CLEARED_PREFIXES = (
    "VOLC",
    "AWS_",
    "DROPZONE_",
    "NOTIFY_SOCKET",
    "WATCHDOG_",
    "CREDENTIALS_DIRECTORY",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's credentials, config or service-manager variables."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(name)
