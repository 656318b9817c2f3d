"""Torture: a daemon SIGKILLed over and over under a faulty API still gives one job per file.

    python bench/torture.py [--files 300] [--kills 100] [--seed N] [--queue-s S] [--run-s S]
                            [--max-work-s S] [--once-max-wait-s S] [--stall-rate F]
                            [--stall-s S] [--ledger-loss none|wal|empty]
                            [--s3-endpoint URL] [--workdir DIR] [--json FILE]

The world: a moto S3 server on loopback (or ``--s3-endpoint``), the Ark emulator in this
process, and four watches in one config: two TOS watches (one with preflight validation, so
objects are read too), a local ``upload`` watch (dropzone puts the file into moto) and a local
``mounted`` watch (no S3 at all; the folder is polled).

The run: files are added progressively, in bursts while the daemon runs and also while it is
down; a real ``dropzone run`` child process is killed with SIGKILL and started again,
``--kills`` times. A fifth of the lives are killed while starting (0.2 to 1.5 s after the
spawn); the others once the daemon says it is ready, either 0 to 40 ms after a Create request
arrives at the emulator or at a random moment up to ``--max-work-s`` later. The emulator
meanwhile loses 10% of the answers to Creates that made a job (half as a 503, half as a
dropped connection), answers 5% of calls 429 and about 5% 500, and adds 20 ms to each call so
that kills land mid-call. Jobs are short by default (``--queue-s 0.1 --run-s 0.2``): a job has
finished long before any retry, so the platform's guard cannot hide a wrongly repeated Create;
it would make a second job, which is what the checks catch. ``--queue-s 30 --run-s 60`` runs
the other regime, where the guard answers. ``--stall-rate F --stall-s S`` turns on the
emulator's slow-Create fault: that share of Creates is carried out S seconds after it arrives (a
platform slow to commit), so that a reconciliation may look before the job exists.
``--ledger-loss wal`` deletes the ledger's write-ahead log after every kill (the commits not
yet checkpointed are lost), ``--ledger-loss empty`` replaces the ledger by an empty file: only
the platform, by the tags on its jobs, still knows what was submitted.

The end: faults off, one ``dropzone run --once``, then the checks, from the emulator's
inspection endpoint (``GET /_emulator/state``) and ``dropzone status --json``:

- every file added has exactly one job, and no other input has one;
- the ledger has one entry per file, ``submitted``, with the job ID the emulator has for it,
  and that job carries the entry's ``dropzone-input`` tag; nothing is left pending,
  submitting or waiting, nothing rejected.

It prints a summary and exits 0, or 1 with each violation and the log lines of the inputs
concerned (every life's log is kept under the work directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
import httpx
import tomli_w
from common import header

from dropzone.emulator import STATE_PATH, Emulator
from dropzone.plan import INPUT_TAG_KEY, input_tag

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "AKLTtorture"
SECRET_KEY = "torture-secret-0123456789"
MODEL = {"name": "doubao-pro-32k", "version": "240615"}
LedgerLoss = Literal["none", "wal", "empty"]
UNSETTLED = frozenset({"waiting", "pending", "submitting"})
# The share of files dropped while the daemon is down (between a kill and the next start).
WHILE_DOWN = 0.2
# Files are added during the first lives only, so the last lives finish the work under fire.
FEEDING_SHARE = 0.75
# How lives end: a share is killed while starting (0.2 s to STARTUP_KILL_MAX_S after the
# spawn: in the imports, the reconciliation at start, the folder scans); the others once the
# daemon is ready (its "daemon.ready" line), half of them 0 to 40 ms after a Create request
# reached the emulator (during its latency, or as the answer travels: the window exactly-once
# is about), half at a random moment up to --max-work-s.
STARTUP_KILLS = 0.2
STARTUP_KILL_MAX_S = 1.5
TRIGGERED_KILLS = 0.4
TRIGGER_DELAY_MAX_S = 0.04
# A daemon not ready by then is killed anyway (and counted): slow starts are not a violation.
READY_DEADLINE_S = 20.0
# Files of a life are added in bursts within this many seconds of its spawn.
FEED_WINDOW_S = 3.0
LOG_LINES_PER_INPUT = 60
READY_MARK = b'"daemon.ready"'


# --- options and the world ---------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    files: int = 300
    kills: int = 100
    seed: int = 1
    fail_rate: float = 0.05
    throttle_rate: float = 0.05
    lose_answer_rate: float = 0.1
    latency_ms: int = 20
    queue_s: float = 0.1
    run_s: float = 0.2
    max_work_s: float = 1.5
    stall_rate: float = 0.0
    stall_s: float = 0.0
    concurrency: int = 4
    once_max_wait_s: float = 300.0
    ledger_loss: LedgerLoss = "none"


@dataclass(frozen=True)
class WatchSpec:
    """One ``[[watch]]``: ``kind`` is ``tos``, ``upload`` or ``mounted``."""

    name: str
    kind: str
    bucket: str
    prefix: str
    weight: float
    local_dir: Path | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def table(self) -> dict[str, object]:
        table: dict[str, object] = {
            "name": self.name,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "model": MODEL,
            "on_start": "submit-existing",
            "min_age_s": 0,
        }
        if self.local_dir is not None:
            table.update(local_dir=str(self.local_dir), local_mode=self.kind, settle_s=0.15)
        table.update(self.extra)
        return table


@dataclass(frozen=True)
class Drop:
    """One file to add: where, under which name, with what content."""

    watch: WatchSpec
    relpath: str
    body: bytes

    @property
    def key(self) -> str:
        return self.watch.prefix + self.relpath

    @property
    def input(self) -> str:
        return f"{self.watch.bucket}/{self.key}"


@dataclass(frozen=True)
class Kill:
    """When a life ends. ``startup``: ``at_s`` after the spawn. ``timed``: ``at_s`` after the
    daemon is ready. ``triggered``: ``delay_s`` after the first Create request that arrives once
    the daemon is ready, or ``at_s`` after ready if none arrives."""

    kind: Literal["startup", "timed", "triggered"]
    at_s: float
    delay_s: float = 0.0


@dataclass(frozen=True)
class Life:
    """One run of the daemon: files added before it starts, files added during it (at
    seconds after the spawn), and how it is killed."""

    before: tuple[Drop, ...]
    during: tuple[tuple[float, Drop], ...]
    kill: Kill


def config_text(sections: Mapping[str, Mapping[str, object]], watches: Sequence[WatchSpec]) -> str:
    return tomli_w.dumps({**sections, "watch": [watch.table() for watch in watches]})


def jsonl_body(tag: str, lines: int) -> bytes:
    rows = [
        json.dumps(
            {"custom_id": f"{tag}-{i}", "body": {"messages": [{"role": "user", "content": tag}]}},
            ensure_ascii=False,
        )
        for i in range(lines)
    ]
    return ("\n".join(rows) + "\n").encode()


def relpath_for(number: int) -> str:
    """Plain, nested, and spaced CJK names, in turn."""
    shape = number % 3
    if shape == 0:
        return f"f{number:04d}.jsonl"
    if shape == 1:
        return f"team-{number % 5}/part {number:04d}.jsonl"
    return f"数据 {number:04d}.jsonl"


def plan_drops(rng: random.Random, watches: Sequence[WatchSpec], files: int) -> list[Drop]:
    weights = [w.weight for w in watches]
    chosen = rng.choices(watches, weights=weights, k=files)
    return [
        Drop(watch, relpath_for(n), jsonl_body(f"{watch.name}-{n}", rng.randint(1, 5)))
        for n, watch in enumerate(chosen)
    ]


def burst_times(rng: random.Random) -> list[float]:
    """When files are added during a life: in one to three bursts."""
    return sorted(rng.uniform(0.0, FEED_WINDOW_S) for _ in range(rng.randint(1, 3)))


def plan_kill(rng: random.Random, options: Options) -> Kill:
    draw = rng.random()
    if draw < STARTUP_KILLS:
        return Kill("startup", rng.uniform(0.2, STARTUP_KILL_MAX_S))
    at_s = rng.uniform(0.0, options.max_work_s)
    if draw < STARTUP_KILLS + TRIGGERED_KILLS:
        return Kill("triggered", at_s, rng.uniform(0.0, TRIGGER_DELAY_MAX_S))
    return Kill("timed", at_s)


def plan_lives(rng: random.Random, drops: Sequence[Drop], options: Options) -> list[Life]:
    """Each life's kill, and the files added before and during it."""
    kills = [plan_kill(rng, options) for _ in range(options.kills)]
    bursts = [burst_times(rng) for _ in kills]
    feeding = max(1, round(options.kills * FEEDING_SHARE))
    before: list[list[Drop]] = [[] for _ in kills]
    during: list[list[tuple[float, Drop]]] = [[] for _ in kills]
    for drop in drops:
        life = rng.randrange(feeding)
        if rng.random() < WHILE_DOWN:
            before[life].append(drop)
        else:
            during[life].append((rng.choice(bursts[life]), drop))
    return [
        Life(tuple(before[i]), tuple(sorted(during[i], key=lambda item: item[0])), kill)
        for i, kill in enumerate(kills)
    ]


class World:
    """The buckets, folders, emulator and config of one torture run."""

    def __init__(
        self,
        workdir: Path,
        s3_endpoint: str,
        emulator: Emulator,
        create_arrived: threading.Event,
        options: Options,
    ) -> None:
        self.workdir = workdir
        self.options = options
        self.s3_endpoint = s3_endpoint
        self.emulator = emulator
        # Set by the emulator as each Create request arrives (before its latency): the kills
        # that follow a Create wait on it.
        self.create_arrived = create_arrived
        self.s3: S3Client = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        stem = f"torture-{options.seed}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        main, checked = f"{stem}-main", f"{stem}-checked"
        for bucket in (main, checked):
            self.s3.create_bucket(Bucket=bucket)
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ledger_path = workdir / "state" / "ledger.sqlite3"
        self.watches = (
            WatchSpec("tos-main", "tos", main, "batch-inference-job/dataset/", 0.35),
            WatchSpec("tos-checked", "tos", checked, "in/", 0.15, extra={"validate": True}),
            WatchSpec("local-upload", "upload", main, "uploads/", 0.25, workdir / "upload"),
            WatchSpec("local-mounted", "mounted", "mounted-share", "mnt/", 0.25, workdir / "mnt"),
        )
        for watch in self.watches:
            if watch.local_dir is not None:
                watch.local_dir.mkdir(parents=True, exist_ok=True)

    def write_config(self, options: Options) -> Path:
        sections: dict[str, dict[str, object]] = {
            "ark": {
                "endpoint": self.emulator.url,
                "max_requests_per_second": 200,
                "timeout_s": 5,
            },
            "tos": {
                "endpoint": self.s3_endpoint,
                "region": "us-east-1",
                "addressing_style": "path",
            },
            "ledger": {"path": str(self.ledger_path)},
            "daemon": {
                "poll_interval_s": 0.3,
                "track_interval_s": 0.5,
                "concurrency": options.concurrency,
                "listen": "",
                "once_max_wait_s": options.once_max_wait_s,
            },
        }
        path = self.workdir / "dropzone.toml"
        path.write_text(config_text(sections, self.watches), encoding="utf-8")
        return path

    def drop(self, drop: Drop) -> None:
        """Add the file: an object for a TOS watch, else a file renamed into its folder."""
        folder = drop.watch.local_dir
        if folder is None:
            self.s3.put_object(Bucket=drop.watch.bucket, Key=drop.key, Body=drop.body)
            return
        target = folder / drop.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written under an ignored name and renamed into place, as careful writers do: the
        # file appears complete, once (a torn write would be a second version, legitimately).
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(drop.body)
        temporary.replace(target)


# --- the daemon's lives ------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLC", "AWS_", "DROPZONE_"))}
    env.update(VOLCENGINE_ACCESS_KEY=ACCESS_KEY, VOLCENGINE_SECRET_KEY=SECRET_KEY)
    return env


def dropzone_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dropzone", args[0], "-c", str(config), *args[1:]]


@dataclass
class Tally:
    kills: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    life_s: list[float] = field(default_factory=list)
    ready_after_s: list[float] = field(default_factory=list)
    kills_mid_call: int = 0
    stranded: int = 0
    first_duplicate_life: int | None = None
    early_exits: list[str] = field(default_factory=list)
    ledger_losses: int = 0


def lose_ledger(ledger_path: Path, loss: LedgerLoss) -> int:
    """What an operator's or a disk's mistake leaves between two lives: the write-ahead log
    deleted (the commits it held are gone), or the ledger replaced by an empty one. The
    platform, holding every job's tag, is then the only record; returns 1 if anything was lost."""
    if loss == "none":
        return 0
    lost = 0
    for suffix in ("-wal", "-shm"):
        sidecar = ledger_path.with_name(ledger_path.name + suffix)
        if sidecar.exists():
            sidecar.unlink()
            lost = 1
    if loss == "empty" and ledger_path.exists():
        ledger_path.unlink()
        ledger_path.touch()
        lost = 1
    return lost


def submitting_now(ledger_path: Path) -> int:
    """Entries left in ``submitting`` (read while no daemon runs): a kill landed mid-call."""
    if not ledger_path.exists():
        return 0
    conn = sqlite3.connect(f"{ledger_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT count(*) FROM entries WHERE state = 'submitting'").fetchone()
    except sqlite3.OperationalError:
        return 0  # killed before the schema was made
    finally:
        conn.close()
    return int(row[0])


def duplicated_inputs(state: Mapping[str, Any]) -> dict[str, list[str]]:
    jobs = jobs_by_input(state)
    return {name: ids for name, ids in jobs.items() if len(ids) > 1}


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


class Feeder(threading.Thread):
    """Adds a life's files at their moments, beside the main thread that waits to kill; once
    told to hurry (the daemon is dead), adds the rest at once."""

    def __init__(self, world: World, started: float, during: Sequence[tuple[float, Drop]]) -> None:
        super().__init__(name="torture-feeder", daemon=True)
        self._world = world
        self._spawned_at = started
        self._during = during
        self.hurry = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            for offset, drop in self._during:
                self.hurry.wait(max(0.0, self._spawned_at + offset - time.monotonic()))
                self._world.drop(drop)
        except Exception as exc:  # the main thread raises it: a file not added is no finding
            self.error = exc

    def finish(self) -> None:
        """Add what is left now, and wait for it."""
        self.hurry.set()
        self.join()


def wait_ready(log_path: Path, process: subprocess.Popen[bytes], deadline: float) -> float | None:
    """Until the daemon logs "daemon.ready" (then when), exits, or the deadline passes."""
    offset = 0
    while time.monotonic() < deadline and process.poll() is None:
        with log_path.open("rb") as log:
            log.seek(offset)
            chunk = log.read()
        if READY_MARK in chunk:
            return time.monotonic()
        # Read again from the last whole line: the mark may be half written.
        offset += chunk.rfind(b"\n") + 1
        time.sleep(0.01)
    return None


def wait_for_kill(
    kill: Kill,
    started: float,
    log_path: Path,
    process: subprocess.Popen[bytes],
    arrived: threading.Event,
    tally: Tally,
) -> str:
    """Until the moment to kill; returns what the kill was (a figure of the summary)."""
    if kill.kind == "startup":
        sleep_until(started + kill.at_s)
        return "while starting"
    ready = wait_ready(log_path, process, started + READY_DEADLINE_S)
    if ready is None:
        return "not ready in time"
    tally.ready_after_s.append(ready - started)
    deadline = ready + kill.at_s
    if kill.kind == "triggered":
        arrived.clear()
        if arrived.wait(kill.at_s):
            time.sleep(kill.delay_s)
            return "just after a Create"
    sleep_until(deadline)
    return "at work"


def live(world: World, config: Path, life: Life, number: int, tally: Tally) -> None:
    """One life: drop what comes before, start the daemon, drop the rest, SIGKILL it."""
    for drop in life.before:
        world.drop(drop)
    log_path = world.logs / f"life-{number:03d}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            dropzone_command(config, "run"),
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        feeder = Feeder(world, started, life.during)
        try:
            feeder.start()
            moment = wait_for_kill(
                life.kill, started, log_path, process, world.create_arrived, tally
            )
            tally.kinds[moment] += 1
            tally.life_s.append(time.monotonic() - started)
            if process.poll() is not None:
                tally.early_exits.append(f"life {number}: exited by itself ({process.returncode})")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        feeder.finish()  # what it still had to add is added while the daemon is down
    if feeder.error is not None:
        raise RuntimeError(f"life {number}: adding a file failed") from feeder.error
    tally.kills += 1
    left = submitting_now(world.ledger_path)
    tally.stranded += left
    tally.kills_mid_call += int(left > 0)
    tally.ledger_losses += lose_ledger(world.ledger_path, world.options.ledger_loss)
    if tally.first_duplicate_life is None and duplicated_inputs(world.emulator.state()):
        tally.first_duplicate_life = number


# --- the end state and its checks --------------------------------------------------------------


def jobs_by_input(state: Mapping[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for job in state["jobs"]:
        location = job["InputFileTosLocation"]
        name = f"{location['BucketName']}/{location['ObjectKey']}"
        found.setdefault(name, []).append(job["Id"])
    return found


def job_tags(state: Mapping[str, Any]) -> dict[str, str | None]:
    """Each job's ``dropzone-input`` tag."""
    tags: dict[str, str | None] = {}
    for job in state["jobs"]:
        values = [t["Value"] for t in job.get("Tags", []) if t["Key"] == INPUT_TAG_KEY]
        tags[job["Id"]] = values[0] if values else None
    return tags


def check_jobs(expected: Sequence[str], jobs: Mapping[str, Sequence[str]]) -> list[str]:
    """Every expected input has exactly one job; no other input has any."""
    problems = [
        f"{name}: {len(jobs.get(name, []))} jobs {list(jobs.get(name, []))}, expected exactly 1"
        for name in expected
        if len(jobs.get(name, [])) != 1
    ]
    wanted = set(expected)
    problems += [
        f"{name}: unexpected input with jobs {list(ids)}"
        for name, ids in jobs.items()
        if name not in wanted
    ]
    return problems


def check_row(
    row: Mapping[str, Any], jobs: Mapping[str, Sequence[str]], tags: Mapping[str, str | None]
) -> str | None:
    """One ledger entry: submitted, with the input's one job, which carries the entry's tag."""
    name = f"{row['bucket']}/{row['key']}"
    where = f"{name} (watch {row['watch']}, etag {row['etag']})"
    if row["state"] != "submitted":
        stuck = " (stuck)" if row["state"] in UNSETTLED else ""
        return f"{where}: ledger state {row['state']}{stuck}, error {row.get('error')!r}"
    ids = list(jobs.get(name, []))
    if ids != [row["job_id"]]:
        return f"{where}: ledger job {row['job_id']}, emulator jobs {ids}"
    tag = input_tag(row["bucket"], row["key"], row["etag"])
    if tags.get(row["job_id"]) != tag:
        return f"{where}: job {row['job_id']} has tag {tags.get(row['job_id'])}, the entry {tag}"
    return None


def check_ledger(
    expected: Sequence[str], rows: Sequence[Mapping[str, Any]], state: Mapping[str, Any]
) -> list[str]:
    """One entry per expected input (and none other), each agreeing with the emulator."""
    jobs, tags = jobs_by_input(state), job_tags(state)
    per_input = Counter(f"{row['bucket']}/{row['key']}" for row in rows)
    problems = [
        f"{name}: {per_input[name]} ledger entries, expected 1"
        for name in expected
        if per_input[name] != 1
    ]
    wanted = set(expected)
    problems += [f"{name}: unexpected ledger entry" for name in per_input if name not in wanted]
    problems += [p for row in rows if (p := check_row(row, jobs, tags)) is not None]
    return problems


def violations(
    expected: Sequence[str], state: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Everything that breaks "one job per file, and the ledger says which"."""
    return check_jobs(expected, jobs_by_input(state)) + check_ledger(expected, rows, state)


def inspection_state(emulator: Emulator) -> dict[str, Any]:
    """The emulator's inspection endpoint, over HTTP as any tool would read it."""
    answer = httpx.get(emulator.url + STATE_PATH, timeout=30)
    answer.raise_for_status()
    state: dict[str, Any] = answer.json()
    return state


def ledger_rows(config: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        dropzone_command(config, "status", "--json"),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dropzone status --json exited {done.returncode}: {done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def final_run(world: World, config: Path, options: Options) -> int:
    """Faults off, then one ``run --once``; its exit code."""
    world.emulator.set_faults(
        fail_rate=0.0, throttle_rate=0.0, lose_answer_rate=0.0, slow_create_rate=0.0
    )
    with (world.logs / "final-once.log").open("wb") as log:
        done = subprocess.run(
            dropzone_command(config, "run", "--once"),
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=options.once_max_wait_s + 120,
            check=False,
        )
    return done.returncode


# --- logs: figures and diagnosis ---------------------------------------------------------------


def log_events(logs: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, event) for each JSON line of every life's log, in order."""
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield path.name, json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by SIGKILL


def event_counts(logs: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for _, event in log_events(logs):
        name = str(event.get("event"))
        if name == "job.reconciled":
            name += f"[{event.get('found_by') or 'not created'}]"
        counts[name] += 1
    wanted = ("job.", "worker.", "track.failed", "poll.failed", "local.", "object.invalid")
    return {name: n for name, n in sorted(counts.items()) if name.startswith(wanted)}


def log_lines_for(logs: Path, inputs: Sequence[str]) -> dict[str, list[str]]:
    """The log events that name each input (by bucket and key), prefixed by the life's file."""
    wanted = set(inputs)
    found: dict[str, list[str]] = {name: [] for name in inputs}
    for source, event in log_events(logs):
        name = f"{event.get('bucket')}/{event.get('key')}"
        if name in wanted and len(found[name]) < LOG_LINES_PER_INPUT:
            found[name].append(f"{source}: {json.dumps(event, ensure_ascii=False)}")
    return found


def problem_inputs(problems: Sequence[str], expected: Sequence[str]) -> list[str]:
    """The inputs the problems name (each problem starts with its input's name)."""
    return [
        name for name in expected if any(p.startswith((name + ":", name + " (")) for p in problems)
    ]


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Report:
    options: dict[str, Any]
    workdir: str
    files: int = 0
    kills: int = 0
    kill_moments: dict[str, int] = field(default_factory=dict)
    mean_life_s: float = 0.0
    mean_ready_after_s: float = 0.0
    kills_mid_call: int = 0
    stranded_after_kills: int = 0
    ledger_losses: int = 0
    create_calls: int = 0
    jobs: int = 0
    lost_answers: int = 0
    stalled_creates: int = 0
    duplicates: int = 0
    first_duplicate_life: int | None = None
    final_exit: int | None = None
    seconds: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    log_lines: dict[str, list[str]] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)
    jobs_by_input: dict[str, list[str]] = field(default_factory=dict)
    job_tags: dict[str, str | None] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        options = self.options
        lines = [
            (
                f"seed {options['seed']}; jobs queued {options['queue_s']} s, running "
                f"{options['run_s']} s; faults: {options['lose_answer_rate']:.0%} of Create "
                f"answers lost, {options['fail_rate']:.0%} 500s, {options['throttle_rate']:.0%} "
                f"429s, {options['latency_ms']} ms latency"
                + (
                    f"; {options['stall_rate']:.0%} of Creates carried out {options['stall_s']} s"
                    f" late ({self.stalled_creates})"
                    if options["stall_rate"]
                    else ""
                )
            ),
            (
                f"files {self.files}, kills {self.kills} ("
                + ", ".join(f"{n} {k}" for k, n in sorted(self.kill_moments.items()))
                + f"); {self.kills_mid_call} left entries submitting, "
                f"{self.stranded_after_kills} in all; lives {self.mean_life_s:.2f} s on "
                f"average, ready {self.mean_ready_after_s:.2f} s after the spawn"
                + (
                    f"; ledger lost ({options['ledger_loss']}) after {self.ledger_losses} kills"
                    if options["ledger_loss"] != "none"
                    else ""
                )
            ),
            (
                f"Create calls {self.create_calls}, jobs {self.jobs}, lost answers "
                f"{self.lost_answers}, inputs with more than one job {self.duplicates}"
            ),
            (
                f"final run --once exit {self.final_exit}; the whole run took "
                f"{self.seconds:.1f} s; work dir {self.workdir}"
            ),
            "events: " + ", ".join(f"{k} {v}" for k, v in self.events.items()),
        ]
        if self.violations:
            lines.append(f"VIOLATIONS ({len(self.violations)}):")
            if self.first_duplicate_life is not None:
                first = self.first_duplicate_life
                lines.append(f"  (a second job for an input was first seen after life {first})")
            lines += [f"  {v}" for v in self.violations]
            for name, found in self.log_lines.items():
                lines.append(f"log lines for {name}:")
                lines += [f"    {line}" for line in found]
        else:
            lines.append("OK: every file has exactly one job, and the ledger agrees")
        return "\n".join(lines)


def torture(options: Options, workdir: Path, s3_endpoint: str) -> Report:
    started = time.monotonic()
    rng = random.Random(options.seed)  # a reproducible schedule
    report = Report(options=asdict(options), workdir=str(workdir))
    create_arrived = threading.Event()
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        queue_s=options.queue_s,
        run_s=options.run_s,
        fail_rate=options.fail_rate,
        throttle_rate=options.throttle_rate,
        lose_answer_rate=options.lose_answer_rate,
        latency_ms=options.latency_ms,
        slow_create_rate=options.stall_rate,
        slow_create_s=options.stall_s,
        seed=options.seed,
        on_create_received=create_arrived.set,
    ) as emulator:
        world = World(workdir, s3_endpoint, emulator, create_arrived, options)
        config = world.write_config(options)
        drops = plan_drops(rng, world.watches, options.files)
        tally = Tally()
        for number, life in enumerate(plan_lives(rng, drops, options)):
            live(world, config, life, number, tally)
        report.final_exit = final_run(world, config, options)
        state = inspection_state(emulator)
        rows = ledger_rows(config)
    report.expected = [drop.input for drop in drops]
    report.jobs_by_input = jobs_by_input(state)
    report.job_tags = job_tags(state)
    report.ledger = rows
    fill_figures(report, tally, state)
    report.violations = tally.early_exits + violations(report.expected, state, rows)
    if report.final_exit != 0:
        report.violations.append(f"the final run --once exited {report.final_exit}")
    report.log_lines = log_lines_for(world.logs, problem_inputs(report.violations, report.expected))
    report.events = event_counts(world.logs)
    report.seconds = time.monotonic() - started
    return report


def fill_figures(report: Report, tally: Tally, state: Mapping[str, Any]) -> None:
    report.files = len(report.expected)
    report.kills = tally.kills
    report.kill_moments = dict(tally.kinds)
    report.mean_life_s = statistics.fmean(tally.life_s or [0.0])
    report.mean_ready_after_s = statistics.fmean(tally.ready_after_s or [0.0])
    report.kills_mid_call = tally.kills_mid_call
    report.stranded_after_kills = tally.stranded
    report.ledger_losses = tally.ledger_losses
    report.first_duplicate_life = tally.first_duplicate_life
    report.create_calls = sum(state["create_calls"].values())
    report.lost_answers = state["lost_answers"]
    report.stalled_creates = state["slowed_creates"]
    report.jobs = len(state["jobs"])
    report.duplicates = len(duplicated_inputs(state))


def start_moto(stack: ExitStack) -> str:
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only without --s3-endpoint

    # One line per S3 request would bury the summary.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stack.callback(server.stop)
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--files", type=int, default=defaults.files, help="files to add (default: %(default)s)")
    add("--kills", type=int, default=defaults.kills, help="SIGKILLs (default: %(default)s)")
    add("--seed", type=int, default=defaults.seed, help="seed of the schedule and the faults")
    add("--queue-s", type=float, default=defaults.queue_s, help="seconds a job stays Queued")
    add("--run-s", type=float, default=defaults.run_s, help="seconds a job stays Running")
    add("--max-work-s", type=float, default=defaults.max_work_s, help="latest kill after ready")
    add("--once-max-wait-s", type=float, default=defaults.once_max_wait_s)
    add("--stall-rate", type=float, default=0.0, help="share of Creates the platform is slow on")
    add("--stall-s", type=float, default=0.0, help="how long such a Create waits (seconds)")
    add(
        "--ledger-loss",
        choices=("none", "wal", "empty"),
        default="none",
        help="after each kill, delete the ledger's write-ahead log (wal) or replace the ledger "
        "by an empty file (empty): the platform's tags must still keep one job per file",
    )
    add("--s3-endpoint", help="an S3 server to use (default: a moto server started here)")
    add("--workdir", type=Path, help="where the ledger, folders and logs go (default: a temp dir)")
    add("--json", type=Path, dest="json_path", help="also write the full report as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    header("crash torture", {"files": args.files, "kills": args.kills, "seed": args.seed})
    options = Options(
        files=args.files,
        kills=args.kills,
        seed=args.seed,
        queue_s=args.queue_s,
        run_s=args.run_s,
        max_work_s=args.max_work_s,
        stall_rate=args.stall_rate,
        stall_s=args.stall_s,
        once_max_wait_s=args.once_max_wait_s,
        ledger_loss=args.ledger_loss,
    )
    with ExitStack() as stack:
        endpoint = args.s3_endpoint or start_moto(stack)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dropzone-torture-"))
        report = torture(options, workdir, endpoint)
    print(report.summary())
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(asdict(report), ensure_ascii=False, indent=1))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
