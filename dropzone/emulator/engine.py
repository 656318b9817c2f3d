"""The emulator's state under one lock: keys, faults, the book and the dice.

A received request goes in and a reply comes out; the HTTP server around it only moves bytes.
"""

from __future__ import annotations

import random
import string
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dropzone.ark.models import API_VERSION
from dropzone.emulator.auth import MAX_SKEW_S, Received, authenticate
from dropzone.emulator.faults import LOST_503, FaultCounts, Faults, as_faults_show, fault_for
from dropzone.emulator.inputs import (
    UNSEEN,
    InputReader,
    InputSeen,
    seen_through,
)
from dropzone.emulator.jobs import Created, JobBook, dispatch
from dropzone.emulator.requests import named_input
from dropzone.emulator.results import OutputWriter, results_body, results_key
from dropzone.emulator.wire import (
    CREATE,
    GET,
    LIST,
    SERVICE,
    STOP,
    ApiError,
    Json,
    Reply,
    envelope,
    error_envelope,
    json_body,
    unknown_action,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Hooks:
    """Where the engine reaches outside itself: a moment as each Create arrives, a store to
    read Create inputs from, and one to write completed jobs' results to."""

    on_create_received: Callable[[], None] | None = None
    read_input: InputReader | None = None
    write_output: OutputWriter | None = None


class Engine:
    """Everything the HTTP handlers share: keys, faults, the book and the dice, under one lock."""

    def __init__(  # noqa: PLR0913 - every parameter is an independent part
        self,
        keys: Mapping[str, str],
        book_of: Callable[[Callable[[], str]], JobBook],
        faults: Faults,
        seed: int | None,
        clock: Callable[[], datetime],
        region: str,
        hooks: Hooks,
        *,
        signature_validity_s: float = MAX_SKEW_S,
    ) -> None:
        self._lock = threading.Lock()
        self._read_input = hooks.read_input
        self._write_output = hooks.write_output
        self._keys = dict(keys)
        self._faults = faults
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._clock = clock
        self._region = region
        self._signature_validity_s = signature_validity_s
        self._on_create_received = hooks.on_create_received
        self._requests = 0
        self._counts = FaultCounts()
        self._refusals: dict[str, ApiError] = {}
        self._calls: dict[str, int] = {}  # signed calls by action, answered or refused
        self.book = book_of(self._suffix)

    def now(self) -> datetime:
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the emulator's clock must return aware datetimes")
        return moment.astimezone(UTC)

    def add_key(self, access_key: str, secret_key: str) -> None:
        with self._lock:
            self._keys[access_key] = secret_key

    def refuse(self, actions: Iterable[str], error: ApiError | None) -> None:
        with self._lock:
            for action in actions:
                if error is None:
                    self._refusals.pop(action, None)
                else:
                    self._refusals[action] = error

    def update_faults(self, change: Callable[[Faults], Faults]) -> Faults:
        with self._lock:
            self._faults = change(self._faults)
            return self._faults

    def state(self) -> Json:
        now = self.now()
        with self._lock:
            return {
                **self.book.snapshot(now),
                **self._counts.snapshot(),
                "calls": dict(self._calls),
            }

    def api(self, request: Received) -> Reply:
        """Answer one API request (any method and path other than the inspection endpoint)."""
        is_create = request.query_value("Action") == CREATE
        if is_create and self._on_create_received is not None:
            self._on_create_received()
        with self._lock:
            latency_ms = self._faults.latency_ms
            slow_s = self._slow_create_s() if is_create else None
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if slow_s is None:
            return self._carry_out(request)
        time.sleep(slow_s)
        try:
            return self._carry_out(request)
        finally:
            with self._lock:
                self._counts.slowed_creates_under_way -= 1

    def _slow_create_s(self) -> float | None:
        """How long to hold this Create, if it is one to slow; counts it. Under the lock."""
        rate = self._faults.slow_create_rate
        # No draw while the fault is off, so seeded runs without it replay as before it existed.
        if rate <= 0 or self._random.random() >= rate:
            return None
        self._counts.slowed_creates += 1
        self._counts.slowed_creates_under_way += 1
        return self._faults.slow_create_s

    def _carry_out(self, request: Received) -> Reply:
        now = self.now()
        self._write_results(now)
        action, version = request.query_value("Action"), request.query_value("Version")
        meta = self._metadata(now, action, version)
        try:
            created = self._answer(request, action, version, now)
        except ApiError as error:
            return Reply(error.status, error_envelope(meta, error))
        if created.job_id is not None and self._lose_answer():
            return self._lost(meta)
        with self._lock:
            faults = self._faults
        return Reply(200, envelope(meta, as_faults_show(action, created.result, faults, now)))

    def _answer(self, request: Received, action: str, version: str, now: datetime) -> Created:
        if request.method != "POST" or request.path != "/" or version != API_VERSION:
            raise unknown_action(action, version)
        if action not in {CREATE, GET, LIST, STOP}:
            raise unknown_action(action, version)
        with self._lock:
            keys = dict(self._keys)
        owner = authenticate(request, keys, now, self._region, self._signature_validity_s)
        body = json_body(request.body)
        # Read outside the lock: a slow store must not hold up other calls.
        seen = self._input_seen(body) if action == CREATE else UNSEEN
        with self._lock:
            self._calls[action] = self._calls.get(action, 0) + 1
            if action == CREATE:
                self.book.count_create_call(body)
            refusal = self._refusals.get(action)
            if refusal is not None:
                raise refusal
            fault = fault_for(self._faults, self._random.random)
            if fault is not None:
                raise fault
            return dispatch(self.book, owner, action, body, now, seen)

    def _write_results(self, now: datetime) -> None:
        """The result file of each job completed since the last request, written before the
        request that may see it completed is answered (outside the lock: a store is slow)."""
        if self._write_output is None or self._read_input is None:
            return
        with self._lock:
            due = self.book.results_due(now)
        for job in due:
            spec = job.spec
            content = self._read_input(spec.input.bucket, spec.input.key) or b""
            foundation = spec.model_reference.get("FoundationModel")
            named = foundation.get("Name") if isinstance(foundation, dict) else None
            model = str(named or spec.model_reference.get("CustomModelId") or "")
            body = results_body(job.id, model, content)
            self._write_output(spec.output.bucket, results_key(spec.output.key, job.id), body)

    def _input_seen(self, body: Mapping[str, object]) -> InputSeen:
        named = named_input(body)
        if named is None:
            return UNSEEN
        bucket, key = named.split("/", 1)
        return seen_through(self._read_input, bucket, key)

    def _lose_answer(self) -> bool:
        with self._lock:
            lost = self._random.random() < self._faults.lose_answer_rate
            if lost:
                self._counts.lost_answers += 1
            return lost

    def _lost(self, meta: Json) -> Reply:
        with self._lock:
            as_503 = self._random.random() < 0.5
        if as_503:
            return Reply(LOST_503.status, error_envelope(meta, LOST_503))
        return Reply(0, None)

    def _metadata(self, now: datetime, action: str, version: str) -> Json:
        with self._lock:
            self._requests += 1
            number = self._requests
        return {
            # Shaped like the platform's: a timestamp, then 20 upper-case hex digits.
            "RequestId": f"{now:%Y%m%d%H%M%S}{number:020X}",
            "Action": action,
            "Version": version,
            "Service": SERVICE,
            "Region": self._region,
        }

    def _suffix(self) -> str:
        # Called by the book, so always under the lock already.
        return "".join(self._random.choice(_ID_ALPHABET) for _ in range(5))
