"""``dropzone validate FILE...``: the preflight checks on local files, a verdict per file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import TextIO


def validate(args: argparse.Namespace) -> int:
    return validate_files(args.files, sys.stdout)


def validate_files(paths: Sequence[str], out: TextIO) -> int:
    """``dropzone validate FILE...``: 0 when every file is valid, 1 otherwise."""
    # Imported here: keeps `dropzone run` start-up lean.
    from dropzone.preflight.jsonl import validate_path  # noqa: PLC0415
    from dropzone.preflight.report import count_text  # noqa: PLC0415

    all_valid = True
    for name in paths:
        report = validate_path(Path(name))
        if report.valid:
            print(f"{name}: valid ({count_text(report.lines, 'line')})", file=out)
            continue
        all_valid = False
        print(f"{name}: invalid", file=out)
        for problem in report.problems:
            print(f"  {problem}", file=out)
        if report.total_problems > len(report.problems):
            print(f"  ... and {report.total_problems - len(report.problems)} more", file=out)
    return 0 if all_valid else 1
