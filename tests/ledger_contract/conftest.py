"""The stores the contract runs against, each as a way to open handles on one ledger."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from dropzone.ledger import SqliteLedger
from dropzone.ledger.postgres import PostgresLedger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

    from dropzone.ledger import Ledger
    from tests.postgres_server import PostgresServer


class Store(Protocol):
    """One ledger in one store, to open handles on."""

    def open(self) -> Ledger:
        """The daemon's handle (exclusive, where the store has a lock)."""
        ...

    def beside(self) -> Ledger:
        """One more handle on the same ledger, as another process or connection has."""
        ...

    def empty(self) -> AbstractContextManager[Ledger]:
        """A ledger of its own, new and empty (a property test's example)."""
        ...


class SqliteStore:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "state" / "ledger.sqlite3"

    def open(self) -> Ledger:
        return SqliteLedger.open(self.path)

    def beside(self) -> Ledger:
        return SqliteLedger.open(self.path, lock=False)

    @contextmanager
    def empty(self) -> Iterator[Ledger]:
        with tempfile.TemporaryDirectory() as folder, SqliteLedger.open(Path(folder) / "l") as new:
            yield new


class PostgresStore:
    """A database of its own on the session's server, per test (and per ``empty``)."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.url = server.new_database()

    def open(self) -> Ledger:
        return PostgresLedger.open(self.url, lock=True)

    def beside(self) -> Ledger:
        return PostgresLedger.open(self.url)

    @contextmanager
    def empty(self) -> Iterator[Ledger]:
        with PostgresLedger.open(self.server.new_database()) as new:
            yield new


def _sqlite(request: pytest.FixtureRequest) -> Store:
    folder: Path = request.getfixturevalue("tmp_path")
    return SqliteStore(folder)


def _postgres(request: pytest.FixtureRequest) -> Store:
    server: PostgresServer = request.getfixturevalue("postgres")
    return PostgresStore(server)


# The stores under test, each made for one test from the fixtures it needs.
STORES: dict[str, Callable[[pytest.FixtureRequest], Store]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


@pytest.fixture
def ledger(store: Store) -> Iterator[Ledger]:
    opened = store.open()
    yield opened
    opened.close()
