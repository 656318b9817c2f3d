"""The Ark client against the emulator over loopback: every outcome of the taxonomy, for real."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dropzone.ark import errors
from dropzone.ark.client import ArkClient
from dropzone.ark.models import (
    CreateJobRequest,
    FoundationModel,
    ModelReference,
    Phase,
    Tag,
    TosLocation,
)
from dropzone.ark.signer import Credentials
from dropzone.emulator import Emulator
from dropzone.testing import CallRecorder, FakeClock
from tests.emulator_fixtures import client_of

if TYPE_CHECKING:
    from collections.abc import Iterator

AK = "AKLTclienttest"
SK = "client-test-secret-key"


def _request(key: str = "data/a.jsonl", tag: str = "t-a") -> CreateJobRequest:
    return CreateJobRequest(
        name="job-a",
        model_reference=ModelReference(
            foundation_model=FoundationModel(name="doubao-pro-32k", model_version="240615")
        ),
        input_file_tos_location=TosLocation(bucket_name="bkt", object_key=key),
        output_dir_tos_location=TosLocation(bucket_name="bkt", object_key="output/a/"),
        completion_window="1d",
        tags=(Tag(key="dropzone-input", value=tag),),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(AK, SK, queue_s=2, run_s=10, clock=clock, seed=7) as ark:
        yield ark


def _client(ark: Emulator, clock: FakeClock, secret: str = SK, **kwargs: object) -> ArkClient:
    return client_of(ark.url, AK, secret, clock, **kwargs)


def test_create_get_list_stop(emulator: Emulator, clock: FakeClock) -> None:
    """Create answers an ID; Get, List by tag and by IDs find it; Stop terminates it."""
    with _client(emulator, clock) as client:
        job_id = client.create(_request())
        assert job_id.startswith("bi-")
        job = client.get(job_id)
        assert job.phase is Phase.QUEUED
        assert job.input_file_tos_location is not None
        assert job.input_file_tos_location.object_key == "data/a.jsonl"
        assert [j.id for j in client.find_by_tag("dropzone-input", "t-a", "default")] == [job_id]
        assert client.find_by_tag("dropzone-input", "other", "default") == []
        assert [j.id for j in client.get_many((job_id,), "default")] == [job_id]
        clock.advance(3)
        assert client.get(job_id).phase is Phase.RUNNING
        client.stop(job_id)
        assert client.get(job_id).phase is Phase.TERMINATING
        clock.advance(5)
        assert client.get(job_id).phase is Phase.TERMINATED


def test_guard_answer_is_a_confirmed_duplicate(emulator: Emulator, clock: FakeClock) -> None:
    """A second Create for an input with an active job raises Duplicate naming that job."""
    with _client(emulator, clock) as client:
        first = client.create(_request())
        with pytest.raises(errors.Duplicate) as caught:
            client.create(_request(tag="another-tag"))
        assert caught.value.existing_job_id == first
        assert caught.value.job is not None
        assert caught.value.job.tag("dropzone-input") == "t-a"
        assert caught.value.status == 400
        clock.advance(13)
        assert client.get(first).phase is Phase.COMPLETED
        second = client.create(_request())
        assert second != first


def test_guard_in_another_wording(clock: FakeClock) -> None:
    """A 409 with a Chinese message is recognised by the job ID alone, not by code or words."""
    message = "当前存在运行或排队中的相同输入任务：{job_id}，请勿重复提交"  # noqa: RUF001 - Chinese punctuation
    with (
        Emulator(
            AK, SK, clock=clock, guard_status=409, guard_code="Conflict", guard_message=message
        ) as ark,
        _client(ark, clock) as client,
    ):
        first = client.create(_request())
        with pytest.raises(errors.Duplicate) as caught:
            client.create(_request())
        assert caught.value.existing_job_id == first
        assert caught.value.status == 409


def test_unknown_id_is_rejected(emulator: Emulator, clock: FakeClock) -> None:
    """Get of an ID the platform does not know is a permanent Rejected with NotFound."""
    with _client(emulator, clock) as client, pytest.raises(errors.Rejected) as caught:
        client.get("bi-20240101000000-zzzzz")
    assert caught.value.code.startswith("NotFound")
    assert caught.value.status == 404


def test_invalid_request_is_rejected(emulator: Emulator, clock: FakeClock) -> None:
    """A Create the platform refuses (bad Name) is Rejected with the platform's Code."""
    bad = _request().model_copy(update={"name": "no spaces allowed"})
    with _client(emulator, clock) as client, pytest.raises(errors.Rejected) as caught:
        client.create(bad)
    assert caught.value.code == "InvalidParameter.Name"


def test_wrong_secret_is_an_auth_error(emulator: Emulator, clock: FakeClock) -> None:
    """A wrong secret key is an AuthError, and the secret is in no message or repr."""
    with _client(emulator, clock, secret="wrong-secret-value") as client:
        with pytest.raises(errors.AuthError) as caught:
            client.create(_request())
        assert caught.value.code == "SignatureDoesNotMatch"
        assert caught.value.status == 401
        text = str(caught.value) + repr(caught.value) + repr(client) + caught.value.describe()
        assert "wrong-secret-value" not in text


def test_clock_skew_is_measured(emulator: Emulator, clock: FakeClock) -> None:
    """A client clock 20 minutes behind gets InvalidTimestamp with the skew from Date."""
    behind = FakeClock(clock() - timedelta(minutes=20))
    with _client(emulator, behind) as client, pytest.raises(errors.AuthError) as caught:
        client.create(_request())
    assert caught.value.code == "InvalidTimestamp"
    assert caught.value.skew_s == pytest.approx(1200, abs=2)


def test_lost_answer_is_transient_but_the_job_exists(emulator: Emulator, clock: FakeClock) -> None:
    """A lost answer may have reached the server; List by tag then finds the job."""
    emulator.set_faults(lose_answer_rate=1.0)
    with _client(emulator, clock) as client:
        with pytest.raises(errors.Transient) as caught:
            client.create(_request())
        assert caught.value.may_have_reached
        emulator.set_faults(lose_answer_rate=0.0)
        found = client.find_by_tag("dropzone-input", "t-a", "default")
    assert len(found) == 1
    assert emulator.state()["create_calls"] == {"bkt/data/a.jsonl": 1}


def test_throttling_and_server_errors(emulator: Emulator, clock: FakeClock) -> None:
    """429s are Throttled; 500s are Transient that may have reached the server."""
    emulator.set_faults(throttle_rate=1.0)
    with _client(emulator, clock) as client:
        with pytest.raises(errors.Throttled) as throttled:
            client.create(_request())
        assert throttled.value.status == 429
        emulator.set_faults(throttle_rate=0.0, fail_rate=1.0)
        with pytest.raises(errors.Transient) as failed:
            client.get("bi-20240101000000-aaaaa")
        assert failed.value.status == 500
        assert failed.value.may_have_reached


def test_connection_refused_never_reached(clock: FakeClock) -> None:
    """Nothing listening: Transient, and the request certainly did not reach a server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ArkClient(
        endpoint=f"http://127.0.0.1:{port}",
        region="cn-beijing",
        credentials=Credentials(AK, SK),
        clock=clock,
    )
    with client, pytest.raises(errors.Transient) as caught:
        client.create(_request())
    assert not caught.value.may_have_reached
    assert isinstance(caught.value.__cause__, Exception)


def _connections_to(port: int) -> int:
    """Established TCP connections whose far end is ``port`` on this machine (IPv4)."""
    established = "01"
    count = 0
    for line in Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == established:
            count += 1
    return count


def test_concurrent_calls_each_have_a_connection_kept_alive_until_close(
    emulator: Emulator, clock: FakeClock
) -> None:
    """Eight threads at once, three calls each: every call answered, no more connections
    than calls at once (each kept for the next call), and close() ends them all."""
    port = int(emulator.url.rsplit(":", 1)[1].rstrip("/"))
    threads, rounds = 8, 3
    start = threading.Barrier(threads)
    made: list[str] = []

    def create(worker: int) -> None:
        start.wait(timeout=30)
        for turn in range(rounds):
            key = f"data/{worker}-{turn}.jsonl"
            made.append(client.create(_request(key=key, tag=f"t-{worker}-{turn}")))

    with _client(emulator, clock) as client:
        workers = [threading.Thread(target=create, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(set(made)) == threads * rounds
        assert 1 <= _connections_to(port) <= threads
    assert _connections_to(port) == 0


def test_a_call_after_close_is_refused_as_httpx_refuses_it(
    emulator: Emulator, clock: FakeClock
) -> None:
    client = _client(emulator, clock)
    client.create(_request())
    client.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        client.create(_request(key="data/b.jsonl", tag="t-b"))
    assert _connections_to(int(emulator.url.rsplit(":", 1)[1].rstrip("/"))) == 0


def test_warm_up_readies_the_client_that_calls_then_use(
    emulator: Emulator, clock: FakeClock
) -> None:
    """Built, a client has made nothing (no TLS context, no client); warm_up makes them, once
    however often it is called, and calls go out through them as through any. After close
    it makes nothing, and a call is refused as before."""
    port = int(emulator.url.rsplit(":", 1)[1].rstrip("/"))
    client = _client(emulator, clock)
    client.warm_up()
    client.warm_up()
    assert _connections_to(port) == 0, "readied, not connected"
    made = [client.create(_request(key=f"data/{i}.jsonl", tag=f"t-{i}")) for i in range(3)]
    assert len(set(made)) == 3
    assert _connections_to(port) == 1, "one after another, one client, one connection"
    client.close()
    client.warm_up()
    with pytest.raises(RuntimeError, match="client has been closed"):
        client.create(_request(key="data/z.jsonl", tag="t-z"))
    assert _connections_to(port) == 0


def test_observer_sees_every_call(emulator: Emulator, clock: FakeClock) -> None:
    """The metrics hook hears each call's action and status."""
    recorder = CallRecorder()
    with _client(emulator, clock, observer=recorder) as client:
        job_id = client.create(_request())
        client.get(job_id)
        with pytest.raises(errors.Rejected):
            client.get("bi-20240101000000-zzzzz")
    assert recorder.heard() == [
        ("CreateBatchInferenceJob", "200"),
        ("GetBatchInferenceJob", "200"),
        ("GetBatchInferenceJob", "404"),
    ]


def test_session_token_is_signed_and_accepted(emulator: Emulator, clock: FakeClock) -> None:
    """STS credentials work: the token is sent, signed, and accepted."""
    client = ArkClient(
        endpoint=emulator.url,
        region="cn-beijing",
        credentials=Credentials(AK, SK, "sts-token-value"),
        clock=clock,
    )
    with client:
        assert client.create(_request()).startswith("bi-")


def test_bad_endpoint_is_refused_early() -> None:
    """An endpoint without a scheme is a clear error at construction."""
    with pytest.raises(ValueError, match="scheme"):
        ArkClient(endpoint="open.volcengineapi.com", region="r", credentials=Credentials("a", "b"))


@pytest.mark.parametrize("bundle", ["missing", "not-certificates"])
def test_unusable_ca_certificates_hold_and_are_read_again(
    emulator: Emulator,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bundle: str,
) -> None:
    """SSL_CERT_FILE naming no file, or one that holds no certificates: the call is held (no
    request sent, what to do said, the file named), and the next call after the file is put
    right goes through, in the same client."""
    path = tmp_path / "ca.pem"
    if bundle == "not-certificates":
        path.write_text("this is not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    with _client(emulator, clock) as client:
        with pytest.raises(errors.TrustStoreError) as caught:
            client.create(_request())
        assert isinstance(caught.value, errors.Held)
        assert f"SSL_CERT_FILE={path}" in caught.value.message
        assert "SSL_CERT_FILE" in caught.value.hint
        assert caught.value.event == "ark.tls_unusable"
        assert emulator.state()["jobs"] == []
        monkeypatch.delenv("SSL_CERT_FILE")
        client.create(_request())
    assert emulator.state()["create_calls"] == {"bkt/data/a.jsonl": 1}


def test_a_certificates_folder_that_is_not_there_holds(
    emulator: Emulator, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_DIR naming no folder: OpenSSL would take it and fail every handshake later
    (an outage, wrongly); held at once instead, the setting named."""
    missing = tmp_path / "no-such-certs"
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(missing))
    with _client(emulator, clock) as client, pytest.raises(errors.TrustStoreError) as caught:
        client.create(_request())
    assert f"SSL_CERT_DIR={missing}" in caught.value.message
    assert emulator.state()["jobs"] == []
