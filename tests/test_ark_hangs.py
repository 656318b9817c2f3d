"""Ark accepting connections and never answering must not stall the bucket.

Seen: /healthz went 503 on 17% of probes and new TOS files were detected late, because the
poll loop waited on Ark work (the reconciliation of a stranded entry, tracking). Listing,
submitting, reconciling and tracking now run apart.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from dropzone.ledger import State
from tests.harness import free_port, load_scale, seed_entry, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.harness import Stage

# Long against the test's own deadlines: an Ark call waited for in the poll loop shows.
ARK_TIMEOUT_S = 60


@contextmanager
def silent_ark() -> Iterator[str]:
    """A loopback server that accepts every connection and never answers; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def test_a_silent_ark_neither_fails_healthz_nor_delays_new_files(stage: Stage) -> None:
    """A stranded entry to reconcile and a submitted one to track, Ark silent: the first poll,
    READY and every /healthz probe come on time, and a new file is in the ledger within a
    few polls, long before any Ark call could have timed out."""
    stage.put("stranded.jsonl")
    seed_entry(stage, stage.prefix + "stranded.jsonl", State.SUBMITTING)
    port = free_port()
    stage.daemon.update({"listen": f"127.0.0.1:{port}", "track_interval_s": 0.2})
    with silent_ark() as url:
        daemon = stage.spawn(
            "run",
            env={"DROPZONE_ARK__ENDPOINT": url, "DROPZONE_ARK__TIMEOUT_S": str(ARK_TIMEOUT_S)},
        )
        try:
            health = f"http://127.0.0.1:{port}/healthz"

            def polled() -> bool:
                try:
                    body = httpx.get(health, timeout=5).json()
                except httpx.HTTPError:
                    return False
                return body["watches"]["chat"]["last_poll"] is not None

            wait_for(polled, timeout=15, what="the first poll while Ark is silent")
            key = stage.put("new.jsonl")
            started = time.monotonic()
            statuses = []

            def detected() -> bool:
                statuses.append(httpx.get(health, timeout=5).status_code)
                return any(entry["key"] == key for entry in stage.status())

            wait_for(detected, timeout=15, what="the new file in the ledger while Ark is silent")
            assert time.monotonic() - started < ARK_TIMEOUT_S / 2 * load_scale()
            statuses += [httpx.get(health, timeout=5).status_code for _ in range(10)]
        finally:
            daemon.terminate()
            daemon.communicate(timeout=120 * load_scale())
    assert set(statuses) == {200}
