"""Each benchmark in bench/ runs end to end at tiny sizes and prints its figures.

Nothing here asserts speed (the figures of a tiny run on a shared machine mean nothing): only
that every benchmark still drives the product's current interfaces, finishes, exits 0 and
reports what its README promises (figures, a ratio, a verdict).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
VERDICT = re.compile(r"\b(PASS|FAIL)\b")

pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, timeout: float = 110) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "machine:" in done.stdout
    return done.stdout


def test_poll_overhead_reports_both_parts() -> None:
    out = run_bench(
        "poll_overhead.py", "--objects", "300", "--repeats", "1", "--diff-keys", "2500",
        "--page-size", "500",
    )  # fmt: skip
    for figure in (
        "bare boto3 listing, median",
        "dropzone poll, median",
        "median of paired ratios",
        "dropzone's own work (pages listed beforehand)",
        "CPU (this thread), medians",
        "diff rate",
    ):
        assert figure in out
    for server in ("moto", "synthetic"):
        verdict = rf"poll overhead \({server}\)\s+\d+\.\d+x \(goal <= 1\.10x\): (PASS|FAIL)"
        assert re.search(verdict, out)
    cpu = r"CPU, paired, like for like\s+\d+\.\d+x \(goal <= 1\.10x\): (PASS|FAIL)"
    assert len(re.findall(cpu, out)) == 2  # one a server
    assert re.search(r"ledger diff\s+(PASS|FAIL)", out)
    assert re.search(r"first listing\s+(PASS|FAIL)", out)
    assert re.search(r"first listing rate\s+[\d,]+ keys/s, [\d,]+ keys/CPU s", out)
    assert "2,500 entries" in out


def test_submit_throughput_reports_every_path_and_the_cap() -> None:
    out = run_bench(
        "submit_throughput.py", "--jobs", "24", "--repeats", "1", "--latency-ms", "5",
        "--cap-qps", "20", "--cap-calls", "15",
    )  # fmt: skip
    for label in ("bare signed httpx loop", "bucket watch", "no lookup", "workers only"):
        assert label in out
    assert re.search(r"ratio dz-bucket\s+\d+\.\d+x \(goal >= 0\.9x\): (PASS|FAIL)", out)
    assert re.search(r"achieved rate, first to last send\s+\d+\.\d+/s", out)
    assert re.search(r"QPS cap within 5%\s+(PASS|FAIL)", out)


def test_local_detection_reports_percentiles() -> None:
    out = run_bench("local_detection.py", "--files", "4", "--warmup", "1", "--gap-s", "0.05")
    for figure in ("p50", "p90", "p99", "upload (settle_s = 0"):
        assert figure in out
    assert re.search(r"local detection\s+(PASS|FAIL)", out)


def test_local_flood_reports_files_per_second() -> None:
    """A small flood (no bar at this size): every file in the ledger, the rate reported."""
    out = run_bench(
        "local_flood.py", "--files", "300", "--goal-per-s", "0", "--max-active-jobs", "1"
    )
    assert re.search(r"\n300\s+300\s+\S+ s\s+\S+ s\s+\d+\s+PASS", out), out
    assert "error lines 0" in out


def test_memory_reports_peak_rss_of_each_process() -> None:
    out = run_bench(
        "memory.py", "--entries", "3000", "--small", "500", "--settle-s", "0.5",
    )  # fmt: skip
    for mode in ("daemon", "once", "status"):
        assert re.search(rf"^{mode}\s+\d+\.\d MiB\s+\d+\.\d MiB\s+\d+\.\d+x$", out, re.MULTILINE)
    assert "3000 lines" in out
    assert len(VERDICT.findall(out)) == 1


def test_beside_daemon_reports_the_retry_latency() -> None:
    out = run_bench("beside_daemon.py", "--files", "2")
    assert re.search(r"2 files\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+\s+(PASS|FAIL)", out)


def test_event_latency_reports_both_watches() -> None:
    """A few files each way (the bar set out of reach of a busy machine: no speed asserted)."""
    out = run_bench(
        "event_latency.py", "--files", "5", "--p50-bar-ms", "60000", "--p99-bar-ms", "60000",
        timeout=240,
    )  # fmt: skip
    for watch in ("event", "poll"):
        assert re.search(rf"^{watch}\s+5\s+\d+\s+\d+\s+\d+$", out, re.MULTILINE), out
    assert "event -> Create p50 <= 60000 ms and p99 <= 60000 ms: PASS" in out


def test_startup_reports_each_command_with_its_cpu() -> None:
    out = run_bench("startup.py", "--rounds", "1")
    for command in ("--help", "--version", "status", "check --offline"):
        figures = r"\s+\d+\.\d+" * 3
        row = rf"^dropzone {re.escape(command)}{figures}\s+0\.[35]\s+(PASS|FAIL)$"
        assert re.search(row, out, re.MULTILINE), out
    assert "load after:" in out


def test_job_cost_reports_cpu_wall_and_first_create_ratios(tmp_path: Path) -> None:
    # Each child under a wrapper that leaves a mark, as a profiler would run it.
    wrap = f"sh -c 'touch {tmp_path}/{{side}}-$$; exec \"$@\"' wrapper"
    out = run_bench(
        "job_cost.py", "--jobs", "10,20", "--repeats", "1", "--busy", "1", "--wrap", wrap
    )
    assert re.search(r"^20 bare loop\s+\d", out, re.MULTILINE), out
    assert re.search(r"^20 dropzone run --once\s+\d", out, re.MULTILINE), out
    each_run = r"^  20 run 1 dropzone .* \(system \d+\.\d+\) switches \d+ first Create"
    assert re.search(each_run, out, re.MULTILINE), out
    marks = sorted(mark.name.split("-")[0] for mark in tmp_path.iterdir())
    assert marks == ["bare", "bare", "dropzone", "dropzone"], marks
    ratios = r"^20 ratios\s+throughput \d+\.\d+x .*(PASS|FAIL)\s+CPU \d+\.\d+x .*(PASS|FAIL)"
    assert re.search(ratios, out, re.MULTILINE), out
    assert re.search(r"^CPU split\s+over 10,20 jobs", out, re.MULTILINE), out
    split = r"^  dropzone/bare\s+[+-]\d+\.\d+ s once\s+-?\d+\.\d+x a job"
    assert re.search(split, out, re.MULTILINE), out
    assert "load after:" in out


def test_ab_pairs_two_versions_and_reports_the_paired_difference() -> None:
    # The same environment on both sides (an A/A run): the script's own path, not a speed.
    python = sys.executable
    out = run_bench(
        "ab.py", "--pairs", "3", "--jobs", "5", "--python-a", python, "--python-b", python
    )
    first = r"^  1 \(ab\)\s+\d+\.\d{3}\s+\d+\.\d{3}\s+[+-]\d+\.\d{3}"
    assert re.search(first, out, re.MULTILINE), out
    assert re.search(r"^  2 \(ba\)", out, re.MULTILINE), out
    paired = (
        r"b - a, paired: median [+-]\d+\.\d{3} s, mean [+-]\d+\.\d{3} s \(95% interval "
        r"[+-]\d+\.\d{3} to [+-]\d+\.\d{3}, sd \d+\.\d{3}\); b used less in \d of 3 pairs, more "
        r"in \d \(sign test p = \d\.\d{3}\)"
    )
    assert re.search(paired, out), out
    assert re.search(r"^(told apart|not told apart)", out, re.MULTILINE), out
