"""Reading an S3 answer's first and last bytes settles what botocore parses a whole page for."""

from __future__ import annotations

import pytest

from dropzone.sources.s3_parsing import whole_and_not_an_error

PAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
    b"<Contents><Key>in/a.jsonl</Key></Contents></ListBucketResult>\n"
)


@pytest.mark.parametrize(
    ("body", "settled"),
    [
        (PAGE, True),
        (PAGE.split(b"\n", 1)[1], True),  # no XML declaration
        (b"<!-- a proxy's note -->\n" + PAGE.split(b"\n", 1)[1], True),
        (PAGE[: len(PAGE) // 2], False),  # cut short: botocore's parse decides (it retries)
        (PAGE.rstrip()[:-1], False),  # one byte short
        (b'<?xml version="1.0"?><Error><Code>SlowDown</Code></Error>', False),
        (b"<Error><Code>InternalError</Code></Error>", False),
        (b"", False),
        (b"not xml at all", False),
        (b"<ListBucketResult></ListBucketResultX>", False),
    ],
)
def test_a_body_is_settled_only_when_whole_and_not_an_error(body: bytes, settled: bool) -> None:
    assert whole_and_not_an_error(body) is settled
