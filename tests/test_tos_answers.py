"""TOS through the S3 API as TOS and other S3-compatible stores answer: keys encoded without
the echo botocore waits for, a HEAD refused with a bare 403, settings TOS cannot take."""

from __future__ import annotations

import tomllib
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest

from dropzone import runtime
from dropzone.ark.signer import Credentials
from dropzone.config import ConfigError, load_settings
from dropzone.sources.base import SourceConfigError
from dropzone.sources.tos import TosBucket, make_s3_client
from tests.conftest import REPO
from tests.harness import ACCESS_KEY, SECRET_KEY, new_bucket, s3_client, serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEYS = ["in/a b.jsonl", "in/x+y.jsonl", "in/100%.jsonl", "in/数据 集.jsonl", "in/~odd&=.jsonl"]


class _Store(BaseHTTPRequestHandler):
    """ListObjectsV2 that URL-encodes keys but leaves EncodingType out of its answer (seen on
    S3-compatible stores), and a HEAD that answers a bare 403."""

    keys: ClassVar[list[str]] = KEYS

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        assert query.get("encoding-type") == ["url"], query
        items = "".join(
            f"<Contents><Key>{quote_plus(key, safe='/')}</Key>"
            "<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
            '<ETag>"e"</ETag><Size>1</Size></Contents>'
            for key in self.keys
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>b</Name><Prefix>in/</Prefix><KeyCount>{len(self.keys)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{items}</ListBucketResult>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[str]:
    with serving(_Store) as url:
        yield url


def _bucket(endpoint: str, name: str = "b") -> TosBucket:
    s3 = make_s3_client(
        endpoint=endpoint,
        region="us-east-1",
        addressing_style="path",
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
    )
    return TosBucket(s3, name)


def test_keys_encoded_without_the_echo_come_back_exact(store: str) -> None:
    """Spaces, +, %, CJK: the store encodes them and does not say so; the keys are exact."""
    [page] = list(_bucket(store).pages("in/"))
    assert [obj.key for obj in page.objects] == KEYS


def test_the_same_keys_round_trip_through_an_echoing_store(moto_endpoint: str) -> None:
    """moto echoes EncodingType: the same keys, put and listed, come back exact too."""
    s3 = s3_client(moto_endpoint)
    name = new_bucket(s3)
    for key in KEYS:
        s3.put_object(Bucket=name, Key=key, Body=b"{}\n")
    listed = [obj.key for page in _bucket(moto_endpoint, name).pages("in/") for obj in page.objects]
    assert sorted(listed) == sorted(KEYS)


def test_a_head_refused_with_403_is_the_configs_problem(store: str) -> None:
    """A bare 403 to HEAD is no transient fault: SourceConfigError, naming the object."""
    with pytest.raises(SourceConfigError, match=r"reading s3://b/in/a\.jsonl: 403"):
        _bucket(store).head("in/a.jsonl")


def _config(tmp_path: Path, tos: str) -> Path:
    path = tmp_path / "dropzone.toml"
    path.write_text(
        f'{tos}\n[[watch]]\nname = "a"\nbucket = "b"\nprefix = "in/"\ncustom_model_id = "cm-1"\n',
        encoding="utf-8",
    )
    return path


def test_path_style_is_refused_for_a_tos_endpoint(tmp_path: Path) -> None:
    """TOS serves virtual-hosted style only: "path" with a *.volces.com endpoint is refused,
    saying why; with a local S3 server it is the right choice."""
    tos = '[tos]\nendpoint = "https://tos-s3-cn-beijing.ivolces.com"\naddressing_style = "path"'
    with pytest.raises(ConfigError) as refused:
        load_settings(_config(tmp_path, tos), {})
    assert "TOS serves virtual-hosted style only" in str(refused.value)
    local = '[tos]\nendpoint = "http://127.0.0.1:9000"\naddressing_style = "path"'
    assert load_settings(_config(tmp_path, local), {}).tos.addressing_style == "path"


def test_tos_calls_have_their_own_time_outs(tmp_path: Path) -> None:
    """[tos] timeout_s, not [ark] timeout_s, bounds a listing (a 1 s Ark time-out failed a
    1.5 s listing)."""
    text = "[ark]\ntimeout_s = 1\n[tos]\ntimeout_s = 45\nconnect_timeout_s = 3"
    settings = load_settings(_config(tmp_path, text), {})
    config = runtime.s3_client(settings, None).meta.config
    # botocore's stubs do not declare the time-outs a Config holds.
    timeouts = (config.read_timeout, config.connect_timeout)  # type: ignore[attr-defined]
    assert timeouts == (45, 3)


def test_the_required_botocore_takes_the_options_dropzone_passes() -> None:
    """The checksum options came with botocore 1.36: the project may not admit an older one."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
    assert "botocore>=1.36" in dependencies
    assert "boto3>=1.36" in dependencies


_LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Name>b</Name><Prefix>in/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
    b"<IsTruncated>false</IsTruncated><Contents><Key>in/a.jsonl</Key>"
    b"<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;e&quot;</ETag>"
    b"<Size>1</Size></Contents></ListBucketResult>"
)
_FIRST_ANSWERS = {
    "error": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error.</Message></Error>"
    ),
    "cut short": _LISTING[: len(_LISTING) // 2],
}


class _FlakyStore(BaseHTTPRequestHandler):
    """Answers a listing's first request with status 200 and ``first`` (an S3 error in the
    body, or a page cut short), then with the page: what S3 sends under load."""

    first: ClassVar[bytes] = b""
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        body = self.first if not self.requests else _LISTING
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("first", sorted(_FIRST_ANSWERS))
def test_a_page_answered_200_with_an_error_or_cut_short_is_asked_again(first: str) -> None:
    """botocore's check for these reads a whole page's XML before parsing it again; dropzone's
    client reads a page's first and last bytes instead, and must still retry both."""

    class Store(_FlakyStore):
        requests: ClassVar[list[str]] = []

    Store.first = _FIRST_ANSWERS[first]
    with serving(Store) as url:
        [page] = list(_bucket(url).pages("in/"))
    assert [obj.key for obj in page.objects] == ["in/a.jsonl"]
    assert len(Store.requests) == 2
