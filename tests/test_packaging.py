"""The deployment files: the Dockerfile, .dockerignore and the systemd unit.

No Docker engine runs here, so the image is checked through its properties, and its build
stage is replayed outside Docker (the one slow test) to prove that it yields a working
``dropzone``. The unit is checked by systemd's own tools where ``systemd-analyze`` exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pytest

from dropzone import __version__
from dropzone.commands.exit_codes import EXIT_CONFIG
from dropzone.config import (
    CREDENTIAL_FILE_NAMES,
    DEFAULT_CONFIG_PATH,
    DaemonSettings,
    LedgerSettings,
)
from tests.conftest import REPO

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
UNIT = REPO / "systemd" / "dropzone.service"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
VENV = "/opt/dropzone"
MAX_EXPOSURE = 2.0
_PINNED_BASE = re.compile(r"python:3\.11\.[0-9]+-slim-bookworm(@sha256:[0-9a-f]{64})?")
_OVERALL_EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9]+\.[0-9]+)")


# --- a small Dockerfile reader --------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [step.args for step in self.instructions if step.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.args_of(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.args_of("ENV"):
            values.update(_env_pairs(args, values))
        return values


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"


def _expand(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], text)


def _env_pairs(args: str, known: Mapping[str, str]) -> dict[str, str]:
    words = shlex.split(args)
    if "=" not in words[0]:  # the legacy form: ENV NAME value with spaces
        return {words[0]: " ".join(words[1:])}
    pairs = [word.partition("=") for word in words]
    return {name: _expand(value, {**os.environ, **known}) for name, _, value in pairs}


def read_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            image, *alias = args.split()
            name = alias[1] if len(alias) == 2 and alias[0].upper() == "AS" else str(len(stages))
            stages.append(Stage(_expand(image, global_args), name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args))
        else:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            name, _, default = args.partition("=")
            global_args[name] = default
    return stages


def _runtime() -> Stage:
    return read_dockerfile()[-1]


def _build_stage() -> Stage:
    stages = read_dockerfile()
    (source,) = {
        s for args in _runtime().args_of("COPY") for s in re.findall(r"--from=(\S+)", args)
    }
    return next(stage for stage in stages if stage.name == source)


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form (a JSON list): {args}"
    assert all(isinstance(word, str) for word in value)
    return value


def _healthcheck() -> tuple[dict[str, str], list[str]]:
    """(options such as {"timeout": "5s"}, the command in exec form)."""
    found = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.*)", _runtime().last("HEALTHCHECK"))
    assert found, "HEALTHCHECK must be HEALTHCHECK [OPTIONS] CMD [...]"
    options = {}
    for option in found.group(1).split():
        name, _, value = option.removeprefix("--").partition("=")
        options[name] = value
    return options, _exec_form(found.group(2))


# --- .dockerignore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    exclude: bool
    pattern: str
    regex: re.Pattern[str]


_GLOB_TOKEN = re.compile(r"\*\*/|\*\*|\*|\?|\[[^\]]*\]|[^*?\[]+")
_GLOB_REGEX = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = [
        _GLOB_REGEX.get(token, token if token.startswith("[") else re.escape(token))
        for token in _GLOB_TOKEN.findall(pattern)
    ]
    return re.compile("".join(parts))


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[IgnoreRule]:
    rules = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line.removeprefix("!").strip().strip("/")  # Docker cleans the pattern's ends
        rules.append(IgnoreRule(not line.startswith("!"), pattern, _glob_regex(pattern)))
    return rules


def in_context(path: PurePosixPath, rules: list[IgnoreRule]) -> bool:
    """Docker's rule: the last pattern matching the path, or a folder above it, decides."""
    candidates = [str(path), *(str(p) for p in path.parents if str(p) != ".")]
    included = True
    for rule in rules:
        if any(rule.regex.fullmatch(candidate) for candidate in candidates):
            included = not rule.exclude
    return included


def build_context(root: Path = REPO) -> set[str]:
    """The files Docker would send, as paths relative to ``root``."""
    rules = read_dockerignore()
    reentries = [rule.pattern for rule in rules if not rule.exclude]

    def worth_entering(folder: PurePosixPath) -> bool:
        # Skipping left-out folders (.venv, .git) keeps this fast; a "!" rule below one reopens it.
        return in_context(folder, rules) or any(p.startswith(f"{folder}/") for p in reentries)

    found: set[str] = set()
    for here, folders, files in os.walk(root):
        base = PurePosixPath(Path(here).relative_to(root).as_posix())
        folders[:] = [name for name in folders if worth_entering(base / name)]
        found.update(str(base / name) for name in files if in_context(base / name, rules))
    return found


def _copy_sources(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    copies = []
    for args in stage.args_of("COPY"):
        *sources, destination = shlex.split(args)
        assert not any(s.startswith("--") for s in sources), f"the replay cannot do: COPY {args}"
        copies.append((sources, destination))
    return copies


def _under(source: str, context: set[str]) -> dict[str, str]:
    """{context path: path relative to the copy's destination} for one COPY source."""
    prefix = source.rstrip("/")
    files = {path: PurePosixPath(path).name for path in context if path == prefix}
    files.update({p: p[len(prefix) + 1 :] for p in context if p.startswith(f"{prefix}/")})
    return files


# --- the Dockerfile's properties -------------------------------------------------------------


def test_dockerfile_has_two_stages_on_one_pinned_base() -> None:
    """Multi-stage, and every stage starts from python:3.11.<patch>-slim-bookworm, never a moving
    tag: the same base in both, since the venv built in one links to the other's interpreter."""
    stages = read_dockerfile()
    assert len(stages) >= 2
    for stage in stages:
        assert _PINNED_BASE.fullmatch(stage.base), f"{stage.name}: unpinned base {stage.base}"
        assert "latest" not in stage.base
    assert len({stage.base for stage in stages}) == 1


def test_runtime_stage_runs_as_a_fixed_unprivileged_uid() -> None:
    """The final USER is numeric (so Kubernetes' runAsNonRoot can verify it) and not root, and
    the state folder is made and owned by that user before VOLUME copies it into new volumes."""
    stage = _runtime()
    user, _, group = stage.last("USER").partition(":")
    assert user.isdigit(), "USER must be a numeric UID"
    assert int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)
    keywords = [step.keyword for step in stage.instructions]
    made = [
        i
        for i, step in enumerate(stage.instructions)
        if step.keyword == "RUN"
        and re.search(rf"-o {user} .*{LedgerSettings().path.parent}", step.args)
    ]
    assert made, "no RUN makes the state folder owned by the runtime user"
    assert made[0] < keywords.index("VOLUME")


def test_runtime_stage_declares_state_config_and_ports() -> None:
    """The ledger's folder is the volume, the config path and listen address are the ones the
    code reads, the metrics port is exposed and SIGTERM stops the daemon."""
    stage = _runtime()
    volume = stage.last("VOLUME")
    volumes = _exec_form(volume) if volume.startswith("[") else volume.split()
    assert volumes == [str(LedgerSettings().path.parent)]
    env = stage.env()
    listen = f"0.0.0.0:{_default_port()}"
    assert env["DROPZONE_CONFIG"] == str(DEFAULT_CONFIG_PATH)
    assert env["DROPZONE_DAEMON__LISTEN"] == listen
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert stage.last("EXPOSE").split() == [str(_default_port())]
    assert stage.last("STOPSIGNAL") == "SIGTERM"


def test_runtime_stage_starts_dropzone_in_exec_form_without_an_installer() -> None:
    """ENTRYPOINT is exec form (dropzone is PID 1 and gets SIGTERM itself) and runs the venv's
    console script; the final stage installs nothing and copies only the venv from the build."""
    stage = _runtime()
    assert _exec_form(stage.last("ENTRYPOINT")) == [f"{VENV}/bin/dropzone"]
    assert _exec_form(stage.last("CMD")) == ["run"]
    for args in stage.args_of("RUN"):
        assert not re.search(r"\bpip\b|apt-get|\bgcc\b|build-essential", args), args
    assert [shlex.split(args) for args in stage.args_of("COPY")] == [
        [f"--from={_build_stage().name}", VENV, VENV]
    ]


def test_build_stage_installs_the_project_into_the_venv() -> None:
    """The build stage makes the venv where ENTRYPOINT expects it and pip-installs the project."""
    runs = " && ".join(_build_stage().args_of("RUN"))
    assert f"-m venv --without-pip {VENV}" in runs
    assert re.search(rf"pip --python {VENV}/bin/python install \.(\s|$)", runs)


def test_healthcheck_asks_healthz_within_its_timeout() -> None:
    """The HEALTHCHECK runs the venv's Python (no curl in a slim image) against /healthz, and
    its own HTTP timeout ends before Docker's --timeout would kill it."""
    options, command = _healthcheck()
    assert command[:2] == [f"{VENV}/bin/python", "-c"]
    assert "/healthz" in command[2]
    http_timeout = re.search(r"timeout=([0-9.]+)\)", command[2])
    assert http_timeout
    assert float(http_timeout.group(1)) < float(options["timeout"].removesuffix("s"))
    assert {"interval", "start-period", "retries"} <= options.keys()


class _HealthServer(ThreadingHTTPServer):
    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(("127.0.0.1", 0), _HealthHandler)
        self.status = status
        self.paths: list[str] = []


class _HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _HealthServer)
        server.paths.append(self.path)
        self.send_response(server.status if self.path == "/healthz" else HTTPStatus.NOT_FOUND)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


@pytest.fixture
def health_server(request: pytest.FixtureRequest) -> Iterator[_HealthServer]:
    server = _HealthServer(request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _run_healthcheck(port: int, **extra_env: str) -> subprocess.CompletedProcess[str]:
    _, command = _healthcheck()
    env = {"PATH": os.environ["PATH"], "DROPZONE_DAEMON__LISTEN": f"0.0.0.0:{port}", **extra_env}
    return subprocess.run(
        [sys.executable, *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("health_server", "healthy"),
    [(HTTPStatus.OK, True), (HTTPStatus.SERVICE_UNAVAILABLE, False)],
    indirect=["health_server"],
)
def test_healthcheck_command_follows_healthz(health_server: _HealthServer, healthy: bool) -> None:
    """The HEALTHCHECK command, run as written, exits 0 on a 200 from /healthz and non-zero on
    a 503; it finds the port in DROPZONE_DAEMON__LISTEN and ignores an HTTP proxy setting."""
    port = health_server.server_address[1]
    done = _run_healthcheck(port, HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    assert (done.returncode == 0) is healthy, done.stderr
    assert health_server.paths == ["/healthz"]


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    """A daemon that is not listening (yet, or any more) makes the HEALTHCHECK fail."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert _run_healthcheck(port).returncode != 0


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    """The build context is the COPY sources and nothing else: no .venv, .git, caches, tests or
    local secrets reach the builder, and no file the build needs is left out."""
    context = build_context()
    expected: set[str] = set()
    for sources, _ in _copy_sources(_build_stage()):
        for source in sources:
            on_disk = REPO / source
            files = on_disk.rglob("*") if on_disk.is_dir() else [on_disk]
            expected.update(
                path.relative_to(REPO).as_posix()
                for path in files
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
            )
    assert context == expected
    assert "dropzone/cli.py" in context
    assert not {p for p in context if p.startswith((".venv/", ".git/", "tests/", "bench/"))}


# --- replaying the build stage ---------------------------------------------------------------


def _replay_copy(args: str, workdir: Path, context: set[str]) -> None:
    *sources, destination = shlex.split(args)
    target = workdir / destination
    for source in (s.rstrip("/") for s in sources):
        files = _under(source, context)
        assert files, f"COPY {source}: not in the build context (see .dockerignore)"
        for path, relative in files.items():
            # A folder's contents go under the destination, as do several sources' files.
            into_folder = destination.endswith("/") or len(sources) > 1 or path != source
            out = target / relative if into_folder else target
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, out)


def _replay_run(command: str, workdir: Path, env: Mapping[str, str]) -> None:
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=workdir,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"RUN {command}\n{done.stdout}\n{done.stderr}"


def replay_build_stage(root: Path) -> Path:
    """Run the build stage's steps with ``root`` standing for ``/``; return the venv built.

    ``python`` is this interpreter (3.11, as the base image's is); COPY takes files from the
    build context as .dockerignore leaves it; absolute paths under /opt/dropzone move to root.
    """
    context = build_context()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    workdir = root
    for step in _build_stage().instructions:
        if step.keyword == "WORKDIR":
            workdir = root / step.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "ENV":
            env.update(_env_pairs(step.args, env))
        elif step.keyword == "COPY":
            _replay_copy(step.args, workdir, context)
        elif step.keyword == "RUN":
            _replay_run(step.args.replace(VENV, f"{root}{VENV}"), workdir, env)
        else:
            pytest.fail(f"the replay does not know {step.keyword} yet: teach it")
    return root / VENV.lstrip("/")


_IMPORT_EVERY_MODULE = """
import importlib, pkgutil, dropzone
names = [m.name for m in pkgutil.walk_packages(dropzone.__path__, "dropzone.")]
names = [name for name in names if not name.endswith(".__main__")]  # that one runs the CLI
for name in names:
    importlib.import_module(name)
print(dropzone.__file__, len(names))
"""


@pytest.mark.slow
def test_build_stage_yields_a_working_dropzone(tmp_path: Path) -> None:
    """The build stage's own steps, run outside Docker, produce a venv whose ``dropzone`` runs
    with nothing from the developer's environment, every module importable from the installed
    dependencies alone, the HEALTHCHECK's interpreter present, and no pip left in it."""
    venv = replay_build_stage(tmp_path)
    bare_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    entrypoint = _exec_form(_runtime().last("ENTRYPOINT"))[0].replace(VENV, str(venv))
    version = subprocess.run(
        [entrypoint, "--version"], env=bare_env, capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"dropzone {__version__}"
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", _IMPORT_EVERY_MODULE],
        env=bare_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(venv))
    _, health = _healthcheck()
    assert Path(health[0].replace(VENV, str(venv))).is_file()
    assert not (venv / "bin" / "pip").exists()
    assert not list(venv.glob("lib/python*/site-packages/pip"))


# --- the systemd unit ------------------------------------------------------------------------


def read_unit(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """{section: {key: every value assigned, in order}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), "keep unit lines whole"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{key} outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _service() -> dict[str, list[str]]:
    return read_unit()["Service"]


def _default_port() -> int:
    address = DaemonSettings().listen_address
    assert address is not None
    return address[1]


_HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "UMask": "0077",
    "DevicePolicy": "closed",
    "KeyringMode": "private",
    "RemoveIPC": "yes",
}


def test_unit_sandboxes_the_daemon() -> None:
    """Every hardening setting is in force (the last assignment of each wins), and the system
    call filter is the service set less privileged and resource-tuning calls."""
    service = _service()
    in_force = {key: service.get(key, ["<unset>"])[-1] for key in _HARDENING}
    assert in_force == _HARDENING
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert "IPAddressDeny" not in service, "the daemon must reach TOS and Ark"


def test_unit_matches_the_daemons_contract() -> None:
    """Type=notify with a watchdog, restarts except on exit 2 (a configuration error), a stop
    timeout above the drain deadline, SIGHUP reload, and the paths the code uses by default."""
    service = _service()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][-1].removesuffix("s")) > 0
    assert service["Restart"] == ["on-failure"]
    assert str(EXIT_CONFIG) in service["RestartPreventExitStatus"][-1].split()
    stop_s = int(service["TimeoutStopSec"][-1].removesuffix("s"))
    assert stop_s > DaemonSettings().drain_timeout_s
    assert service["ExecReload"] == ["/bin/sh -c 'kill -HUP ${MAINPID}'"]
    assert shlex.split(service["ExecStart"][-1])[:2] == [f"{VENV}/bin/dropzone", "run"]
    assert f"DROPZONE_CONFIG={DEFAULT_CONFIG_PATH}" in service["Environment"]
    assert DEFAULT_CONFIG_PATH.parent == Path("/etc") / service["ConfigurationDirectory"][-1]
    assert LedgerSettings().path.parent == Path("/var/lib") / service["StateDirectory"][-1]


def test_unit_hands_over_the_credentials_dropzone_looks_for() -> None:
    """LoadCredential= names match the files dropzone reads from $CREDENTIALS_DIRECTORY, and
    both halves of the key pair are there."""
    ids = [value.partition(":")[0] for value in _service()["LoadCredential"]]
    assert set(ids) <= set(CREDENTIAL_FILE_NAMES)
    assert {"access_key", "secret_key"} <= set(ids)


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed")
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say. It insists that ExecStart's program
    exists, and /opt/dropzone is not installed here, so a copy runs this checkout's own
    ``dropzone`` script instead; every other line is verified as written."""
    script = Path(sysconfig.get_path("scripts")) / "dropzone"
    assert script.is_file(), "the project is not installed in this environment"
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={VENV}/bin/dropzone " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={VENV}/bin/dropzone", f"ExecStart={script}"))
    done = subprocess.run(
        [_systemd_analyze(), "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def _measured_exposure() -> float:
    analyze = _systemd_analyze()
    usage = subprocess.run(
        [analyze, "security", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if "--offline" not in usage.stdout:
        pytest.skip("this systemd-analyze cannot rate a unit file offline (needs systemd 250+)")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = _OVERALL_EXPOSURE.search(done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def test_unit_exposure_is_low_and_documented() -> None:
    """``systemd-analyze security`` rates the unit at most 2.0, and the figure quoted in the
    unit's header and in docs/deploy.md is the one measured."""
    exposure = _measured_exposure()
    assert exposure <= MAX_EXPOSURE
    assert f"rates this unit {exposure}" in UNIT.read_text(encoding="utf-8")
    assert f"**{exposure}**" in DEPLOY_DOC.read_text(encoding="utf-8")


def test_unit_image_and_docs_agree_on_the_install_path() -> None:
    """One venv path everywhere: the unit's ExecStart, the image's ENTRYPOINT and the guide."""
    program = shlex.split(_service()["ExecStart"][-1])[0]
    assert program == _exec_form(_runtime().last("ENTRYPOINT"))[0]
    guide = DEPLOY_DOC.read_text(encoding="utf-8")
    assert f"python3.11 -m venv {VENV}" in guide
    assert "/usr/local/bin/dropzone" not in guide
