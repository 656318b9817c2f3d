"""Two versions of dropzone, paired: what a change does to a whole ``run --once``'s CPU.

    python bench/ab.py [--base HEAD] [--pairs 20] [--jobs 2000] [--concurrency 8]
                       [--latency-ms 20] [--busy 0] [--venvs DIR]
    python bench/ab.py --python-a A/bin/python --python-b B/bin/python ...

``job_cost.py`` compares dropzone with a bare loop; a change to dropzone that saves 2-3% of
its CPU is lost in that comparison's noise (whole runs on these machines vary by about 8%
from one to the next). Here the two sides are two versions of dropzone: **a** is ``--base``
(a git revision, HEAD by default), **b** the working tree, each installed as a user installs
it (``pip install .``, no dev extras) into a virtual environment of its own under ``--venvs``
(made on first use, dropzone reinstalled on every later one). ``--python-a``/``--python-b``
run two environments made beforehand instead (the same one twice: an A/A run, which shows
the noise alone).

Each pair is one ``dropzone run --once`` of each version over the same ``--jobs`` new objects
(``job_cost.one_run``: moto in a child process, a fresh emulator and ledger each run), the
order alternating from pair to pair. What counts is each pair's difference (b - a) of process
CPU: two runs moments apart share the machine's state, so their difference cancels most of
the drift whole runs suffer. The report gives the median and mean difference, the mean's 95%
interval (Student's t) and how many pairs b won, with the sign test's two-sided p-value: a
change is told apart from the noise when its interval excludes zero.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from common import PREFIX, REPO, MotoS3, cpu_burners, header, product_python, table
from job_cost import BUCKET, one_run

if TYPE_CHECKING:
    from collections.abc import Sequence

    from job_cost import Run

# Student's t, two-sided 95%, by degrees of freedom; a df between two keys takes the lower
# key's value (the wider interval).
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
_T95 |= {10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 60: 2.00, 120: 1.98}


def t95(df: int) -> float:
    return _T95[max(key for key in _T95 if key <= df)]


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided p-value of ``wins`` against ``losses`` (ties left out) if either side were as
    likely to win each pair."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def summary(diffs: Sequence[float]) -> dict[str, float]:
    """The paired differences (b - a) summed up: median, mean, its 95% interval, wins."""
    mean = statistics.mean(diffs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else math.inf
    half = t95(len(diffs) - 1) * spread / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    wins, losses = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
    return {
        "median": statistics.median(diffs),
        "mean": mean,
        "sd": spread,
        "low": mean - half,
        "high": mean + half,
        "wins": wins,
        "losses": losses,
        "p": sign_test_p(wins, losses),
    }


def revision_python(revision: str, venv: Path) -> Path:
    """``venv``'s Python with dropzone installed from ``revision`` of this repository."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {revision}: {archive.stderr.decode(errors='replace')}")
    with tempfile.TemporaryDirectory(prefix="dropzone-ab-") as folder:
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        return product_python(str(venv), source=Path(folder))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the revision side a installs")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--busy", type=int, default=0, help="CPU burners to run alongside")
    parser.add_argument(
        "--venvs",
        default=str(Path(tempfile.gettempdir()) / "dropzone-ab"),
        help="where the two virtual environments are made (a and b)",
    )
    parser.add_argument("--python-a", help="side a's Python, an environment made beforehand")
    parser.add_argument("--python-b", help="side b's Python, an environment made beforehand")
    args = parser.parse_args(argv)
    if args.pairs < 2:  # an interval needs two differences
        parser.error("--pairs must be at least 2")
    venvs = Path(args.venvs)
    pythons = {
        "a": Path(args.python_a) if args.python_a else revision_python(args.base, venvs / "a"),
        "b": Path(args.python_b) if args.python_b else product_python(str(venvs / "b")),
    }
    header("two versions of dropzone, paired (issue 17)", vars(args))
    args.wrap = ""
    diffs: list[float] = []
    runs: dict[str, list[Run]] = {"a": [], "b": []}
    rows: list[tuple[str, ...]] = [("pair", "a CPU (s)", "b CPU (s)", "b - a (s)", "a/b wall (s)")]
    with (
        MotoS3({BUCKET: 0}, prefixed={f"{PREFIX}{args.jobs}/": args.jobs}) as moto,
        tempfile.TemporaryDirectory(prefix="dropzone-ab-") as folder,
        cpu_burners(args.busy),
    ):
        for pair in range(args.pairs):
            order = ("a", "b") if pair % 2 == 0 else ("b", "a")
            got: dict[str, Run] = {}
            for side in order:
                args.python = pythons[side]
                got[side] = one_run(
                    "dropzone",
                    jobs=args.jobs,
                    args=args,
                    s3_endpoint=moto.endpoint,
                    scratch=Path(folder),
                )
                runs[side].append(got[side])
            diffs.append(got["b"].cpu_s - got["a"].cpu_s)
            row = (
                f"{pair + 1} ({''.join(order)})",
                f"{got['a'].cpu_s:.3f}",
                f"{got['b'].cpu_s:.3f}",
                f"{diffs[-1]:+.3f}",
                f"{got['a'].wall_s:.2f} / {got['b'].wall_s:.2f}",
            )
            print("  " + "  ".join(row), flush=True)
            rows.append(row)
    figures = summary(diffs)
    cpu = {
        side: statistics.median(run.cpu_s for run in side_runs) for side, side_runs in runs.items()
    }
    print(table(rows))
    print(f"CPU, medians: a {cpu['a']:.3f} s, b {cpu['b']:.3f} s, b/a {cpu['b'] / cpu['a']:.3f}")
    print(
        f"b - a, paired: median {figures['median']:+.3f} s, mean {figures['mean']:+.3f} s "
        f"(95% interval {figures['low']:+.3f} to {figures['high']:+.3f}, sd {figures['sd']:.3f}); "
        f"b used less in {figures['wins']:.0f} of {len(diffs)} pairs, more in "
        f"{figures['losses']:.0f} (sign test p = {figures['p']:.3f})"
    )
    if figures["high"] < 0 or figures["low"] > 0:
        print(f"told apart: b uses {'less' if figures['high'] < 0 else 'more'} CPU than a")
    else:
        print("not told apart: the interval holds zero")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
