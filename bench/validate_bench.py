"""Throughput of the preflight validator against a bare read of the same file.

    python bench/validate_bench.py [--mb 1024]

Writes a JSONL file of typical chat requests (300 to 1000 bytes a line, one in five with
Chinese text) to a temporary directory, reads it once to warm the page cache, then times a
bare read in the validator's chunk size and ``validate_path`` over it, on one core.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from common import header

from dropzone.preflight.jsonl import validate_path
from dropzone.preflight.lines import CHUNK_BYTES

_WORDS = (
    "the",
    "quick",
    "model",
    "summarises",
    "each",
    "paragraph",
    "and",
    "answers",
    "questions",
    "about",
    "prices",
    "delivery",
    "dates",
    "refunds",
    "product",
    "details",
)
_CHINESE = "请用两句话总结下面的内容并给出三个关键词以及可能的后续问题"


def _request(rng: random.Random, number: int) -> bytes:
    size = rng.randint(300, 1000)
    if rng.random() < 0.2:
        # A CJK character is three bytes in UTF-8.
        text = "".join(rng.choices(_CHINESE, k=(size - 230) // 3))
    else:
        words: list[str] = []
        length = 230
        while length < size:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        text = " ".join(words)
    request = {
        "custom_id": f"request-{number:09d}",
        "body": {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
            "max_tokens": 512,
            "temperature": 0.2,
        },
    }
    return json.dumps(request, ensure_ascii=False).encode() + b"\n"


def _write(path: Path, size: int) -> int:
    """Write at least ``size`` bytes of requests, a batch at a time; return the line count."""
    rng = random.Random(20240101)
    lines = written = 0
    with path.open("wb") as out:
        while written < size:
            batch = [_request(rng, lines + i + 1) for i in range(1000)]
            lines += len(batch)
            data = b"".join(batch)
            out.write(data)
            written += len(data)
    return lines


def _bare_read(path: Path) -> float:
    started = time.perf_counter()
    with path.open("rb", buffering=0) as file:
        while file.read(CHUNK_BYTES):
            pass
    return time.perf_counter() - started


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS, where the figure reads 1024 times too high).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="file size in MiB (default 1024)")
    args = parser.parse_args(argv)
    header("preflight validation against a bare read", {"mb": args.mb})
    with tempfile.TemporaryDirectory(prefix="dropzone-bench-") as folder:
        path = Path(folder) / "requests.jsonl"
        lines = _write(path, args.mb * 1024**2)
        size = path.stat().st_size
        mib = size / 1024**2
        print(f"file: {mib:.0f} MiB, {lines} lines, {size / lines:.0f} bytes a line on average")
        _bare_read(path)  # warm the page cache
        rss_before = _peak_rss_mib()
        read_s = _bare_read(path)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = validate_path(path)
        validate_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        rss_after = _peak_rss_mib()
    if not report.valid or report.lines != lines:
        print(f"unexpected report: {report.summary()}", file=sys.stderr)
        return 1
    print(f"bare read  {mib / read_s:8.0f} MiB/s  ({read_s:.2f} s, chunk {CHUNK_BYTES} bytes)")
    print(f"validate   {mib / validate_s:8.0f} MiB/s  ({validate_s:.2f} s)")
    # On a shared machine the wall clock also counts time spent waiting for the core.
    print(f"  by CPU   {mib / cpu_s:8.0f} MiB/s  ({cpu_s:.2f} s of CPU time)")
    print(f"ratio      {validate_s / read_s:8.1f}x the bare read's time")
    print(f"validate   {lines / validate_s / 1000:8.0f} k lines/s")
    print(f"peak RSS   {rss_after:8.0f} MiB  (before validating: {rss_before:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
