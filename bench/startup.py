"""What a command costs before it does anything: ``dropzone --help``, ``--version``, ``status``
and ``check --offline``, each a whole process started by the console script, timed from spawn
to exit (wall) and by the CPU the child used (user + system, from wait4), the commands taken
in turn so that a change of load hits them all alike. The bars are issue 17's: --help and
--version <= 0.3 s, status and check --offline <= 0.5 s (the median wall time).

    python bench/startup.py [--rounds 9] [--busy 0] [--installed VENV]

``--busy N`` starts N CPU burners (common.cpu_burners) for the whole measurement: the bars hold
on a busy machine too, where a cron-driven ``status`` competes with other work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
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

BARS_S = {"--help": 0.3, "--version": 0.3, "status": 0.5, "check --offline": 0.5}


def console_script(python: Path) -> str:
    """The ``dropzone`` a user runs: the console script beside ``python``."""
    return str(python.with_name("dropzone"))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, child CPU s) of one run, which must succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read() if process.stderr is not None else b""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {process.returncode}: {stderr.decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="runs of each command")
    parser.add_argument("--busy", type=int, default=0, help="CPU burners to run alongside")
    add_installed_option(parser)
    args = parser.parse_args()
    python = product_python(args.installed)
    sizes = {"rounds": args.rounds, "busy": args.busy, "python": python}
    header("start-up of a command (issue 17)", sizes)
    with (
        tempfile.TemporaryDirectory(prefix="dropzone-startup-") as scratch,
        cpu_burners(args.busy),
    ):
        folder = Path(scratch)
        config = write_config(
            folder / "dropzone.toml",
            ark={"endpoint": "http://127.0.0.1:9"},  # never contacted: offline commands only
            tos_endpoint="http://127.0.0.1:9",
            ledger=folder / "ledger.sqlite3",
            daemon={},
            watch={
                "name": "chat",
                "bucket": "bench-bucket",
                "prefix": "in/",
                "model": {"name": "doubao-pro-32k", "version": "240615"},
            },
        )
        env = child_env(config)
        dropzone = console_script(python)
        timed([dropzone, "ledger", "migrate"], env)  # status reads a ledger that exists
        commands = {name: [dropzone, *name.split()] for name in BARS_S}
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                wall, cpu = timed(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    rows = [("command", "wall median (s)", "wall min (s)", "CPU median (s)", "bar (s)", "")]
    for name, bar in BARS_S.items():
        wall = median(walls[name])
        rows.append(
            (
                f"dropzone {name}",
                f"{wall:.3f}",
                f"{min(walls[name]):.3f}",
                f"{median(cpus[name]):.3f}",
                f"{bar:.1f}",
                verdict(wall <= bar),
            )
        )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
