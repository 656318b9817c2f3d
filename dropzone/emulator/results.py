"""What the Ark emulator writes when a job completes: its result file, where Ark puts it.

Ark writes a completed job's answers under its output folder, ``<OutputDir><job id>/output/
results.jsonl``: one line per request, by ``custom_id``. The emulator has no store of its own,
so it is given a writer (a folder laid out as ``<root>/<bucket>/<key>``, an S3 endpoint, or
any callable), beside the reader it counts requests with; a job is written once, the first
time it is seen completed. The answers are stand-ins: each request's body echoed back in an
assistant message, enough for a user (and the tests) to see results arrive.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from dropzone.emulator.inputs import local_s3_client

if TYPE_CHECKING:
    from pathlib import Path

# (bucket, key, bytes): put the object.
OutputWriter = Callable[[str, str, bytes], None]

RESULTS_FILE = "output/results.jsonl"


def results_key(output_dir: str, job_id: str) -> str:
    return f"{output_dir}{job_id}/{RESULTS_FILE}"


def results_body(job_id: str, model: str, content: bytes) -> bytes:
    """One answer per request line of ``content``, in its order (pure)."""
    lines = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError:
            request = {}
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        message = {"role": "assistant", "content": f"(emulated) line {number}"}
        answer = {
            "id": f"{job_id}-{number}",
            "custom_id": custom_id,
            "response": {
                "status_code": 200,
                "body": {
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": message,
                        }
                    ],
                },
            },
            "error": None,
        }
        lines.append(json.dumps(answer, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def folder_writer(root: Path) -> OutputWriter:
    """Objects as files at ``root/bucket/key``, written whole (a temporary name, then a
    rename); a key climbing out of ``root`` is not written."""
    base = root.resolve()

    def write(bucket: str, key: str, body: bytes) -> None:
        path = (base / bucket / key).resolve()
        if not path.is_relative_to(base):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(body)
        partial.replace(path)

    return write


def s3_writer(endpoint_url: str) -> OutputWriter:
    """Objects put to an S3 endpoint (:func:`dropzone.emulator.inputs.local_s3_client`)."""
    client = local_s3_client(endpoint_url)

    def write(bucket: str, key: str, body: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=body)

    return write
