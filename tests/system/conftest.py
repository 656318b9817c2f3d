"""The system tests' engine and images, made once per session from nothing: a Debian base
by mmdebstrap, the Dockerfile built unchanged on it, and for the unit a Debian with systemd
holding the image's virtual environment. Skipped where no engine can be had, saying how to
get one, except in CI (``CI`` set), where .ci/run installs it and they fail instead."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO
from tests.system.engine import BASE_PACKAGES, SYSTEMD_PACKAGES, Podman, missing

if TYPE_CHECKING:
    from collections.abc import Iterator

IMAGE = "localhost/dropzone:system-test"
UNIT_IMAGE = "localhost/dropzone-unit:system-test"


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    reason = missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the system tests: {reason}")
        pytest.skip(reason)
    scratch = Path(tempfile.mkdtemp(prefix="dropzone-system-"))
    engine = Podman(scratch)
    yield engine
    engine("rm", "--all", "--force", "--time", "0", check=False)
    engine("system", "reset", "--force", check=False, timeout=300)
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The Dockerfile as it is, on a Debian Python made here."""
    base = podman.base_image("dropzone-base", BASE_PACKAGES)
    return podman.build(REPO, IMAGE, f"PYTHON_IMAGE={base}")


@pytest.fixture(scope="session")
def unit_image(podman: Podman, image: str) -> str:
    """systemd as PID 1, the image's /opt/dropzone and systemd/dropzone.service, enabled."""
    base = podman.base_image("dropzone-systemd-base", SYSTEMD_PACKAGES)
    context = podman.scratch / "unit-context"
    context.mkdir()
    shutil.copy(REPO / "systemd" / "dropzone.service", context / "dropzone.service")
    shutil.copy(Path(__file__).with_name("Containerfile.unit"), context / "Containerfile")
    return podman.build(context, UNIT_IMAGE, f"SYSTEMD_BASE={base}", f"DROPZONE_IMAGE={image}")
