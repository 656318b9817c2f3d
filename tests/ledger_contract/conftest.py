"""The stores the contract runs against, each as a way to open handles on one ledger."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from dropzone.ledger import SqliteLedger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

    from dropzone.ledger import Ledger


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


# A store under test: how to make one in a test's own folder.
STORES: dict[str, Callable[[Path], Store]] = {"sqlite": SqliteStore}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    make: Callable[[Path], Store] = STORES[request.param]
    return make(tmp_path)


@pytest.fixture
def ledger(store: Store) -> Iterator[Ledger]:
    opened = store.open()
    yield opened
    opened.close()
