"""A daemon's notifications: its routes (replaced at a reload), the HTTP client its webhooks
share, and the notifier that delivers the ledger's outbox over them."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import httpx

from dropzone.log import get_logger
from dropzone.notify.notifier import Notifier
from dropzone.notify.routes import routes_for, wanted
from dropzone.runtime import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from dropzone.config import Settings
    from dropzone.jobs.results import ResultStore
    from dropzone.ledger import Ledger
    from dropzone.notify.notifier import NoticeObserver, Route


class NotifyService:
    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger,
        clock: Callable[[], datetime],
        observer: NoticeObserver | None = None,
        results: ResultStore | None = None,
    ) -> None:
        """Reads each webhook's secret now: a :class:`UsageError` if one cannot be used.
        ``results``: where a folder watch's results are fetched from (None: they are not)."""
        self._client: httpx.Client | None = None  # made for the first webhook
        self._clock = clock
        self._ledger = ledger
        self._results = results
        self._lock = threading.Lock()
        try:
            self._routes = routes_for(settings, self._http, clock, results)
        except BaseException:
            self.close()
            raise
        ledger.announce(wanted(settings))
        self._notifier = Notifier(ledger=ledger, routes=self.routes, clock=clock, observer=observer)

    def routes(self) -> dict[str, Route]:
        with self._lock:
            return self._routes

    def active(self) -> bool:
        """Whether any watch asks to be told of anything (else the role is not even taken)."""
        return any(route.events for route in self.routes().values())

    def replace(self, settings: Settings) -> None:
        """A reload: the new routes, or the old ones kept when a secret cannot be read."""
        try:
            fresh = routes_for(settings, self._http, self._clock, self._results)
        except UsageError as exc:
            get_logger().error(
                "config.reload_refused", error=str(exc), note="the previous notify settings stay"
            )
            return
        with self._lock:
            self._routes = fresh
        self._ledger.announce(wanted(settings))

    def deliver_due(self, stopping: Callable[[], bool]) -> int:
        return self._notifier.deliver_due(stopping=stopping)

    def _http(self) -> httpx.Client:
        """The client every webhook shares, made when the first one is: a client costs a
        TLS context (its CA certificates read), which a daemon without webhooks never needs."""
        with self._lock:
            if self._client is None:
                # No redirects: a notice goes where the config says, signed for that receiver.
                self._client = httpx.Client(follow_redirects=False)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
