"""Fixtures for every test: a clean environment, loopback servers, and the test data folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from moto.server import ThreadedMotoServer

from dropzone.emulator import Emulator
from tests.harness import ACCESS_KEY, SECRET_KEY, Stage, new_bucket, s3_client
from tests.kafka_broker import KafkaBroker, NoBroker
from tests.postgres_server import NoServer, PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"
_CLEARED_PREFIXES = (
    "VOLC",
    "AWS_",
    "DROPZONE_",
    "NOTIFY_SOCKET",
    "WATCHDOG_",
    "CREDENTIALS_DIRECTORY",
    "PG",  # libpq's own settings (PGHOST, PGPASSWORD, ...)
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's credentials, config or service-manager variables."""
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 server (moto) on loopback, shared by the session; tests use their own buckets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The Ark emulator on loopback; jobs stay active for the length of a test."""
    with Emulator(ACCESS_KEY, SECRET_KEY, queue_s=30, run_s=60, seed=1) as ark:
        yield ark


@pytest.fixture
def stage(tmp_path: Path, moto_endpoint: str, emulator: Emulator) -> Stage:
    """A bucket of its own on the shared moto server, the emulator, a config writer."""
    s3 = s3_client(moto_endpoint)
    return Stage(tmp_path, moto_endpoint, emulator, s3, new_bucket(s3))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session; tests make their own databases. Skipped
    where none can be started, except in CI, which installs one: there it fails."""
    try:
        server = PostgresServer()
        server.start()
    except NoServer as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """A throwaway Kafka-protocol broker for the session; tests make their own topics.
    Skipped where none can be started, except in CI (the dev extras bring it): there it fails."""
    try:
        broker = KafkaBroker()
        broker.start()
    except NoBroker as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Kafka tests: {exc}")
        pytest.skip(str(exc))
    yield broker
    broker.stop()
