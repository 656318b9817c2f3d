"""Starting several folder watches: side by side, each recorded, a failing one not in the way."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dropzone import runtime
from dropzone.ark.signer import Credentials
from dropzone.config import load_settings
from dropzone.daemon.build import build_daemon
from dropzone.ledger import SqliteLedger, State
from tests.harness import jsonl

if TYPE_CHECKING:
    from pathlib import Path

WATCH = """
[[watch]]
name = "{name}"
bucket = "b"
prefix = "{name}/"
model = {{ name = "m-1" }}
local_dir = "{folder}"
local_mode = "mounted"
settle_s = 0.3
on_start = "submit-existing"
"""


def test_folder_watches_start_together_and_one_failure_spares_the_others(tmp_path: Path) -> None:
    names = ("one", "two", "three", "missing")
    folders = {name: tmp_path / name for name in names}
    for name in names[:3]:
        folders[name].mkdir()
        (folders[name] / "a.jsonl").write_bytes(jsonl(2, tag=name))
    config = tmp_path / "dropzone.toml"
    config.write_text(
        f'[ledger]\npath = "{tmp_path / "ledger.sqlite3"}"\n[daemon]\nlisten = ""\n'
        + "".join(WATCH.format(name=name, folder=folders[name]) for name in names),
        encoding="utf-8",
    )
    settings = load_settings(config, {})
    credentials = Credentials("AKLTfolderstart", "folder-start-secret")
    with SqliteLedger.open(settings.ledger.path) as ledger:
        api = runtime.ark_client(settings, credentials)  # never called here
        daemon = build_daemon(
            settings, ledger=ledger, api=api, s3=runtime.s3_client(settings, credentials)
        )
        try:
            assert daemon.start_folders() is False  # the missing folder
            pending = {entry.key for entry in ledger.in_state(State.PENDING)}
            assert pending == {f"{name}/a.jsonl" for name in names[:3]}
            # Started once: a second call starts nothing again.
            assert daemon.start_folders() is True
        finally:
            for folder in daemon.folders:
                folder.stop()
            api.close()
