"""A listing's first page asked for ahead (``run --once`` asks while the daemon loads): taken
once by the listing that starts with it, which then makes no call for it; its failure is the
listing's, as if the call had been made there. Over moto's S3 on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest

from dropzone.ledger import SqliteLedger
from dropzone.sources.ahead import ListedAhead
from dropzone.sources.base import SourceConfigError
from dropzone.sources.tos import TosBucket, list_arguments
from tests.harness import jsonl, new_bucket, s3_client, wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tests.harness import Stage


def _counting_lists(s3: S3Client) -> list[dict[str, Any]]:
    """The ListObjectsV2 requests the client sends, as botocore is about to send them."""
    sent: list[dict[str, Any]] = []

    def seen(params: dict[str, Any], **_: object) -> None:
        sent.append(params)

    s3.meta.events.register("before-call.s3.ListObjectsV2", seen)
    return sent


def _keys(bucket: TosBucket, prefix: str, page_size: int) -> list[str]:
    return [obj.key for page in bucket.pages(prefix, page_size) for obj in page.objects]


@pytest.fixture
def s3(moto_endpoint: str) -> S3Client:
    return s3_client(moto_endpoint)


def test_a_page_asked_ahead_starts_the_listing_without_a_call_of_its_own(s3: S3Client) -> None:
    name = new_bucket(s3, "ahead")
    for i in range(3):
        s3.put_object(Bucket=name, Key=f"in/{i}.jsonl", Body=jsonl())
    sent = _counting_lists(s3)
    ahead = ListedAhead(s3)
    ahead.ask(list_arguments(name, "in/", page_size=2))
    bucket = TosBucket(s3, name, ahead)
    assert _keys(bucket, "in/", page_size=2) == ["in/0.jsonl", "in/1.jsonl", "in/2.jsonl"]
    assert len(sent) == 2, "the first page asked ahead, the second by the listing"
    assert "continuation-token" not in sent[0]["query_string"]
    assert "continuation-token" in sent[1]["query_string"]
    # Taken once: the next listing, and one of another prefix, make their own calls.
    assert _keys(bucket, "in/", page_size=2) == ["in/0.jsonl", "in/1.jsonl", "in/2.jsonl"]
    assert _keys(bucket, "other/", page_size=2) == []
    assert len(sent) == 5


def test_a_page_asked_with_other_arguments_is_not_taken(s3: S3Client) -> None:
    name = new_bucket(s3, "ahead")
    s3.put_object(Bucket=name, Key="in/a.jsonl", Body=jsonl())
    sent = _counting_lists(s3)  # before the ask: its thread may call at once
    ahead = ListedAhead(s3)
    ahead.ask(list_arguments(name, "in/", page_size=5))
    assert _keys(TosBucket(s3, name, ahead), "in/", page_size=1000) == ["in/a.jsonl"]
    asked = ahead.take(list_arguments(name, "in/", page_size=5))
    assert asked is not None
    asked.result(timeout=30)
    sizes = sorted(params["query_string"]["max-keys"] for params in sent)
    assert sizes == [5, 1000], "the listing's own page size: its own call"


def test_a_failure_asked_ahead_is_the_listings_as_if_it_had_called(s3: S3Client) -> None:
    ahead = ListedAhead(s3)
    ahead.ask(list_arguments("no-such-bucket-ahead", "in/"))
    bucket = TosBucket(s3, "no-such-bucket-ahead", ahead)
    with pytest.raises(SourceConfigError, match="no-such-bucket-ahead") as raised:
        _keys(bucket, "in/", page_size=1000)
    with pytest.raises(SourceConfigError) as again:  # made by the listing itself this time
        _keys(bucket, "in/", page_size=1000)
    assert str(raised.value) == str(again.value)


def test_two_watches_listing_alike_ask_once_and_both_list(s3: S3Client) -> None:
    """Two watches on one prefix (two models, say): one call asked ahead, taken by the first
    listing; the second makes its own."""
    name = new_bucket(s3, "ahead")
    s3.put_object(Bucket=name, Key="in/a.jsonl", Body=jsonl())
    sent = _counting_lists(s3)
    ahead = ListedAhead(s3)
    ahead.ask(list_arguments(name, "in/"))
    ahead.ask(list_arguments(name, "in/"))
    bucket = TosBucket(s3, name, ahead)
    assert _keys(bucket, "in/", page_size=1000) == ["in/a.jsonl"]
    assert _keys(bucket, "in/", page_size=1000) == ["in/a.jsonl"]
    assert len(sent) == 2, "one asked ahead, one by the second listing"


class _Listener:
    """A TCP port on loopback that notes who connects to it, and closes each connection."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.peers: list[tuple[str, int]] = []
        self._serving = threading.Thread(target=self._serve, daemon=True)
        self._serving.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by the test
            while True:
                conn, peer = self._socket.accept()
                self.peers.append(peer)
                conn.close()

    def connections_before_now(self) -> int:
        """Connections made before this call: one of ours is accepted after any waiting in
        the queue, so once ours is seen every earlier one has been."""
        with socket.create_connection(self._socket.getsockname()) as ours:
            me = ours.getsockname()
            wait_for(lambda: me in self.peers, what="the listener to accept ours")
        return self.peers.index(me)

    def close(self) -> None:
        # shutdown, not close alone: that wakes the thread waiting in accept().
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._serving.join(timeout=10)


@pytest.mark.slow
def test_a_run_the_ledger_refuses_has_asked_for_nothing(stage: Stage) -> None:
    """``run --once`` opens its ledger before it asks for any page: one another process holds
    is reported at once, and the store was not called (cron starting a run while the last one
    still works must not cost a listing request each time)."""
    stage.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    store = _Listener()
    try:
        with SqliteLedger.open(stage.ledger_path, lock=True):
            refused = stage.dropzone("run", "--once", env={"DROPZONE_TOS__ENDPOINT": store.url})
        assert refused.returncode == 2, refused.stderr
        assert f"pid {os.getpid()}" in refused.stderr
        assert store.connections_before_now() == 0
    finally:
        store.close()
