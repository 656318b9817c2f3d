"""``dropzone completion SHELL``: a completion script made from the parser --help is made from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import shtab

if TYPE_CHECKING:
    import argparse

SHELLS = ("bash", "zsh", "tcsh")

HOW_TO_INSTALL = """\
bash: dropzone completion bash > ~/.local/share/bash-completion/completions/dropzone
      (or: eval "$(dropzone completion bash)" in ~/.bashrc)
zsh:  dropzone completion zsh > "${fpath[1]}/_dropzone" (a folder on $fpath), then compinit
tcsh: dropzone completion tcsh > ~/.dropzone.tcsh and `source ~/.dropzone.tcsh` in ~/.tcshrc"""


def completes_files(action: argparse.Action) -> None:
    """Tell the completion scripts that this option or argument takes a file's path."""
    action.complete = shtab.FILE  # type: ignore[attr-defined]


def completion(parser: argparse.ArgumentParser, shell: str) -> int:
    print(shtab.complete(parser, shell=shell), end="")
    return 0
