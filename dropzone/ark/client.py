"""Ark batch-inference management client: signed calls over httpx, answers mapped to results.

The client never retries: what to do after a failure (back off, reconcile, give up) is the
caller's policy, persisted in the ledger. It only translates answers into values and the error
tree of ``errors.py``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from dropzone.ark import errors, signer
from dropzone.ark.answers import (
    PROTOCOL_ERROR,
    error_for,
    parse_answer,
    protocol_error,
    translate_transport_error,
)
from dropzone.ark.models import (
    API_VERSION,
    CreateJobRequest,
    Job,
    JobPage,
    ListFilter,
    ListJobsRequest,
    TagFilter,
    find_job_id,
)
from dropzone.ark.ratelimit import RateLimiter

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Collection, Iterator, Mapping


SERVICE = "ark"
_TRUST_SETTINGS = ("SSL_CERT_FILE", "SSL_CERT_DIR")  # httpx's, in the order it reads them
USER_AGENT = "dropzone/0.1"
AnswerT = TypeVar("AnswerT", bound=BaseModel)


class CallObserver(Protocol):
    """Told about every API call: action, outcome label (HTTP status or ``transport_error``),
    seconds taken, and for a failure a one-line ``detail`` (never a credential)."""

    def __call__(self, action: str, outcome: str, seconds: float, detail: str = "") -> None: ...


# One encoder for every body: json.dumps with options builds a new one each call.
_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SignedCall:
    """A request as signed: sent as these bytes, never signed again."""

    action: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str] = field(repr=False)  # the Authorization header is a credential
    body: bytes = field(repr=False)
    signed_at: datetime


@dataclass(frozen=True)
class SignedCreate:
    request: CreateJobRequest
    call: SignedCall = field(repr=False)

    @property
    def signed_at(self) -> datetime:
        return self.call.signed_at


def _named_certificates() -> tuple[str, str] | None:
    """The setting httpx reads the CA certificates from (a file before a folder), and its
    value; None: certifi's bundle."""
    for name in _TRUST_SETTINGS:
        value = os.environ.get(name)
        if value:
            return name, value
    return None


def _trust_store_error(named: tuple[str, str] | None, exc: OSError) -> errors.TrustStoreError:
    source = f"{named[0]}={named[1]}" if named else "certifi's bundle"
    return errors.TrustStoreError(
        f"the CA certificates could not be loaded from {source}: {exc}",
        code="CACertificatesUnusable",
        hint="point SSL_CERT_FILE at a PEM bundle this user can read (or SSL_CERT_DIR at a "
        "folder of certificates made ready with openssl rehash), or unset both to use certifi's",
    )


class ArkClient:
    """Create, get, list and stop batch inference jobs."""

    def __init__(  # noqa: PLR0913 - every parameter is an independent, injected dependency
        self,
        *,
        endpoint: str,
        region: str,
        credentials: signer.Credentials,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_requests_per_second: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utc_now,
        observer: CallObserver | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"Ark endpoint must be scheme://host[:port], got {endpoint!r}")
        self._base = f"{parts.scheme}://{parts.netloc}/"
        self._host = parts.netloc
        self._region = region
        self._credentials = credentials
        self._clock = clock
        self._observer = observer
        self.limiter = RateLimiter(max_requests_per_second)
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._transport = transport
        # One TLS context for every connection: each client would load the CA bundle again.
        # Made with the first client, not here: loading the bundle is 20-30 ms of CPU, which
        # a daemon spends while its first listing is in flight (warm_up).
        self._verify: ssl.SSLContext | None = None
        self._verify_lock = threading.Lock()
        # A call takes a client no other call is using, made when none is free: a client
        # whose pool all the workers shared was a lock they queued on, and every request
        # scanned all its connections for an idle one. So each connection has its client.
        # Last in, first out: under light traffic the same warm connection serves call after
        # call, where taking the least recent one would find it past httpx's keep-alive.
        self._spare: deque[httpx.Client] = deque()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self._closed = False
        self._headers: dict[str, str] = {}  # httpx's defaults with ours, from the first client
        self._urls: dict[tuple[tuple[str, str], ...], httpx.URL] = {}

    def __repr__(self) -> str:
        return f"ArkClient(endpoint={self._base!r}, region={self._region!r})"

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
            self._closed = True
        for client in clients:
            client.close()

    def warm_up(self) -> None:
        """Make the TLS context and a first client now, unless a call has: a daemon does this
        beside its first listing, whose wait would otherwise come before them."""
        with self._clients_lock:
            if self._clients or self._closed:
                return
        # Not made under the lock: a call that starts meanwhile makes a client of its own,
        # and both serve later calls (the workers use several), where waiting would not.
        self._spare.append(self._new_client())

    def _tls(self) -> ssl.SSLContext:
        with self._verify_lock:  # callers at once wait for the one context
            if self._verify is None:
                named = _named_certificates()
                try:
                    # OpenSSL takes a folder that is not there without a word, and then fails
                    # each handshake: as unreachable, which Ark is not.
                    if named and named[0] == "SSL_CERT_DIR" and not Path(named[1]).is_dir():
                        raise FileNotFoundError(f"{named[1]} is not a folder")
                    self._verify = httpx.create_ssl_context()
                except OSError as exc:  # ssl.SSLError is one: a file that is not certificates
                    raise _trust_store_error(named, exc) from exc
            return self._verify

    def _new_client(self) -> httpx.Client:
        client = httpx.Client(
            transport=self._transport,
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT},
            verify=self._tls(),
        )
        with self._clients_lock:
            if self._closed:
                client.close()
                # As httpx says of a request sent through a closed client.
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            self._clients.append(client)
            if not self._headers:
                self._headers = dict(client.headers)
        return client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def create(self, request: CreateJobRequest) -> str:
        """Create a job and return its ID; raises Duplicate when the guard names an active job."""
        return self.send_create(self.sign_create(request))

    def sign_create(self, request: CreateJobRequest) -> SignedCreate:
        """A Create signed now (after the rate limit's wait), to be sent by :meth:`send_create`
        as it is: one attempt is one signature, so its bytes are valid only until
        ``signed_at`` plus the platform's signature lifetime, however late they go out."""
        call = self._sign_body("CreateBatchInferenceJob", request.wire_json())
        return SignedCreate(request, call)

    def send_create(self, signed: SignedCreate) -> str:
        """Send a signed Create; the job's ID, or Duplicate when the guard names an active job."""
        request = signed.request
        try:
            result = self._deliver(signed.call)[0]
        except errors.ArkError as exc:
            # Any answer may be the guard's, whatever its status and code (a 429 or an
            # auth-looking code included): retrying it would make the second job the guard
            # exists to prevent once the first has ended. No answer at all names nothing.
            if exc.status is None:
                raise
            named = find_job_id(exc.message)
            if named is None:
                raise
            raise self._confirm_guard(named, request, exc) from exc
        job_id = result.get("Id")
        if not isinstance(job_id, str) or not job_id:
            raise errors.Transient(
                "Create answered without a job Id", may_have_reached=True, status=200
            )
        return job_id

    def get(self, job_id: str) -> Job:
        return self._read("GetBatchInferenceJob", {"Id": job_id}, Job)

    def list_jobs(self, request: ListJobsRequest) -> JobPage:
        return self._read("ListBatchInferenceJobs", request.wire(), JobPage)

    def stop(self, job_id: str) -> None:
        self.call("StopBatchInferenceJob", {"Id": job_id})

    def iter_jobs(self, request: ListJobsRequest) -> Iterator[Job]:
        """Every job matching ``request``, page after page."""
        page_number = request.page_number
        while True:
            page = self.list_jobs(request.model_copy(update={"page_number": page_number}))
            yield from page.items
            # Without TotalCount, a short (or empty) page is the last.
            size = page.page_size or request.page_size
            total = page.total_count
            if not page.items or (total is None and len(page.items) < size):
                return
            if total is not None and page_number * size >= total:
                return
            page_number += 1

    def find_by_tag(self, key: str, value: str, project_name: str | None) -> list[Job]:
        """Jobs carrying tag ``key=value``, newest first."""
        request = ListJobsRequest(
            project_name=project_name,
            tag_filters=(TagFilter(key=key, values=(value,)),),
        )
        return [job for job in self.iter_jobs(request) if job.tag(key) == value]

    def find_by_tags(
        self, key: str, values: Collection[str], project_name: str | None
    ) -> dict[str, list[Job]]:
        """Jobs carrying tag ``key`` with any of ``values``, in one List (paged), by value."""
        wanted = tuple(dict.fromkeys(values))
        request = ListJobsRequest(
            project_name=project_name, tag_filters=(TagFilter(key=key, values=wanted),)
        )
        found: dict[str, list[Job]] = {value: [] for value in wanted}
        for job in self.iter_jobs(request):
            value = job.tag(key)
            if value in found:
                found[value].append(job)
        return found

    def newest_by_tag(
        self, key: str, value: str, project_name: str | None, count: int = 100
    ) -> list[Job]:
        """The newest jobs (at most ``count``, one List) carrying tag ``key=value``."""
        request = ListJobsRequest(
            project_name=project_name,
            page_size=max(1, min(100, count)),
            tag_filters=(TagFilter(key=key, values=(value,)),),
        )
        return [job for job in self.list_jobs(request).items if job.tag(key) == value]

    def get_many(self, job_ids: tuple[str, ...], project_name: str | None) -> list[Job]:
        """Jobs by ID in one List call (at most 100 IDs)."""
        request = ListJobsRequest(
            project_name=project_name,
            page_size=max(1, min(100, len(job_ids))),
            filter=ListFilter(ids=job_ids),
        )
        return list(self.iter_jobs(request))

    def call(self, action: str, payload: Mapping[str, object]) -> dict[str, Any]:
        """One signed call; returns the Result object or raises from the error tree."""
        return self._exchange(action, payload)[0]

    def _read(self, action: str, payload: Mapping[str, object], shape: type[AnswerT]) -> AnswerT:
        """One call whose Result is read as ``shape``; the one place a ValidationError is
        mapped into the error tree."""
        result, body = self._exchange(action, payload)
        try:
            return shape.model_validate(result)
        except ValidationError as exc:
            raise protocol_error(action, exc, body, self._secrets()) from exc

    def _secrets(self) -> tuple[str, ...]:
        held = self._credentials
        return tuple(filter(None, (held.access_key, held.secret_key, held.session_token)))

    def _exchange(self, action: str, payload: Mapping[str, object]) -> tuple[dict[str, Any], bytes]:
        """One signed call: the Result object and the answer's body, or an error raised."""
        return self._deliver(self._sign(action, payload))

    def _sign(self, action: str, payload: Mapping[str, object]) -> SignedCall:
        return self._sign_body(action, _compact_json(payload).encode("utf-8"))

    def _sign_body(self, action: str, body: bytes) -> SignedCall:
        query = (("Action", action), ("Version", API_VERSION))
        self.limiter.acquire()
        now = self._clock()
        headers = signer.request_headers(
            self._credentials,
            host=self._host,
            query=query,
            body=body,
            now=now,
            region=self._region,
            service=SERVICE,
        )
        # X-Date has whole seconds: the signature's lifetime runs from the second it names.
        return SignedCall(action, query, headers, body, now.replace(microsecond=0))

    def _deliver(self, call: SignedCall) -> tuple[dict[str, Any], bytes]:
        started = time.monotonic()
        outcome, detail = "error", ""
        try:
            response = self._send(call.query, call.headers, call.body)
            answer = parse_answer(response.status_code, response.content, self._secrets())
            outcome = str(response.status_code)
            if answer.result is None:
                detail = f"{answer.code or 'HTTP'} {response.status_code}: {answer.message}"
        except errors.Transient as exc:
            outcome, detail = "transport_error", exc.describe()
            raise
        finally:
            if self._observer is not None:
                self._observer(call.action, outcome, time.monotonic() - started, detail)
        if answer.result is None:
            raise error_for(answer, response.headers.get("Date"), self._clock())
        return answer.result, response.content

    def _send(
        self, query: tuple[tuple[str, str], ...], headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        # Built here and handed to ``send``: ``post`` merged the client's URL, parameters,
        # headers and cookies into each request anew, a third of a Create's CPU beyond the
        # socket work (bench/job_cost.py).
        try:
            client = self._spare.pop()
        except IndexError:
            client = self._new_client()
        try:
            request = httpx.Request(
                "POST", self._url_for(query), headers={**self._headers, **headers}, content=body
            )
            return client.send(request)
        except httpx.TransportError as exc:
            raise translate_transport_error(exc) from exc
        except httpx.DecodingError as exc:
            # An answer came (gzip or deflate that does not decode): it may have been acted on.
            raise errors.Transient(
                f"the answer could not be decoded: {exc}",
                may_have_reached=True,
                code=PROTOCOL_ERROR,
            ) from exc
        finally:
            self._spare.append(client)

    def _url_for(self, query: tuple[tuple[str, str], ...]) -> httpx.URL:
        url = self._urls.get(query)
        if url is None:
            url = self._urls[query] = httpx.URL(self._base, params=query)
        return url

    def _confirm_guard(
        self, named: str, request: CreateJobRequest, original: errors.ArkError
    ) -> errors.ArkError:
        """Check the job the error names really holds this input before calling it a duplicate."""
        try:
            job = self.get(named)
        except errors.Rejected:
            return original
        location = job.input_file_tos_location
        same_input = location is not None and (
            location.bucket_name == request.input_file_tos_location.bucket_name
            and location.object_key == request.input_file_tos_location.object_key
        )
        if not same_input:
            return original
        if job.phase.is_active:
            return errors.Duplicate(
                named, original.message, job=job, code=original.code, status=original.status
            )
        # The guard named a job that has finished since: nothing was created, try again.
        return errors.Transient(
            f"the guard named {named}, which is now {job.phase}; submitting again is safe",
            may_have_reached=False,
            code=original.code,
            status=original.status,
        )
