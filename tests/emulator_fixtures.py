"""Helpers for talking to the Ark emulator over real loopback HTTP: a client and a caller.

The clock a test moves is :class:`dropzone.testing.FakeClock`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dropzone.ark import signer
from dropzone.ark.client import ArkClient
from dropzone.ark.models import API_VERSION

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from dropzone.testing import FakeClock

ACCESS_KEY = "AKLTemulatortest"
SECRET_KEY = "emulator-test-secret"
CREDENTIALS = signer.Credentials(ACCESS_KEY, SECRET_KEY)
REGION = "cn-beijing"


def client_of(
    url: str,
    access_key: str,
    secret_key: str,
    clock: Callable[[], datetime] | None = None,
    **options: Any,
) -> ArkClient:
    """dropzone's own client of a loopback server, signing with these keys, on ``clock`` when
    given; ``options`` are ArkClient's (time-outs, an observer). No rate cap to speak of."""
    if clock is not None:
        options["clock"] = clock
    return ArkClient(
        endpoint=url,
        region=REGION,
        credentials=signer.Credentials(access_key, secret_key),
        max_requests_per_second=1000,
        **options,
    )


def create_body(key: str = "in/a.jsonl", **changes: Any) -> dict[str, Any]:
    """A valid CreateBatchInferenceJob body; ``changes`` replace (or, with None, drop) fields."""
    body: dict[str, Any] = {
        "Name": "dropzone-job_1",
        "ModelReference": {"FoundationModel": {"Name": "doubao-pro-32k", "ModelVersion": "240615"}},
        "InputFileTosLocation": {"BucketName": "bucket", "ObjectKey": key},
        "OutputDirTosLocation": {"BucketName": "bucket", "ObjectKey": "out/"},
        "Tags": [{"Key": "dropzone-input", "Value": key}],
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


@dataclass
class Caller:
    """Signs and sends API calls to one emulator, with the clock the test controls."""

    client: httpx.Client
    url: str
    clock: FakeClock | None = None
    credentials: signer.Credentials = CREDENTIALS
    extra_headers: dict[str, str] = field(default_factory=dict)

    def send(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        credentials: signer.Credentials | None = None,
        now: datetime | None = None,
        version: str = API_VERSION,
    ) -> httpx.Response:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        query = (("Action", action), ("Version", version))
        moment = now or (self.clock() if self.clock else datetime.now(UTC))
        headers = signer.request_headers(
            credentials or self.credentials,
            host=urlsplit(self.url).netloc,
            query=query,
            body=body,
            now=moment,
            region=REGION,
            service="ark",
        )
        headers.update(self.extra_headers)
        return self.client.post(self.url + "/", params=query, headers=headers, content=body)

    def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The Result of a call that must succeed."""
        response = self.send(action, payload)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["Result"]
        return result

    def create(self, key: str = "in/a.jsonl", **changes: Any) -> str:
        job_id: str = self.result("CreateBatchInferenceJob", create_body(key, **changes))["Id"]
        return job_id

    def get(self, job_id: str) -> dict[str, Any]:
        return self.result("GetBatchInferenceJob", {"Id": job_id})

    def phase(self, job_id: str) -> str:
        phase: str = self.get(job_id)["Status"]["Phase"]
        return phase


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """(status, Code, Message) of an error answer."""
    error = response.json()["ResponseMetadata"]["Error"]
    return response.status_code, error["Code"], error["Message"]
