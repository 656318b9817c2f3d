"""A throwaway PostgreSQL server for the tests: its own cluster under a temporary folder.

Started once per session (``initdb`` and ``pg_ctl``, about a second), stopped at its end; each
test that asks gets a database of its own. As root, the server runs as the ``postgres`` user
(PostgreSQL refuses to run as root). Where no server can be had, the tests that need one skip
with how to get it, except in CI (``CI`` set), where they fail: CI installs PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.harness import load_scale

HOW_TO_GET_IT = (
    "PostgreSQL's server programs (initdb, pg_ctl) were not found: install the server package"
    " (Debian: apt-get install postgresql) to run the PostgreSQL tests"
)


class NoServer(Exception):
    """No PostgreSQL server can be started here; the message says what is missing."""


def _programs() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if found:
        return found[0].parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise NoServer(HOW_TO_GET_IT)
    return Path(on_path).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    def __init__(self) -> None:
        self._bin = _programs()
        self._root = Path(tempfile.mkdtemp(prefix="dropzone-pg-"))
        self.data = self._root / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        self._names = itertools.count(1)
        if self._as_root:
            shutil.chown(self._root, "postgres", "postgres")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=120 * load_scale()
        )
        if done.returncode != 0:
            raise NoServer(f"{program} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self._root}"
            # A test server: durability is the ledger's promise on a real one, not here.
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        # Roles made by role_with_password must give their password; every other is trusted.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all +password_roles 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n",
            encoding="utf-8",
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self._root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(60 * load_scale())),
            "start",
        )

    def restart(self) -> None:
        """Stop the server (its sessions cut, as in a failover) and start it again, with the
        options it was started with."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self._root / "log"),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(60 * load_scale())),
            "restart",
        )

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self, statement: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)

    def role_with_password(self, role: str, password: str) -> str:
        """A role that must log in with ``password`` and a database it owns; returns the
        database's url, with the role's name and no password."""
        self.admin(
            "DO $$ BEGIN CREATE ROLE password_roles NOLOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        self.admin(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}' IN ROLE password_roles")
        self.admin(f'CREATE DATABASE "{role}" OWNER "{role}"')
        return f"postgresql://{role}@127.0.0.1:{self.port}/{role}"

    def new_database(self) -> str:
        """A new, empty database; returns its url."""
        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
