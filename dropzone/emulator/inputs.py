"""Where the Ark emulator reads a job's input file, to count its requests as the platform does.

The platform reads the ``.jsonl`` it is given: a job's ``RequestCounts.Total`` is the file's
request lines, and a file that is not there fails the job. The emulator has no store of its
own, so it is given a reader: a folder laid out as ``<root>/<bucket>/<key>``, an S3 endpoint
(moto, MinIO, TOS), or any callable. Without one it cannot know and leaves ``RequestCounts`` out
of its job objects, as a platform that has not read the file yet does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

# (bucket, key) -> the object's bytes, or None when there is no such object.
InputReader = Callable[[str, str], bytes | None]


@dataclass(frozen=True)
class InputSeen:
    """What the emulator found at a Create's input: its request count, or that it is missing."""

    requests: int | None
    missing: bool = False


UNSEEN = InputSeen(None)


def count_requests(content: bytes) -> int:
    """Request lines in a ``.jsonl``: every line that is not blank."""
    return sum(1 for line in content.splitlines() if line.strip())


def seen_through(read: InputReader | None, bucket: str, key: str) -> InputSeen:
    if read is None:
        return UNSEEN
    content = read(bucket, key)
    if content is None:
        return InputSeen(None, missing=True)
    return InputSeen(count_requests(content))


def folder_reader(root: Path) -> InputReader:
    """Objects as files at ``root/bucket/key``; a key climbing out of ``root`` is no object."""
    base = root.resolve()

    def read(bucket: str, key: str) -> bytes | None:
        path = (base / bucket / key).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    return read


def local_s3_client(endpoint_url: str) -> S3Client:
    """A client of an S3 endpoint, with the AWS_* credentials of the environment (a local
    S3 such as moto takes any, so there is a stand-in pair when none are set)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "emulator"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "emulator"),
    )


def s3_reader(endpoint_url: str) -> InputReader:
    """Objects from an S3 endpoint (:func:`local_s3_client`)."""
    client = local_s3_client(endpoint_url)

    def read(bucket: str, key: str) -> bytes | None:
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None
        return body

    return read
