"""The bare concurrent loop that ``job_cost.py`` measures dropzone against, as a process.

    python bench/bare_loop.py S3_ENDPOINT ARK_URL BUCKET PREFIX CONCURRENCY

What a hand-written script that does the job and nothing more would do: a boto3 client (with
the ISO 8601 timestamp parser dropzone's own client uses, so that both sides parse a listing
alike) paginates the prefix; then ``CONCURRENCY`` threads share one ``httpx.Client``, each
building a Create body for the next key, signing it with ``dropzone.ark.signer`` and POSTing
it. No ledger, no retries, no log. It imports only what it uses: its start-up is part of what
it costs.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import botocore.session
import httpx
from botocore.parsers import ResponseParserFactory

from dropzone.ark import signer

# The benchmark's loopback servers' fixed keys (bench/common.py), never a real account's.
ACCESS_KEY = "AKLTbenchmark"
SECRET_KEY = "benchmark-secret-0123456789"
MODEL = {"Name": "doubao-pro-32k", "ModelVersion": "240615"}
QUERY = (("Action", "CreateBatchInferenceJob"), ("Version", "2024-01-01"))


def listed_keys(s3_endpoint: str, bucket: str, prefix: str) -> list[str]:
    core = botocore.session.get_session()
    parsers = ResponseParserFactory()
    parsers.set_parser_defaults(timestamp_parser=datetime.fromisoformat)
    core.register_component("response_parser_factory", parsers)
    s3 = boto3.session.Session(botocore_session=core).client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    return [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith(".jsonl")
    ]


def create_body(bucket: str, key: str) -> bytes:
    stem = key.rsplit("/", 1)[-1].removesuffix(".jsonl")
    document = {
        "Name": f"bare-{stem}",
        "ModelReference": {"FoundationModel": MODEL},
        "InputFileTosLocation": {"BucketName": bucket, "ObjectKey": key},
        "OutputDirTosLocation": {"BucketName": bucket, "ObjectKey": f"output/{stem}/"},
        "ProjectName": "default",
        "CompletionWindow": "1d",
        "Tags": [{"Key": "dropzone-input", "Value": f"bare-{stem}"}],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def main(s3_endpoint: str, ark_url: str, bucket: str, prefix: str, concurrency: int) -> int:
    keys = listed_keys(s3_endpoint, bucket, prefix)
    credentials = signer.Credentials(ACCESS_KEY, SECRET_KEY)
    host = urlsplit(ark_url).netloc
    numbers = itertools.count()
    failures: list[str] = []
    with httpx.Client(timeout=30) as http:

        def work() -> None:
            while (number := next(numbers)) < len(keys):
                body = create_body(bucket, keys[number])
                headers = signer.request_headers(
                    credentials,
                    host=host,
                    query=QUERY,
                    body=body,
                    now=datetime.now(UTC),
                    region="cn-beijing",
                    service="ark",
                )
                response = http.post(f"{ark_url}/", params=QUERY, headers=headers, content=body)
                result = response.json().get("Result") or {}
                if response.status_code != 200 or not result.get("Id"):
                    failures.append(response.text[:200])

        threads = [threading.Thread(target=work) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        print(f"{len(failures)} Creates failed, e.g. {failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    endpoint, url, bucket_name, key_prefix, threads_wanted = sys.argv[1:6]
    sys.exit(main(endpoint, url, bucket_name, key_prefix, int(threads_wanted)))
