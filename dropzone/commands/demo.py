"""``dropzone demo``: the whole story in under a minute, with no cloud and no credentials.

It starts the Ark emulator on a free loopback port, makes a folder with a small dataset, runs
the real daemon on it (a ``mounted`` local watch: the file is the object) and narrates what the
ledger records as it happens. The daemon's own JSON log goes to a file in the demo folder.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dropzone import log, runtime
from dropzone.ark.client import ArkClient
from dropzone.ark.signer import Credentials
from dropzone.config import load_settings
from dropzone.daemon.build import build_daemon
from dropzone.emulator import Emulator
from dropzone.emulator.inputs import InputReader, folder_reader
from dropzone.emulator.results import folder_writer
from dropzone.jobs.results import FolderResults
from dropzone.ledger import SqliteLedger, State
from dropzone.notify.service import NotifyService
from dropzone.sources.tos import make_s3_client

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from dropzone.daemon import Daemon
    from dropzone.ledger import Entry

DEMO_KEY = Credentials("demo-access-key", "demo-secret-key")
QUEUE_S = 3.0
RUN_S = 6.0
SAMPLE = "chat-sample.jsonl"
BUCKET = "demo-bucket"
PREFIX = "dataset/"
# The folder standing in for the bucket's output side: the emulator writes results there.
STORE = "tos"
QUESTIONS = [
    "What is batch inference?",
    "Name three uses of a vector database.",
    "Translate 'good morning' into French.",
    "Summarise the plot of Hamlet in one sentence.",
    "Why is the sky blue?",
]


def sample_lines(version: int) -> str:
    lines = [
        json.dumps(
            {
                "custom_id": f"request-{i + 1}",
                "body": {
                    "messages": [{"role": "user", "content": question}],
                    "max_tokens": 256 * version,
                },
            },
            ensure_ascii=False,
        )
        for i, question in enumerate(QUESTIONS)
    ]
    return "\n".join(lines) + "\n"


def drop(folder: Path, name: str, text: str) -> None:
    """Write the way careful tools do: a temporary name, then an atomic rename."""
    partial = folder / f"{name}.part"
    partial.write_text(text, encoding="utf-8")
    partial.rename(folder / name)


def config_text(root: Path, inbox: Path, ark_url: str) -> str:
    return f"""# Written by `dropzone demo`: a mounted local folder and the local Ark emulator.
[ark]
endpoint = "{ark_url}"
max_requests_per_second = 20

[tos]
endpoint = "http://127.0.0.1:9"   # unused: in mounted mode the file is the object

[ledger]
path = {json.dumps(str(root / "ledger.sqlite3"))}

[daemon]
poll_interval_s = 1
track_interval_s = 0.5
concurrency = 2
listen = ""

[[watch]]
name = "demo"
bucket = "{BUCKET}"
prefix = "{PREFIX}"
model = {{ name = "doubao-pro-32k", version = "240615" }}
completion_window = "1d"
on_start = "submit-existing"
min_age_s = 0
local_dir = {json.dumps(str(inbox))}
local_mode = "mounted"
settle_s = 0.5
tags = {{ source = "dropzone-demo" }}
"""


@dataclass
class Narrator:
    """Prints what the ledger records, one plain sentence per change."""

    ledger: SqliteLedger
    out: TextIO
    started: float

    def __post_init__(self) -> None:
        self._seen: dict[int, tuple[State, str | None, str | None]] = {}
        self._phases: dict[str, str] = {}  # a job shared by two entries is told once

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    def look(self) -> list[Entry]:
        entries = list(self.ledger.entries())
        for entry in entries:
            now = (entry.state, entry.phase, entry.job_id)
            before = self._seen.get(entry.id)
            if before != now:
                self._seen[entry.id] = now
                self._tell(entry, before)
        return entries

    def _tell(self, entry: Entry, before: tuple[State, str | None, str | None] | None) -> None:
        name = entry.key.removeprefix(PREFIX)
        if before is None:
            self.say(f"detected   {name} (ETag {entry.etag[:8]}, {entry.size} bytes)")
        if entry.state is State.SUBMITTED and (before is None or before[0] is not State.SUBMITTED):
            self.say(
                f"submitted  {name} -> job {entry.job_id}, results in tos://{entry.bucket}/{entry.output_dir}"
            )
        elif entry.state is State.DUPLICATE and (
            before is None or before[0] is not State.DUPLICATE
        ):
            self.say(
                f"duplicate  {name} again while its job is active: the platform refused a second "
                f"job and dropzone recorded the upload against the existing job {entry.job_id}"
            )
        elif entry.state in {State.REJECTED, State.INVALID}:
            self.say(f"{entry.state.value:<10} {name}: {entry.error}")
        if entry.job_id and entry.phase and self._phases.get(entry.job_id) != entry.phase:
            self._phases[entry.job_id] = entry.phase
            self.say(f"phase      {entry.job_id}: {entry.phase}")


def _wait(narrator: Narrator, done: Callable[[list[Entry]], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(narrator.look()):
            return True
        time.sleep(0.2)
    return False


def _first(entries: list[Entry]) -> Entry | None:
    return next((e for e in entries if e.key.endswith(SAMPLE)), None)


def _story(narrator: Narrator, inbox: Path) -> bool:
    """Drop a file, drop it again while its job is active, follow the job to Completed."""
    narrator.say(f"dropping  {SAMPLE} into {inbox}")
    drop(inbox, SAMPLE, sample_lines(1))
    if not _wait(narrator, lambda es: any(e.job_id for e in es), 30):
        narrator.say("no job was submitted within 30 s: see dropzone.log in the demo folder")
        return False
    narrator.say(f"dropping  {SAMPLE} again (new content) while its job is still active")
    drop(inbox, SAMPLE, sample_lines(2))
    if not _wait(narrator, lambda es: any(e.state is State.DUPLICATE for e in es), 30):
        narrator.say("the second drop was not recorded within 30 s: see dropzone.log")
        return False

    def completed(entries: list[Entry]) -> bool:
        first = _first(entries)
        return first is not None and first.phase == "Completed"

    if not _wait(narrator, completed, QUEUE_S + RUN_S + 20):
        return False
    return _results_back(narrator, inbox)


def _results_back(narrator: Narrator, inbox: Path) -> bool:
    """The job's result file, fetched beside the dropped one."""
    folder = inbox / "results" / Path(SAMPLE).stem
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = sorted(folder.rglob("results.jsonl")) if folder.is_dir() else []
        if found:
            answers = len(found[0].read_bytes().splitlines())
            shown = found[0].relative_to(inbox)
            narrator.say(f"results    {SAMPLE} -> {shown} ({answers} answers), beside the file")
            return True
        time.sleep(0.2)
    narrator.say("the results did not come back within 20 s: see dropzone.log")
    return False


def _build(root: Path, ark: Emulator) -> tuple[Daemon, SqliteLedger, ArkClient, NotifyService]:
    config = root / "dropzone.toml"
    config.write_text(config_text(root, root / "inbox", ark.url), encoding="utf-8")
    settings = load_settings(config, {})
    ledger = SqliteLedger.open(settings.ledger.path)
    api = ArkClient(
        endpoint=settings.ark.endpoint,
        region=settings.ark.region,
        credentials=DEMO_KEY,
        max_requests_per_second=settings.ark.max_requests_per_second,
    )
    s3 = make_s3_client(
        endpoint=settings.tos.endpoint,
        region="cn-beijing",
        addressing_style="path",
        credentials=None,
    )
    # The results come back as from TOS, read from the folder the emulator writes them to.
    notices = NotifyService(
        settings, ledger=ledger, clock=runtime.utc_now, results=FolderResults(root / STORE)
    )
    daemon = build_daemon(settings, ledger=ledger, api=api, s3=s3, notices=notices)
    return daemon, ledger, api, notices


def inbox_reader(inbox: Path) -> InputReader:
    """The emulator reads a job's input where the mounted watch has it: the inbox is the
    bucket's prefix, so the counts it reports are the file's own requests."""
    read = folder_reader(inbox)

    def read_input(bucket: str, key: str) -> bytes | None:
        if bucket != BUCKET or not key.startswith(PREFIX):
            return None
        return read(".", key.removeprefix(PREFIX))

    return read_input


def demo(args: argparse.Namespace) -> int:
    out = sys.stdout
    root = Path(args.dir).resolve() if args.dir else Path(tempfile.mkdtemp(prefix="dropzone-demo-"))
    inbox = root / "inbox"
    try:
        inbox.mkdir(parents=True, exist_ok=True)
        (root / "ledger.sqlite3").unlink(missing_ok=True)
        log_file = (root / "dropzone.log").open("a", encoding="utf-8")
    except OSError as exc:
        raise runtime.UsageError(
            f"--dir {root}: cannot make the demo folder there ({exc.strerror}); "
            "give a folder you can write to, or leave out --dir for a temporary one"
        ) from exc
    log.configure("json", stream=log_file)
    started = time.monotonic()
    with Emulator(
        DEMO_KEY.access_key,
        DEMO_KEY.secret_key,
        queue_s=QUEUE_S,
        run_s=RUN_S,
        read_input=inbox_reader(inbox),
        write_output=folder_writer(root / STORE),
    ) as ark:
        print(
            f"dropzone demo: the local Ark emulator (a stand-in, no cloud) listens on {ark.url};\n"
            f"the daemon watches {inbox} (its log: {root / 'dropzone.log'});\n"
            f"results are written to {root / STORE}, standing in for the bucket",
            file=out,
            flush=True,
        )
        daemon, ledger, api, notices = _build(root, ark)
        runner = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        runner.start()
        narrator = Narrator(ledger, out, started)
        try:
            ok = _story(narrator, inbox)
            jobs = len(ark.state()["jobs"])
            narrator.say(f"the emulator holds {jobs} job for 2 drops of the same file")
            if ok and not args.quick:
                _invite(narrator, inbox)
        except KeyboardInterrupt:
            ok = True
        finally:
            daemon.stop()
            runner.join(timeout=10)
            api.close()
            notices.close()
            ledger.close()
            log_file.close()
    print("demo stopped.", file=out, flush=True)
    return 0 if ok else 1


def _invite(narrator: Narrator, inbox: Path) -> None:
    narrator.say(
        f"your turn: drop your own .jsonl files into {inbox} and watch them here; Ctrl-C stops"
    )
    while True:
        narrator.look()
        time.sleep(0.3)
