"""Listing pages asked for before they are needed, each taken once by the listing it starts.

``run --once`` asks for each bucket watch's first page as soon as it has its ledger and an S3
client, then loads the rest of the daemon (its modules, the Ark client: about 0.1 s of CPU)
while the store answers; the listing then starts with an answer in hand instead of waiting for
it (issue 17: spawn to the first Create). A page asked for is only ever the first of a listing
about to run, never a snapshot kept for later polls.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_s3 import S3Client

_Asked = tuple[tuple[str, Any], ...]


def _asked(arguments: Mapping[str, Any]) -> _Asked:
    return tuple(sorted(arguments.items()))


class ListedAhead:
    """ListObjectsV2 calls made ahead in threads of their own; safe to share between threads."""

    def __init__(self, s3: S3Client) -> None:
        self.s3 = s3
        self._asked: dict[_Asked, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def ask(self, arguments: Mapping[str, Any]) -> None:
        """Start the call with these arguments (those a listing's first request would pass);
        once, however many watches list alike (the first to list takes it, the others call)."""
        answer: Future[dict[str, Any]] = Future()
        with self._lock:
            if _asked(arguments) in self._asked:
                return
            self._asked[_asked(arguments)] = answer
        threading.Thread(
            # Not a daemon thread: one no listing took (the run failed first) is waited for at
            # exit, within the S3 client's time-outs, rather than left inside botocore while
            # the interpreter finalizes (a daemon thread there can crash the process).
            target=self._call,
            args=(answer, dict(arguments)),
            name="list-ahead",
        ).start()

    def take(self, arguments: Mapping[str, Any]) -> Future[dict[str, Any]] | None:
        """The call asked with exactly these arguments, once: its answer, or what it raised,
        through ``result()``; None when none was asked (the caller makes the call itself)."""
        with self._lock:
            return self._asked.pop(_asked(arguments), None)

    def _call(self, answer: Future[dict[str, Any]], arguments: dict[str, Any]) -> None:
        try:
            answer.set_result(dict(self.s3.list_objects_v2(**arguments)))
        except BaseException as exc:  # noqa: BLE001 - handed to the listing that takes it
            answer.set_exception(exc)
