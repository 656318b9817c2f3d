"""TOS through its S3 API (botocore): page-by-page listings, object heads, bodies and reports.

The source only reports what it sees; it knows nothing of the ledger or the Ark API. botocore
exceptions are translated here, chained, into two kinds the daemon acts on differently.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_plus

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserFactory

from dropzone.sources.base import (
    ListingPage,
    SourceConfigError,
    SourceError,
    StoredObject,
)
from dropzone.sources.s3_parsing import fast_timestamp, parse_pages_once

if TYPE_CHECKING:
    from collections.abc import Iterator

    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

    from dropzone.ark.signer import Credentials
    from dropzone.sources.ahead import ListedAhead

# Answers that no retry fixes: the operator must change the configuration or the bucket.
_PERMANENT_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "InvalidBucketName",
        "PermanentRedirect",
        # A HEAD answer has no body, so only its status: a refusal of the config's access.
        "403",
        "Forbidden",
    }
)


# Statuses that refuse a request rather than the object in it: access, time-outs, throttling.
_NOT_THE_OBJECTS = frozenset({403, 408, 429})


def refuses_the_object(exc: ClientError) -> bool:
    """A 4xx for this object's request that is neither the config's nor a passing one."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 400 <= status < 500 and status not in _NOT_THE_OBJECTS and code not in _PERMANENT_CODES


def make_s3_client(
    *,
    endpoint: str,
    region: str,
    addressing_style: str,
    credentials: Credentials | None,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 10.0,
) -> S3Client:
    """An S3 client for TOS: SigV4, the configured addressing style, bounded retries."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing_style},  # type: ignore[arg-type]
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=connect_timeout_s,
        read_timeout=timeout_s,
        # botocore >= 1.36 adds CRC checksums to every upload by default; S3-compatible stores
        # (TOS among them) do not all accept them, so send them only where S3 requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    keys: dict[str, Any] = {}
    if credentials is not None:
        keys = {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.session_token,
        }
    core = botocore.session.get_session()
    parsers = ResponseParserFactory()
    parsers.set_parser_defaults(timestamp_parser=fast_timestamp)
    core.register_component("response_parser_factory", parsers)
    # botocore's client, which is what boto3's is before boto3 adds its managed transfers
    # (upload_file and the like) to it: making boto3's loaded those (s3transfer,
    # multiprocessing) for every command, 12-35 ms of CPU here with the collector off, where
    # only a folder watch that uploads needs them, and takes them itself (local/objects.py).
    client = core.create_client(
        "s3", endpoint_url=endpoint, region_name=region, config=config, **keys
    )
    s3 = cast("S3Client", client)
    parse_pages_once(s3)
    return s3


def translate(exc: Exception, what: str) -> SourceError:
    """Map a botocore exception to the source's two kinds, naming what was being done."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        kind = SourceConfigError if code in _PERMANENT_CODES else SourceError
        return kind(f"{what}: {code}: {message}")
    return SourceError(f"{what}: {type(exc).__name__}: {exc}")


def server_time(response: Any) -> datetime:  # noqa: ANN401 - a boto3 response dict
    """The server's clock, from the answer's Date header (ages use it, never our clock)."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    date = headers.get("date")
    if date:
        try:
            parsed = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _stored(item: Any) -> StoredObject:  # noqa: ANN401 - a boto3 listing entry
    return StoredObject(
        # Asked for URL-encoded (see TosBucket.pages): decoded here, echoed or not.
        key=unquote_plus(item["Key"]),
        etag=str(item.get("ETag", "")).strip('"'),
        size=int(item.get("Size", 0)),
        last_modified=item["LastModified"],
    )


PAGE_SIZE = 1000


def list_arguments(
    bucket: str, prefix: str, page_size: int = PAGE_SIZE, token: str | None = None
) -> dict[str, Any]:
    """A ListObjectsV2 request of a listing: its first page's without ``token``."""
    # EncodingType given here, not left to botocore: botocore decodes keys only when the
    # answer echoes EncodingType, and S3-compatible stores that encode without echoing would
    # hand back "a%20b.jsonl" for "a b.jsonl". Given, it is decoded in _stored.
    arguments: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": prefix,
        "MaxKeys": page_size,
        "EncodingType": "url",
    }
    if token:
        arguments["ContinuationToken"] = token
    return arguments


class TosBucket:
    """One bucket, read (and for reports and uploads, written) through the S3 API."""

    def __init__(self, s3: S3Client, bucket: str, ahead: ListedAhead | None = None) -> None:
        """``ahead``: where a listing's first page may have been asked for already."""
        self.s3 = s3
        self.bucket = bucket
        self._ahead = ahead

    def pages(self, prefix: str, page_size: int = PAGE_SIZE) -> Iterator[ListingPage]:
        """The listing under ``prefix``, one page at a time, never the whole of it in memory."""
        token: str | None = None
        while True:
            kwargs = list_arguments(self.bucket, prefix, page_size, token)
            asked = self._ahead.take(kwargs) if self._ahead is not None and not token else None
            try:
                response = (
                    asked.result() if asked is not None else self.s3.list_objects_v2(**kwargs)
                )
            except (BotoCoreError, ClientError) as exc:
                raise translate(exc, f"listing s3://{self.bucket}/{prefix}") from exc
            objects = tuple(_stored(item) for item in response.get("Contents", ()))
            token = response.get("NextContinuationToken")
            is_last = not response.get("IsTruncated") or not token
            last_key = objects[-1].key if objects else None
            yield ListingPage(objects, last_key, is_last, server_time(response))
            if is_last:
                return

    def region(self) -> str | None:
        """HeadBucket: the bucket's region when the store tells it; SourceConfigError when the
        bucket does not exist or refuses us."""
        where = f"s3://{self.bucket}"
        try:
            response = self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # A HEAD answer has no body: only its status says what went wrong.
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket", "NotFound"}:
                raise SourceConfigError(f"{where}: no such bucket") from exc
            if code in {"403", "AccessDenied", "Forbidden"}:
                raise SourceConfigError(f"{where}: access denied") from exc
            raise translate(exc, f"looking up {where}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"looking up {where}") from exc
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region") or response.get("BucketRegion")
        return str(region) if region else None

    def head(self, key: str) -> StoredObject | None:
        """The object's current version, or None when it does not exist."""
        try:
            response = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise translate(exc, f"reading s3://{self.bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"reading s3://{self.bucket}/{key}") from exc
        return StoredObject(
            key=key,
            etag=str(response.get("ETag", "")).strip('"'),
            size=int(response.get("ContentLength", 0)),
            last_modified=response["LastModified"],
        )

    @contextmanager
    def opened(self, key: str, etag: str) -> Iterator[tuple[StreamingBody, int | None]]:
        """This version of the object's body, streamed, and its length; an error while it is
        read inside the block is translated like one from the request."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
            body = response["Body"]
            try:
                yield body, response.get("ContentLength")
            finally:
                body.close()
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"reading s3://{self.bucket}/{key}") from exc

    def put_text(self, key: str, text: str, content_type: str = "application/json") -> None:
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=text.encode("utf-8"), ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"writing s3://{self.bucket}/{key}") from exc
