"""What a ledger store supplies: transactions that run statements and return rows.

:class:`~dropzone.ledger.store.LedgerStore` is written against these alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


class Row(Protocol):
    """A result row, read by column name (``sqlite3.Row``, psycopg's ``dict_row``)."""

    def __getitem__(self, column: str, /) -> Any: ...  # noqa: ANN401 - a column of any type


class Tx(Protocol):
    """One transaction (or one read) of a store: statements written with ``?`` placeholders.
    A driver error leaves it as a :class:`LedgerError` naming the store, and rolled back."""

    def rows(self, statement: str, values: Sequence[object] = ()) -> list[Row]: ...
    def tuples(self, statement: str, values: Sequence[object] = ()) -> list[Any]: ...
    def run(self, statement: str, values: Sequence[object] = ()) -> int: ...
    def run_many(self, statement: str, values: Iterable[Sequence[object]]) -> int: ...
