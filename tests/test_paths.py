"""Relative paths in a config mean the config file's folder, from wherever a command runs."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tomli_w

from dropzone.config import load_settings

if TYPE_CHECKING:
    from tests.harness import Stage


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    """ledger.path, local_dir and the *_file settings, written relative, land beside the file."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "dropzone.toml"
    config.write_text(
        '[ark]\naccess_key_file = "creds/ak"\nsecret_key_file = "/abs/sk"\n'
        '[ledger]\npath = "state/ledger.sqlite3"\n'
        '[[watch]]\nname = "a"\nbucket = "b"\nprefix = "in/"\ncustom_model_id = "m"\n'
        'local_dir = "inbox"\n'
        '[[watch]]\nname = "h"\nbucket = "b"\nprefix = "in/"\ncustom_model_id = "m"\n'
        'local_dir = "~/x"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, {"DROPZONE_ARK__SESSION_TOKEN_FILE": "token"})
    assert settings.ledger.path == folder / "state" / "ledger.sqlite3"
    assert settings.ark.access_key_file == folder / "creds" / "ak"
    assert str(settings.ark.secret_key_file) == "/abs/sk"
    assert settings.ark.session_token_file == folder / "token"
    assert settings.watches[0].local_dir == folder / "inbox"
    local_dir = settings.watches[1].local_dir
    assert local_dir is not None
    assert local_dir.is_absolute()
    assert "~" not in str(local_dir)


def test_a_config_given_relative_is_anchored_at_once(tmp_path: Path) -> None:
    """-c conf/dropzone.toml and a relative ledger give an absolute path, not a cwd-relative one."""
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "dropzone.toml"
    config.write_text(
        '[ledger]\npath = "l.sqlite3"\n[[watch]]\nname = "a"\nbucket = "b"\nprefix = "in/"\n'
        'custom_model_id = "m"\n',
        encoding="utf-8",
    )
    relative = config.relative_to(tmp_path)
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        settings = load_settings(relative, {})
    finally:
        os.chdir(before)
    assert settings.ledger.path == config.parent / "l.sqlite3"
    assert settings.ledger.path.is_absolute()


@pytest.mark.slow
def test_run_once_from_another_folder_uses_the_one_ledger(stage: Stage, tmp_path: Path) -> None:
    """Seen on 0.1: run --once from another folder made a second, empty ledger there."""
    stage.put("a.jsonl")
    config = stage.write_config()
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["ledger"]["path"] = "state/ledger.sqlite3"
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = stage.dropzone("run", "--once", "-c", str(config), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert stage.ledger_path.exists()
    assert list(elsewhere.iterdir()) == []
    again = stage.dropzone("run", "--once", "-c", str(config), cwd=stage.tmp)
    assert again.returncode == 0, again.stderr
    assert len(stage.jobs()) == 1


def test_status_without_a_ledger_says_where_it_looked(stage: Stage) -> None:
    """No ledger yet: status names the path it looked at and exits 1."""
    done = stage.dropzone("status")
    assert done.returncode == 1
    assert str(stage.ledger_path) in done.stderr
    assert "no ledger" in done.stderr
