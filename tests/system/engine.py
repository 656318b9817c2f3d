"""A rootful podman of the system tests' own, and the images they run.

Everything lives in one scratch folder (image storage, run root, containers.conf), so the
tests neither see nor change the machine's own images. The facts of these machines that the
settings answer: crun fails on their hybrid cgroups (runc), there is no systemd to run
health-check timers or to manage cgroups (cgroupfs, checks run by ``podman healthcheck run``),
no journald for events (a file), and the default rlimits are refused.

The base image is made here, from the Debian packages the machine installs from
(``mmdebstrap`` with the machine's own apt sources, so no mirror is named), with the machine's
extra CA certificates copied in: where egress goes through a TLS-inspecting proxy, pip inside
the build trusts it only so. It is a Debian Python 3.11, not the official slim image the
Dockerfile names by default: this proves the Dockerfile and the unit, not that base.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.harness import load_scale

PACKAGES = ("mmdebstrap", "podman", "buildah", "runc")
HOW_TO_GET_IT = (
    "the system tests need a container engine: apt-get install podman buildah runc mmdebstrap"
    " (as root)"
)
BASE_PACKAGES = "ca-certificates,python3,python3-venv,python3-pip,python-is-python3"
# What a systemd in a container needs beside the Python the venv links to.
SYSTEMD_PACKAGES = f"{BASE_PACKAGES},systemd,systemd-sysv,dbus,libnss-systemd"
LOCAL_CA = Path("/usr/local/share/ca-certificates")

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class NoEngine(Exception):
    """No container engine can be had here; the message says what is missing."""


def missing() -> str | None:
    """Why the system tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the system tests run a rootful podman: run them as root"
    absent = [name for name in PACKAGES if shutil.which(name) is None]
    if absent:
        return f"{HOW_TO_GET_IT} ({', '.join(absent)} not found)"
    return None


def _apt_sources() -> Path:
    for candidate in (
        Path("/etc/apt/sources.list.d/debian.sources"),
        Path("/etc/apt/sources.list"),
    ):
        if candidate.is_file():
            return candidate
    raise NoEngine("no apt sources file (/etc/apt/sources.list.d/debian.sources) to build from")


def _storage_driver() -> str:
    """overlay where the kernel has it, else vfs (a full copy per layer: slower, works anywhere)."""
    filesystems = Path("/proc/filesystems").read_text(encoding="utf-8")
    return "overlay" if "overlay" in filesystems.split() else "vfs"


class Podman:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        conf = scratch / "containers.conf"
        conf.write_text(CONTAINERS_CONF, encoding="utf-8")
        self._env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self._global = [
            "podman",
            "--root",
            str(scratch / "storage"),
            "--runroot",
            str(scratch / "run"),
            "--storage-driver",
            _storage_driver(),
        ]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._global, *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout * load_scale(),
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def base_image(self, name: str, packages: str) -> str:
        """A Debian bookworm rootfs with ``packages``, imported as ``localhost/<name>``."""
        tar = self.scratch / f"{name}.tar"
        hooks: list[str] = []
        certificates = sorted(LOCAL_CA.glob("*.crt")) if LOCAL_CA.is_dir() else []
        if certificates:
            paths = " ".join(str(path) for path in certificates)
            hooks += [
                f"--customize-hook=copy-in {paths} {LOCAL_CA}/",
                '--customize-hook=chroot "$1" update-ca-certificates',
            ]
        made = subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={packages}",
                *hooks,
                "bookworm",
                str(tar),
                str(_apt_sources()),
            ],
            capture_output=True,
            text=True,
            timeout=900 * load_scale(),
            check=False,
        )
        if made.returncode != 0:
            raise AssertionError(f"mmdebstrap failed:\n{made.stderr[-3000:]}")
        image = f"localhost/{name}:bookworm"
        self("import", str(tar), image, timeout=300)
        tar.unlink()
        return image

    def build(self, context: Path, tag: str, *build_args: str, file: Path | None = None) -> str:
        """``podman build`` in the docker format (the OCI one drops HEALTHCHECK), chroot
        isolation, the host's network (pip reaches the package index as this machine does)."""
        options = ["--isolation", "chroot", "--format", "docker", "--network", "host"]
        if file is not None:
            options += ["--file", str(file)]
        for arg in build_args:
            options += ["--build-arg", arg]
        self("build", *options, "--tag", tag, str(context), timeout=900)
        return tag

    def inspect(self, name: str, template: str) -> str:
        return self("inspect", "--format", template, name).stdout.strip()

    def remove(self, name: str) -> None:
        self("rm", "--force", "--time", "0", name, check=False)
