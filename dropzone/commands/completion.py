"""``dropzone completion SHELL``: a completion script made from the parser --help is made from."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

SHELLS = ("bash", "zsh", "tcsh")

HOW_TO_INSTALL = """\
bash: dropzone completion bash > ~/.local/share/bash-completion/completions/dropzone
      (or: eval "$(dropzone completion bash)" in ~/.bashrc)
zsh:  dropzone completion zsh > "${fpath[1]}/_dropzone" (a folder on $fpath), then compinit
tcsh: dropzone completion tcsh > ~/.dropzone.tcsh and `source ~/.dropzone.tcsh` in ~/.tcshrc"""


# Marked on the parser, told to shtab only by ``completion``: every command builds the parser,
# and importing shtab cost each of them about 40 ms of start-up.
_TAKES_FILE = "dropzone_takes_file"


def completes_files(action: argparse.Action) -> None:
    """Tell the completion scripts that this option or argument takes a file's path."""
    setattr(action, _TAKES_FILE, True)


def completion(parser: argparse.ArgumentParser, shell: str) -> int:
    import shtab  # noqa: PLC0415 - see _TAKES_FILE

    for action in _actions(parser):
        if getattr(action, _TAKES_FILE, False):
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    print(shtab.complete(parser, shell=shell), end="")
    return 0


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps no public list
        yield action
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                yield from _actions(action.choices[sub])
