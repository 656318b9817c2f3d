"""The local folder source: names and keys, the settle rule, the walk, the watcher, the bucket side.

Real temporary folders, real watchdog observers (inotify and polling) and a real S3 server
(moto on loopback). Nothing sleeps "long enough": every wait is a condition with a deadline.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

from dropzone.sources.base import SourceConfigError, SourceError
from dropzone.sources.local import (
    DEFAULT_IGNORE,
    FolderWatcher,
    LocalFile,
    SettleTracker,
    file_md5,
    is_ignored,
    is_md5_etag,
    key_for,
    local_object,
    scan,
    stat_file,
    synced_object,
    upload_file,
)
from dropzone.sources.tos import TosBucket

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mypy_boto3_s3 import S3Client

# watchdog's inotify backend warns when a folder created with its parent (mkdir -p) gets its
# watch added twice, and then overwrites the callback with the same one: harmless, but under
# "warnings as errors" the warning kills watchdog's reader thread and every later event is lost.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Callback with id .* already exists for watch:RuntimeWarning"
)

PREFIX = "batch-inference-job/dataset/"
MiB = 1024 * 1024


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@dataclass
class Reports:
    """What a watcher reported, with the monotonic time of each report (thread-safe)."""

    files: list[LocalFile] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, file: LocalFile) -> None:
        with self.lock:
            self.files.append(file)
            self.times.append(time.monotonic())

    def relpaths(self) -> list[str]:
        with self.lock:
            return [f.relpath for f in self.files]

    def of(self, relpath: str) -> list[LocalFile]:
        with self.lock:
            return [f for f in self.files if f.relpath == relpath]


class Watch(Protocol):
    def __call__(
        self,
        root: Path | None = None,
        *,
        settle_s: float = 10.0,
        polling: bool = False,
        poll_interval_s: float = 60.0,
        on_ready: Callable[[LocalFile], None] | None = None,
        events: bool = True,
    ) -> tuple[FolderWatcher, Reports]: ...


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watch]:
    """Start a watcher on a folder (default: tmp_path/"in"); every one is stopped afterwards.

    The default settle_s is long, so that only completion events (close, rename) report
    quickly: with settle_s = 0 a file counts at first sight, which for inotify is its creation.
    """
    started: list[FolderWatcher] = []

    def make(
        root: Path | None = None,
        *,
        settle_s: float = 10.0,
        polling: bool = False,
        poll_interval_s: float = 60.0,
        on_ready: Callable[[LocalFile], None] | None = None,
        events: bool = True,
    ) -> tuple[FolderWatcher, Reports]:
        folder = root if root is not None else tmp_path / "in"
        folder.mkdir(parents=True, exist_ok=True)
        reports = Reports()
        watcher = FolderWatcher(
            folder,
            ignore=DEFAULT_IGNORE,
            settle_s=settle_s,
            polling=polling,
            poll_interval_s=poll_interval_s,
            on_ready=on_ready if on_ready is not None else reports,
            events=events,
        )
        watcher.start()
        started.append(watcher)
        return watcher, reports

    yield make
    for watcher in started:
        watcher.stop()


def settled(watcher: FolderWatcher) -> None:
    """Barrier: a full rescan ran after every signal queued so far (the queue is FIFO)."""
    assert watcher.rescan_now().wait(5.0), "rescan did not finish"


# --- names, keys and ignore rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "key"),
    [
        ("a.jsonl", PREFIX + "a.jsonl"),
        ("team-a/deep/x.jsonl", PREFIX + "team-a/deep/x.jsonl"),
        (unicodedata.normalize("NFD", "café.jsonl"), PREFIX + "café.jsonl"),
    ],
)
def test_key_for_joins_prefix_and_nfc_relpath(relpath: str, key: str) -> None:
    """The key is the prefix plus the NFC relpath: the exact inverse of the TOS poller's relpath."""
    assert key_for(PREFIX, relpath) == key


@pytest.mark.parametrize("relpath", ["/abs.jsonl", "a//b.jsonl", "../up.jsonl", "a/./b.jsonl", ""])
def test_key_for_refuses_paths_that_are_not_below_the_folder(relpath: str) -> None:
    """A relpath that is absolute, empty or climbs out can never become a key."""
    with pytest.raises(ValueError, match="not a relative POSIX path"):
        key_for(PREFIX, relpath)


@pytest.mark.parametrize(
    ("relpath", "ignored"),
    [
        ("a.jsonl", False),
        ("team/a.jsonl", False),
        (".hidden.jsonl", True),
        (".git/config", True),
        ("team/.cache/a.jsonl", True),
        ("a.jsonl.tmp", True),
        ("a.jsonl.part", True),
        ("a.jsonl~", True),
        ("a.jsonl.crdownload", True),
        ("team/.a.jsonl.swp", True),
        ("a.swp.jsonl", False),
        ("a.TMP", False),
    ],
)
def test_default_ignore_rules(relpath: str, ignored: bool) -> None:
    """Hidden names on any component and the usual temp suffixes are ignored, case-sensitively."""
    assert is_ignored(relpath) is ignored


def test_ignore_pattern_with_a_slash_matches_the_whole_relpath() -> None:
    """A pattern containing '/' is matched against the relpath, not against each component."""
    assert is_ignored("drafts/x.jsonl", ["drafts/*"])
    assert not is_ignored("team/drafts/x.jsonl", ["drafts/*"])
    assert is_ignored("team/drafts/x.jsonl", ["drafts"])


# --- the settle tracker (pure) ------------------------------------------------------------


def _file(relpath: str, size: int, mtime_ns: int) -> LocalFile:
    return LocalFile(Path("/nowhere") / relpath, relpath, size, mtime_ns)


def test_tracker_close_makes_a_file_ready_at_once_and_only_once() -> None:
    """A completion event reports the file immediately; the same version is never reported again."""
    tracker = SettleTracker(settle_s=5.0)
    v1 = _file("a", 10, 1)
    assert tracker.observe(v1, now=0.0) is None
    assert tracker.closed(v1) == v1
    assert tracker.closed(v1) is None
    assert tracker.observe(v1, now=100.0) is None
    v2 = _file("a", 12, 2)
    assert tracker.closed(v2) == v2


def test_tracker_needs_settle_s_of_stability_and_rechecks_when_due() -> None:
    """Without a close, a version is ready once seen unchanged settle_s apart; a change restarts."""
    tracker = SettleTracker(settle_s=2.0)
    assert tracker.observe(_file("a", 1, 1), now=0.0) is None
    assert tracker.observe(_file("a", 2, 2), now=1.0) is None  # grew: the window restarts
    assert tracker.next_due() == 3.0
    assert tracker.due(2.9) == []
    assert tracker.due(3.0) == [_file("a", 2, 2)]
    assert tracker.observe(_file("a", 2, 2), now=2.9) is None
    assert tracker.observe(_file("a", 2, 2), now=3.0) == _file("a", 2, 2)
    assert tracker.waiting == 0
    assert tracker.next_due() is None


def test_tracker_sweep_forgets_files_no_rescan_saw() -> None:
    """After a full rescan, files not seen since the previous one are forgotten (bounded memory)."""
    tracker = SettleTracker(settle_s=0.0)
    kept, gone = _file("kept", 1, 1), _file("gone", 1, 1)
    assert tracker.observe(kept, 0.0) == kept
    assert tracker.observe(gone, 0.0) == gone
    tracker.end_sweep()
    assert tracker.observe(kept, 1.0) is None  # reported already, and marked as seen
    tracker.end_sweep()
    assert tracker.observe(kept, 2.0) is None
    assert tracker.observe(gone, 2.0) == gone  # forgotten, so it is new again


_steps = st.lists(
    st.tuples(
        st.sampled_from(["observe", "observe", "closed", "forget", "sweep"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 2),  # size
        st.integers(0, 1),  # mtime_ns
        st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0]),  # time step
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(settle_s=st.sampled_from([0.0, 0.5]), steps=_steps)
def test_tracker_properties(settle_s: float, steps: list[tuple[str, str, int, int, float]]) -> None:
    """Never the same version twice in a row; observe() only after settle_s stable; always ends.

    A model keeps, per relpath, when its current run of identical sightings began; a report by
    observe() must come at least settle_s after that. Finally every file's last version, seen
    again settle_s apart, is reported unless it was the last one reported.
    """
    tracker = SettleTracker(settle_s)
    now, sweep = 0.0, 0
    run: dict[str, tuple[tuple[int, int], float]] = {}
    last_report: dict[str, tuple[int, int]] = {}
    last_seen: dict[str, int] = {}  # the sweep in which each relpath was last seen
    for action, relpath, size, mtime, step in steps:
        now += step
        file, version = _file(relpath, size, mtime), (size, mtime)
        if action in {"forget", "sweep"}:
            if action == "forget":
                tracker.forget(relpath)
                gone = [relpath]
            else:
                tracker.end_sweep()
                gone = [r for r, seen in last_seen.items() if seen < sweep]
                sweep += 1
            for name in gone:
                last_report.pop(name, None)
                last_seen.pop(name, None)
            continue
        last_seen[relpath] = sweep
        if run.get(relpath, ((-1, -1), 0.0))[0] != version:
            run[relpath] = (version, now)
        got = tracker.observe(file, now) if action == "observe" else tracker.closed(file)
        if got is not None:
            assert last_report.get(relpath) != version
            if action == "observe":
                assert now >= run[relpath][1] + settle_s
            last_report[relpath] = version
    for relpath, (version, _) in run.items():
        file = _file(relpath, *version)
        first = tracker.observe(file, now + 10)
        second = tracker.observe(file, now + 10 + settle_s)
        assert (first or second) is not None or last_report.get(relpath) == version


# --- the walk -----------------------------------------------------------------------------


def test_scan_walks_nested_folders_with_posix_nfc_relpaths(tmp_path: Path) -> None:
    """Nested files come out with POSIX relpaths; a decomposed (NFD) name comes out NFC."""
    nfd = unicodedata.normalize("NFD", "café-数据.jsonl")
    assert nfd != unicodedata.normalize("NFC", nfd)
    (tmp_path / "team-a" / "deep").mkdir(parents=True)
    (tmp_path / "team-a" / "deep" / "x.jsonl").write_bytes(b"xx")
    (tmp_path / nfd).write_bytes(b"abc")
    (tmp_path / "top.jsonl").write_bytes(b"")
    found = {f.relpath: f for f in scan(tmp_path)}
    assert sorted(found) == ["café-数据.jsonl", "team-a/deep/x.jsonl", "top.jsonl"]
    assert found["café-数据.jsonl"].path == tmp_path / nfd
    assert found["café-数据.jsonl"].size == 3
    assert key_for(PREFIX, "team-a/deep/x.jsonl") == PREFIX + "team-a/deep/x.jsonl"


def test_scan_skips_hidden_and_temp_names_and_non_regular_files(tmp_path: Path) -> None:
    """Ignored names (files and whole hidden folders) and FIFOs are never reported."""
    for name in [".hidden.jsonl", "a.tmp", "b.part", "c~", "d.crdownload", ".e.swp"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.jsonl").write_bytes(b"x")
    os.mkfifo(tmp_path / "pipe.jsonl")
    (tmp_path / "ok.jsonl").write_bytes(b"x")
    assert [f.relpath for f in scan(tmp_path)] == ["ok.jsonl"]


def test_scan_follows_symlinks_inside_the_folder_only(tmp_path: Path) -> None:
    """A link to a file in the folder counts; links out of it and linked folders are not walked."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(b"secret")
    (root / "real.jsonl").write_bytes(b"real!")
    (root / "in.jsonl").symlink_to(root / "real.jsonl")
    (root / "out.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jsonl").symlink_to(root / "missing.jsonl")
    found = {f.relpath: f.size for f in scan(root)}
    assert found == {"real.jsonl": 5, "in.jsonl": 5}
    assert {f.relpath for f in scan(root, follow=False)} == {"real.jsonl"}
    assert stat_file(root / "out.jsonl", "out.jsonl", root.resolve()) is None


def test_scan_reports_unlistable_folders_and_carries_on(tmp_path: Path) -> None:
    """A folder that cannot be listed goes to on_error (like os.walk) and the walk goes on."""
    errors: list[OSError] = []
    (tmp_path / "ok.jsonl").write_bytes(b"x")
    files = list(scan(tmp_path / "missing", on_error=errors.append))
    assert files == []
    assert len(errors) == 1
    assert isinstance(errors[0], FileNotFoundError)
    assert [f.relpath for f in scan(tmp_path, on_error=errors.append)] == ["ok.jsonl"]


def test_scan_under_a_subfolder_keeps_relpaths_relative_to_the_root(tmp_path: Path) -> None:
    """Walking only a new subfolder (a folder event) gives the same relpaths as a full walk,
    and nothing at all when that subfolder is itself ignored."""
    (tmp_path / "team" / "deep").mkdir(parents=True)
    (tmp_path / "team" / "deep" / "a.jsonl").write_bytes(b"a")
    (tmp_path / "other.jsonl").write_bytes(b"o")
    (tmp_path / ".cache" / "x").mkdir(parents=True)
    (tmp_path / ".cache" / "x" / "b.jsonl").write_bytes(b"b")
    assert [f.relpath for f in scan(tmp_path, under=tmp_path / "team")] == ["team/deep/a.jsonl"]
    assert list(scan(tmp_path, under=tmp_path / ".cache" / "x")) == []
    assert list(scan(tmp_path, under=tmp_path.parent)) == []


def test_scan_reports_names_that_cannot_be_keys(tmp_path: Path) -> None:
    """A name that is not UTF-8 cannot be an object key: on_error gets EILSEQ, the walk goes on."""
    (tmp_path / os.fsdecode(b"bad-\xff.jsonl")).write_bytes(b"x")
    (tmp_path / "good.jsonl").write_bytes(b"x")
    errors: list[OSError] = []
    assert [f.relpath for f in scan(tmp_path, on_error=errors.append)] == ["good.jsonl"]
    assert [e.errno for e in errors] == [errno.EILSEQ]


# --- the watcher --------------------------------------------------------------------------


@pytest.mark.slow
def test_chunked_write_is_reported_once_when_closed_with_final_size(
    tmp_path: Path, watch: Watch
) -> None:
    """A file written in chunks over >1 s (flushed, kept open) is reported once, complete.

    Rescans run every 0.3 s meanwhile: a growing file never settles, the close reports it.
    """
    watcher, reports = watch(settle_s=2.0, poll_interval_s=0.3)
    path = tmp_path / "in" / "big.jsonl"
    chunk = b'{"custom_id": "x", "body": {}}\n' * 100
    started = time.monotonic()
    with path.open("wb") as stream:
        for _ in range(12):
            stream.write(chunk)
            stream.flush()
            time.sleep(0.1)
        assert time.monotonic() - started > 1.0
        assert reports.relpaths() == []
        closed_at = time.monotonic()
    wait_for(lambda: reports.relpaths() == ["big.jsonl"], what="the report")
    settled(watcher)
    assert [f.size for f in reports.files] == [12 * len(chunk)]
    assert reports.times[0] - closed_at < 1.0  # the close, not the settle window, reported it


def test_atomic_rename_is_reported_once_under_its_final_name(tmp_path: Path, watch: Watch) -> None:
    """Writing x.jsonl.part then renaming it to x.jsonl reports x.jsonl once, never the .part."""
    watcher, reports = watch(settle_s=10.0)
    part, final = tmp_path / "in" / "x.jsonl.part", tmp_path / "in" / "x.jsonl"
    part.write_bytes(b'{"a": 1}\n' * 50)
    part.rename(final)
    wait_for(lambda: reports.relpaths() == ["x.jsonl"], what="the renamed file")
    settled(watcher)
    assert reports.relpaths() == ["x.jsonl"]
    assert reports.files[0].path == final
    assert reports.files[0].size == 450


def test_nested_folders_and_nfd_names_give_posix_nfc_relpaths_and_keys(
    tmp_path: Path, watch: Watch
) -> None:
    """Files in new nested folders, and an NFD-named file, get POSIX NFC relpaths and keys."""
    _, reports = watch(settle_s=0.2)
    nested = tmp_path / "in" / "team-a" / "2024"
    nested.mkdir(parents=True)
    (nested / "job.jsonl").write_bytes(b"{}\n")
    nfd = unicodedata.normalize("NFD", "données.jsonl")
    (tmp_path / "in" / nfd).write_bytes(b"{}\n")
    expected = {"team-a/2024/job.jsonl", "données.jsonl"}
    wait_for(lambda: set(reports.relpaths()) == expected, what="both files")
    keys = sorted(key_for(PREFIX, relpath) for relpath in reports.relpaths())
    assert keys == [PREFIX + "données.jsonl", PREFIX + "team-a/2024/job.jsonl"]
    assert next(iter(reports.of("données.jsonl"))).path.name == nfd


def test_hidden_and_temp_files_are_never_reported(tmp_path: Path, watch: Watch) -> None:
    """Ignored names written while watching are never reported; a later normal file is."""
    watcher, reports = watch()
    folder = tmp_path / "in"
    (folder / ".cache").mkdir()
    for name in [".hidden.jsonl", "a.tmp", "b.part", "c~", "d.crdownload", ".e.swp", ".cache/f"]:
        (folder / name).write_bytes(b"x")
    (folder / "sentinel.jsonl").write_bytes(b"x")
    wait_for(lambda: "sentinel.jsonl" in reports.relpaths(), what="the sentinel")
    settled(watcher)
    assert reports.relpaths() == ["sentinel.jsonl"]


def test_watcher_follows_symlinks_inside_the_folder_only(tmp_path: Path, watch: Watch) -> None:
    """At start, a symlink leaving the folder is not followed; one to a file inside is."""
    root, outside = tmp_path / "in", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(b"secret")
    (root / "real.jsonl").write_bytes(b"real!")
    (root / "in.jsonl").symlink_to(root / "real.jsonl")
    (root / "out.jsonl").symlink_to(outside / "secret.jsonl")
    watcher, reports = watch(root, settle_s=0.0)
    wait_for(lambda: len(reports.relpaths()) >= 2, what="the catch-up scan")
    settled(watcher)
    assert sorted(reports.relpaths()) == ["in.jsonl", "real.jsonl"]


def test_files_present_before_start_are_reported_by_the_catch_up_scan(
    tmp_path: Path, watch: Watch
) -> None:
    """Files dropped while the daemon was down are reported by the scan at start, once each."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.jsonl").write_bytes(b"1")
    (folder / "sub" / "two.jsonl").write_bytes(b"22")
    watcher, reports = watch(folder, settle_s=0.0)
    wait_for(lambda: len(reports.relpaths()) == 2, what="both files")
    settled(watcher)
    assert sorted(reports.relpaths()) == ["one.jsonl", "sub/two.jsonl"]


def test_rewritten_file_is_reported_again_and_unchanged_one_is_not(
    tmp_path: Path, watch: Watch
) -> None:
    """A new version of a file is a new report; rescans of an unchanged file report nothing."""
    watcher, reports = watch()
    path = tmp_path / "in" / "a.jsonl"
    path.write_bytes(b"first\n")
    wait_for(lambda: len(reports.of("a.jsonl")) == 1, what="the first version")
    settled(watcher)
    settled(watcher)
    assert len(reports.of("a.jsonl")) == 1
    path.write_bytes(b"second, longer\n")
    wait_for(lambda: len(reports.of("a.jsonl")) == 2, what="the second version")
    settled(watcher)
    assert [f.size for f in reports.of("a.jsonl")] == [6, 15]


@pytest.mark.slow
def test_polling_observer_reports_only_after_the_file_is_stable(
    tmp_path: Path, watch: Watch
) -> None:
    """With PollingObserver alone (a mount whose kernel reports no events, so no close) a
    growing file is reported once, settle_s after its last change, with its final size."""
    settle_s = 0.8
    watcher, reports = watch(settle_s=settle_s, polling=True, poll_interval_s=0.2, events=False)
    path = tmp_path / "in" / "slow.jsonl"
    with path.open("wb") as stream:
        for _ in range(12):
            time.sleep(0.1)
            last_write = time.monotonic()  # taken before the write: no sighting precedes it
            stream.write(b"0123456789\n")
            stream.flush()
        assert reports.relpaths() == []
    wait_for(lambda: reports.relpaths() == ["slow.jsonl"], what="the settled file")
    assert reports.times[0] - last_write >= settle_s
    assert reports.files[0].size == 12 * 11
    settled(watcher)
    assert reports.relpaths() == ["slow.jsonl"]


def test_a_polled_folder_still_takes_the_events_the_kernel_gives(
    tmp_path: Path, watch: Watch
) -> None:
    """A mounted folder is polled, and inotify runs beside the polling where it can: a file
    closed there counts at once, not at the next poll (an hour away here) after settling."""
    watcher, reports = watch(settle_s=30.0, polling=True, poll_interval_s=3600)
    (tmp_path / "in" / "fast.jsonl").write_bytes(b"closed at once\n")
    wait_for(lambda: reports.relpaths() == ["fast.jsonl"], what="the closed file")
    settled(watcher)
    assert reports.relpaths() == ["fast.jsonl"]


def test_file_that_disappears_before_settling_is_dropped(tmp_path: Path, watch: Watch) -> None:
    """A file deleted while it waits to settle is never reported and stops being tracked
    (polled only: with inotify its close would report it at once)."""
    watcher, reports = watch(settle_s=30.0, polling=True, poll_interval_s=0.2, events=False)
    path = tmp_path / "in" / "brief.jsonl"
    path.write_bytes(b"here briefly\n")
    wait_for(lambda: watcher._tracker.waiting == 1, what="the file to be tracked")
    path.unlink()
    settled(watcher)
    wait_for(lambda: watcher._tracker.waiting == 0, what="the file to be dropped")
    assert reports.relpaths() == []


def test_a_failed_report_is_retried_by_the_next_rescan(tmp_path: Path, watch: Watch) -> None:
    """If on_ready raises, the watcher keeps going and reports the file again at the next rescan."""
    calls: list[LocalFile] = []

    def flaky(file: LocalFile) -> None:
        calls.append(file)
        if len(calls) == 1:
            raise RuntimeError("the ledger is busy")

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"a")
    watcher, _ = watch(settle_s=0.0, on_ready=flaky)
    wait_for(lambda: len(calls) == 1, what="the failing report")
    settled(watcher)
    assert [f.relpath for f in calls] == ["a.jsonl", "a.jsonl"]


def test_watching_a_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    """start() on a folder that does not exist raises SourceConfigError naming it."""
    watcher = FolderWatcher(
        tmp_path / "nope",
        ignore=DEFAULT_IGNORE,
        settle_s=0,
        polling=False,
        poll_interval_s=1,
        on_ready=Reports(),
    )
    with pytest.raises(SourceConfigError, match="nope"):
        watcher.start()
    with pytest.raises(RuntimeError, match="not running"):
        watcher.rescan_now()
    watcher.stop()  # harmless when it never started


# --- the bucket side ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 server (moto) on loopback for this module; each test makes its own bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Store:
    s3: S3Client
    bucket: TosBucket
    calls: list[str]

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


@pytest.fixture
def store(s3_endpoint: str) -> Store:
    """A fresh bucket and a client that counts the S3 operations it sends."""
    s3: S3Client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    s3.meta.events.register("before-call.s3", record)
    name = f"local-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    calls.clear()
    return Store(s3, TosBucket(s3, name), calls)


def _local(path: Path, relpath: str) -> LocalFile:
    found = stat_file(path, relpath, path.parent.resolve())
    assert found is not None
    return found


def test_upload_stores_the_content_verifies_md5_and_skips_a_repeat(
    tmp_path: Path, store: Store
) -> None:
    """The object holds the file's bytes with ETag = MD5; uploading the same file again sends
    no PutObject at all."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"custom_id": "1", "body": {}}\n')
    file, key = _local(path, "a.jsonl"), key_for(PREFIX, "a.jsonl")
    stored = upload_file(store.bucket, key, file)
    assert stored.key == key
    assert stored.etag == file_md5(path)
    assert is_md5_etag(stored.etag)
    assert stored.size == file.size
    body = store.s3.get_object(Bucket=store.bucket.bucket, Key=key)["Body"].read()
    assert body == path.read_bytes()
    assert store.count("PutObject") == 1
    again = upload_file(store.bucket, key, file)
    assert again == stored
    assert store.count("PutObject") == 1


def test_upload_replaces_an_object_of_the_same_size_but_other_content(
    tmp_path: Path, store: Store
) -> None:
    """Same size is not same content: a different MD5 means the file is uploaded."""
    key = key_for(PREFIX, "a.jsonl")
    store.s3.put_object(Bucket=store.bucket.bucket, Key=key, Body=b"old!")
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"new!")
    stored = upload_file(store.bucket, key, _local(path, "a.jsonl"))
    assert stored.etag == file_md5(path)
    assert store.count("PutObject") == 2


def test_multipart_upload_is_verified_by_size_and_not_repeated(
    tmp_path: Path, store: Store
) -> None:
    """Above the threshold the upload goes multipart (ETag ``-N``), is checked by size, and a
    repeat is skipped because the multipart ETag computed from the file matches."""
    transfer = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    path = tmp_path / "big.jsonl"
    path.write_bytes(os.urandom(5 * MiB) + b"tail\n")
    file, key = _local(path, "big.jsonl"), key_for(PREFIX, "big.jsonl")
    stored = upload_file(store.bucket, key, file, transfer=transfer)
    assert stored.etag.endswith("-2")
    assert stored.size == file.size
    assert store.count("CreateMultipartUpload") == 1
    assert upload_file(store.bucket, key, file, transfer=transfer) == stored
    assert store.count("CreateMultipartUpload") == 1
    assert store.count("PutObject") == 0


def test_upload_to_a_missing_bucket_is_a_configuration_error(tmp_path: Path, store: Store) -> None:
    """boto3's errors come out translated and chained: no bucket is SourceConfigError."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"x")
    missing = TosBucket(store.s3, f"missing-{uuid.uuid4().hex[:12]}")
    with pytest.raises(SourceConfigError, match="NoSuchBucket") as caught:
        upload_file(missing, "a.jsonl", _local(path, "a.jsonl"))
    assert caught.value.__cause__ is not None


def test_upload_of_a_vanished_file_is_a_source_error(tmp_path: Path, store: Store) -> None:
    """A file deleted before its upload raises SourceError (chained), not a bare OSError."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"x")
    file = _local(path, "a.jsonl")
    path.unlink()
    with pytest.raises(SourceError, match=r"a\.jsonl") as caught:
        upload_file(store.bucket, "a.jsonl", file)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_synced_object_waits_for_the_same_size_and_content(tmp_path: Path, store: Store) -> None:
    """None while the object is missing, shorter, or an older version of equal size; then it."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"final content\n")
    file, key = _local(path, "a.jsonl"), key_for(PREFIX, "a.jsonl")
    assert synced_object(store.bucket, key, file) is None
    store.s3.put_object(Bucket=store.bucket.bucket, Key=key, Body=b"partial")
    assert synced_object(store.bucket, key, file) is None
    store.s3.put_object(Bucket=store.bucket.bucket, Key=key, Body=b"older content\n")
    assert synced_object(store.bucket, key, file) is None
    store.s3.put_object(Bucket=store.bucket.bucket, Key=key, Body=path.read_bytes())
    found = synced_object(store.bucket, key, file)
    assert found is not None
    assert found.etag == file_md5(path)
    assert found.size == file.size


def test_local_object_is_the_file_as_a_single_part_object(tmp_path: Path) -> None:
    """A mounted file's ETag is its MD5, with its size and mtime as LastModified (UTC)."""
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"mounted\n")
    os.utime(path, ns=(1_700_000_000_500_000_000, 1_700_000_000_500_000_000))
    obj = local_object("k/m.jsonl", _local(path, "m.jsonl"))
    assert obj.key == "k/m.jsonl"
    assert obj.etag == hashlib.md5(b"mounted\n", usedforsecurity=False).hexdigest()
    assert obj.size == 8
    assert obj.last_modified == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
