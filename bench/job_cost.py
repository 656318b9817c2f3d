"""What a job costs: ``dropzone run --once`` against a bare concurrent loop, whole processes.

    python bench/job_cost.py [--jobs 500,2000] [--concurrency 8] [--latency-ms 20]
                             [--repeats 3] [--busy 0] [--installed VENV] [--wrap CMD]

Each side is a whole process started fresh, timed from spawn to exit, and charged the CPU it
used (user + system, from ``wait4``; the system part is printed too), which a busy machine
distorts far less than wall time:

- **bare**: ``bench/bare_loop.py``, which imports only what it uses: boto3 paginates the prefix
  (parsing timestamps as dropzone's client does), then ``--concurrency`` threads share one
  ``httpx.Client``, each signing a Create body with ``dropzone.ark.signer`` and POSTing it;
- **dropzone**: the console script, ``dropzone run --once`` with a bucket watch on the prefix
  (``on_start = "submit-existing"``, a fresh SQLite ledger on disk, ``concurrency`` workers, its
  JSON log to a file), product defaults otherwise.

The S3 server is moto in a child process, filled before the runs; the Ark emulator runs in
this script's process with ``--latency-ms`` on every call, a fresh one for every run (its job
book grows with each Create), and stamps when the first Create of a run arrives: spawn to
first Create is what a cron-started run waits before it does any work. Every run must end
with exactly one Create per object.

The bars (issue 17): dropzone's CPU per job <= 1.2x the bare loop's; its throughput (jobs over
the whole process's wall time) >= 0.95x the bare loop's at each size; its spawn-to-first-Create
within 0.3 s of the bare loop's. Ratios are medians of the paired runs (each dropzone run
against the bare run beside it), the order alternating. ``--busy N`` starts N CPU burners (a
Python busy loop each) for the whole measurement: the machine the figures must hold on too.

Each run's voluntary context switches (``wait4``) are printed a job: a thread gives up the CPU
for a lock, the GIL, a socket or the disk, and each costs a wake-up. ``--wrap CMD`` runs each
child under a command (``{side}`` in it is ``bare`` or ``dropzone``), for a profiler::

    python bench/job_cost.py --jobs 2000 --repeats 1 \\
        --wrap 'perf record -q -F 1999 --call-graph dwarf,8192 -o /tmp/cpu-{side}.data --'
    python bench/job_cost.py --jobs 2000 --repeats 1 --wrap 'strace -f -c -o /tmp/st-{side}.txt'

With more than one size, the median CPU of each size is split by a straight line through them
into what a run costs once (imports, configuration, the ledger's opening, shutdown) and what a
job adds: which of the two a CPU ratio at some size comes from. The split has no bar.

Both sides run as installed code runs: dropzone's modules compiled to bytecode first (a
development checkout under PYTHONDONTWRITEBYTECODE compiled them at every start), or, with
``--installed VENV``, in a virtual environment holding dropzone as ``pip install .`` installs it,
without the dev extras (``common.product_python``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import (
    ACCESS_KEY,
    MODEL,
    PREFIX,
    SECRET_KEY,
    MotoS3,
    add_installed_option,
    child_env,
    cpu_burners,
    header,
    median,
    product_python,
    table,
    verdict,
    write_config,
)

from dropzone.emulator import Emulator

if TYPE_CHECKING:
    from collections.abc import Sequence

BUCKET = "bench-bucket"
CPU_BAR = 1.2
THROUGHPUT_BAR = 0.95
FIRST_CREATE_SLACK_S = 0.3


# --- one run of either side ---------------------------------------------------------------


class Run:
    """One whole-process run: wall and CPU seconds (the kernel's share of them apart: fsync,
    writes, futex waits), the times it gave up the CPU to wait (voluntary context switches:
    a lock, the GIL, a socket, the disk), and spawn to the first Create."""

    def __init__(
        self, wall_s: float, cpu_s: float, system_s: float, switches: int, first_create_s: float
    ) -> None:
        self.wall_s = wall_s
        self.cpu_s = cpu_s
        self.system_s = system_s
        self.switches = switches
        self.first_create_s = first_create_s


def timed_child(argv: list[str], env: dict[str, str], log: Path, first: list[float]) -> Run:
    """Run ``argv`` to its end; ``first`` receives the monotonic time of the first Create."""
    with log.open("wb") as output:
        started = time.monotonic()
        child = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(argv[:4])} exited {child.returncode}:\n{tail}")
    if not first:
        raise SystemExit(f"{' '.join(argv[:4])} sent no Create")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_stime, usage.ru_nvcsw, first[0] - started)


def one_run(
    side: str, *, jobs: int, args: argparse.Namespace, s3_endpoint: str, scratch: Path
) -> Run:
    first: list[float] = []

    def stamp() -> None:
        if not first:
            first.append(time.monotonic())

    prefix = f"{PREFIX}{jobs}/"
    with Emulator(
        ACCESS_KEY,
        SECRET_KEY,
        latency_ms=args.latency_ms,
        queue_s=3600,
        run_s=3600,
        on_create_received=stamp,
    ) as emulator:
        if side == "bare":
            argv = [
                str(args.python),
                str(Path(__file__).with_name("bare_loop.py")),
                s3_endpoint,
                emulator.url,
                BUCKET,
                prefix,
                str(args.concurrency),
            ]
            env = dict(os.environ)
        else:
            ledger = scratch / "ledger.sqlite3"
            for stale in scratch.glob("ledger.sqlite3*"):
                stale.unlink()
            config = write_config(
                scratch / "dropzone.toml",
                ark={
                    "endpoint": emulator.url,
                    "max_requests_per_second": 100_000,
                    "timeout_s": 30,
                },
                tos_endpoint=s3_endpoint,
                ledger=ledger,
                daemon={"concurrency": args.concurrency, "listen": "", "once_max_wait_s": 600},
                watch={
                    "name": "chat",
                    "bucket": BUCKET,
                    "prefix": prefix,
                    "model": MODEL,
                    "min_age_s": 0,
                    "on_start": "submit-existing",
                },
            )
            argv = [
                str(args.python.with_name("dropzone")),
                "run",
                "--once",
                "--log-format",
                "json",
            ]
            env = child_env(config)
        if args.wrap:
            argv = [*shlex.split(args.wrap.replace("{side}", side)), *argv]
        run = timed_child(argv, env, scratch / f"{side}.log", first)
        creates = sum(emulator.state()["create_calls"].values())
    if creates != jobs:
        raise SystemExit(f"{side}: the emulator received {creates} Creates for {jobs} objects")
    return run


# --- the report -------------------------------------------------------------------------


def report(jobs: int, runs: dict[str, list[Run]]) -> list[tuple[str, ...]]:
    bare, dropzone = runs["bare"], runs["dropzone"]
    cpu_ratio = median([d.cpu_s / b.cpu_s for b, d in zip(bare, dropzone, strict=True)])
    throughput_ratio = median([b.wall_s / d.wall_s for b, d in zip(bare, dropzone, strict=True)])
    first_gap = median(
        [d.first_create_s - b.first_create_s for b, d in zip(bare, dropzone, strict=True)]
    )
    rows: list[tuple[str, ...]] = []
    for side, label in (("bare", "bare loop"), ("dropzone", "dropzone run --once")):
        side_runs = runs[side]
        rows.append(
            (
                f"{jobs} {label}",
                f"{jobs / median([r.wall_s for r in side_runs]):.1f}",
                f"{median([r.wall_s for r in side_runs]):.3f}",
                f"{median([r.cpu_s for r in side_runs]):.3f}",
                f"{1000 * median([r.cpu_s for r in side_runs]) / jobs:.2f}",
                f"{median([r.system_s for r in side_runs]):.3f}",
                f"{median([r.switches for r in side_runs]) / jobs:.1f}",
                f"{median([r.first_create_s for r in side_runs]):.3f}",
                " ".join(f"{jobs / r.wall_s:.0f}" for r in side_runs),
            )
        )
    throughput = f"throughput {throughput_ratio:.3f}x (>= {THROUGHPUT_BAR})"
    cpu = f"CPU {cpu_ratio:.3f}x (<= {CPU_BAR})"
    first = f"{first_gap:+.3f} s (<= +{FIRST_CREATE_SLACK_S})"
    rows.append(
        (
            f"{jobs} ratios",
            f"{throughput} {verdict(throughput_ratio >= THROUGHPUT_BAR)}",
            "",
            f"{cpu} {verdict(cpu_ratio <= CPU_BAR)}",
            "",
            "",
            "",
            f"{first} {verdict(first_gap <= FIRST_CREATE_SLACK_S)}",
            "",
        )
    )
    return rows


def cost_split(cpu_by_size: dict[int, float]) -> tuple[float, float]:
    """The least-squares line through (jobs, CPU seconds): the CPU a run costs whatever its
    size (imports, configuration, the ledger's opening, shutdown) and the CPU each job adds."""
    sizes = list(cpu_by_size)
    mean_jobs = sum(sizes) / len(sizes)
    mean_cpu = sum(cpu_by_size.values()) / len(sizes)
    spread = sum((jobs - mean_jobs) ** 2 for jobs in sizes)
    per_job = sum((jobs - mean_jobs) * (cpu - mean_cpu) for jobs, cpu in cpu_by_size.items())
    per_job /= spread
    return mean_cpu - per_job * mean_jobs, per_job


def split_rows(cpu_by_side: dict[str, dict[int, float]]) -> list[tuple[str, ...]]:
    """Where the CPU ratio comes from: the cost every run pays once, and the cost of a job
    (no bar of its own; the CPU bar is over whole runs)."""
    (bare_fixed, bare_job), (dz_fixed, dz_job) = (
        cost_split(cpu_by_side[side]) for side in ("bare", "dropzone")
    )
    sizes = ",".join(str(jobs) for jobs in cpu_by_side["bare"])
    return [
        ("CPU split", f"over {sizes} jobs", "", "", "", "", "", "", ""),
        ("  bare loop", "", "", f"{bare_fixed:.3f} once", f"{1000 * bare_job:.3f}", *[""] * 4),
        ("  dropzone", "", "", f"{dz_fixed:.3f} once", f"{1000 * dz_job:.3f}", *[""] * 4),
        (
            "  dropzone/bare",
            "",
            "",
            f"{dz_fixed - bare_fixed:+.3f} s once",
            f"{dz_job / bare_job:.3f}x a job",
            *[""] * 4,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="500,2000", help="object counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="CPU burners to run alongside")
    parser.add_argument(
        "--wrap",
        default="",
        help="a command each child runs under, {side} standing for bare or dropzone (a "
        "profiler: its figures are then the profiler's, not the product's)",
    )
    add_installed_option(parser)
    args = parser.parse_args(argv)
    args.python = product_python(args.installed)
    sizes = [int(size) for size in args.jobs.split(",")]
    header("what a job costs, whole processes (issue 17)", vars(args))
    rows: list[tuple[str, ...]] = [
        (
            "run",
            "jobs/s",
            "wall (s)",
            "CPU (s)",
            "CPU/job (ms)",
            "of it system (s)",
            "switches/job",
            "to 1st Create (s)",
            "runs",
        )
    ]
    with (
        MotoS3({BUCKET: 0}, prefixed={f"{PREFIX}{size}/": size for size in sizes}) as moto,
        tempfile.TemporaryDirectory(prefix="dropzone-job-cost-") as folder,
        cpu_burners(args.busy),
    ):
        scratch = Path(folder)
        cpu_by_side: dict[str, dict[int, float]] = {"bare": {}, "dropzone": {}}
        for jobs in sizes:
            runs: dict[str, list[Run]] = {"bare": [], "dropzone": []}
            for repeat in range(args.repeats):
                order = ("bare", "dropzone") if repeat % 2 == 0 else ("dropzone", "bare")
                for side in order:
                    run = one_run(
                        side, jobs=jobs, args=args, s3_endpoint=moto.endpoint, scratch=scratch
                    )
                    runs[side].append(run)
                    print(
                        f"  {jobs} run {repeat + 1} {side:8} wall {run.wall_s:.3f} s "
                        f"CPU {run.cpu_s:.3f} s (system {run.system_s:.3f}) "
                        f"switches {run.switches} "
                        f"first Create {run.first_create_s:.3f} s",
                        flush=True,
                    )
            rows += report(jobs, runs)
            for side, side_runs in runs.items():
                cpu_by_side[side][jobs] = median([run.cpu_s for run in side_runs])
    if len(cpu_by_side["bare"]) > 1:
        rows += split_rows(cpu_by_side)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
