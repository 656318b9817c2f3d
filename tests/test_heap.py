"""The collector while a command loads: off, then what loaded frozen, once a process.

Each case runs in a fresh interpreter: a process's first command is the one that freezes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

from tests.harness import free_port

if TYPE_CHECKING:
    from pathlib import Path


def _python(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.split()


def test_a_command_leaves_the_collector_on_and_what_it_loaded_frozen() -> None:
    enabled, frozen, boto3_loaded = _python(
        """
        import gc, sys
        from dropzone.cli import main
        try:
            main(["run", "--help"])
        except SystemExit:
            pass
        print(gc.isenabled(), gc.get_freeze_count(), "boto3" in sys.modules, file=sys.stderr)
        """
    )
    assert enabled == "True"
    # `run --help` stops in argument parsing, before the command's modules load: what had
    # loaded by then (the parser, its modules) is frozen all the same.
    assert int(frozen) > 10_000, frozen
    assert boto3_loaded == "False"


def test_the_collector_stays_off_where_the_caller_had_turned_it_off() -> None:
    enabled, frozen = _python(
        """
        import gc, sys
        from dropzone.cli import main
        gc.disable()
        main(["completion", "bash"])
        print(gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)
        """
    )
    assert enabled == "False"
    assert int(frozen) > 0


def test_only_the_first_load_of_a_process_freezes() -> None:
    first, second, collected = _python(
        """
        import gc, sys
        from dropzone import heap
        with heap.loading():
            import dropzone.plan
        first = gc.get_freeze_count()
        garbage = []
        for _ in range(1000):
            cycle = []
            cycle.append(cycle)
            garbage.append(cycle)
        with heap.loading():
            del garbage, cycle
        print(first, gc.get_freeze_count(), gc.collect(), file=sys.stderr)
        """
    )
    assert int(first) > 10_000, first
    # A later load freezes nothing more: the cycles it left are the collector's to free.
    assert second == first
    assert int(collected) >= 1000


def test_a_deferred_freeze_is_the_next_blocks() -> None:
    deferred, frozen = _python(
        """
        import gc, sys
        from dropzone import heap
        with heap.loading() as load:
            import dropzone.log
            load.defer()
        deferred = gc.get_freeze_count()
        with heap.loading():
            import dropzone.plan
        print(deferred, gc.get_freeze_count(), file=sys.stderr)
        """
    )
    assert int(deferred) == 0
    assert int(frozen) > 10_000, frozen


def test_run_freezes_what_its_own_loading_made(tmp_path: Path) -> None:
    """``run`` goes on loading after the command line's block (its settings, the listing it
    asks ahead, the daemon's modules and parts): the freeze comes at the end of its own block,
    with boto3's client and the daemon in it (the command line's alone froze some 45,000
    objects, before either). Here S3 and Ark are closed ports: the run fails, as it loaded."""
    config = tmp_path / "dropzone.toml"
    closed = f"http://127.0.0.1:{free_port()}"
    config.write_text(
        textwrap.dedent(
            f"""
            [ark]
            endpoint = "{closed}"
            [tos]
            endpoint = "{closed}"
            region = "us-east-1"
            [ledger]
            path = "{tmp_path / "ledger.sqlite3"}"
            [daemon]
            once_max_wait_s = 1
            [[watch]]
            name = "w"
            bucket = "b"
            prefix = "in/"
            model = {{ name = "m" }}
            """
        ),
        encoding="utf-8",
    )
    *_, enabled, frozen, code = _python(
        f"""
        import gc, os, sys
        os.environ.update(
            VOLCENGINE_ACCESS_KEY="AKLTheap", VOLCENGINE_SECRET_KEY="heap-secret",
            AWS_MAX_ATTEMPTS="1",
        )
        from dropzone.cli import main
        code = main(["run", "--once", "-c", {str(config)!r}, "--log-format", "json"])
        print(gc.isenabled(), gc.get_freeze_count(), code, file=sys.stderr)
        """
    )
    assert enabled == "True"
    assert int(frozen) > 100_000, frozen
    assert code == "1"
