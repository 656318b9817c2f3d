"""Files in a watched folder: what one is, which names count, its object key, and the walk.

A file's relpath is its path below the folder with POSIX separators, Unicode NFC normalised
(macOS and some sync tools write decomposed names; the object key must not depend on that).
Hidden and temporary names are ignored: writers use them for files that are not finished.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from dropzone.ignore import DEFAULT_IGNORE

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Sequence


@dataclass(frozen=True)
class LocalFile:
    """One version of a file as seen by one stat: ``path`` is where it is on disk."""

    path: Path
    relpath: str
    size: int
    mtime_ns: int


def key_for(prefix: str, relpath: str) -> str:
    """The object key of a file: the watch's prefix joined as-is to the NFC relpath.

    The TOS poller derives ``relpath = key[len(prefix):]``; this is its exact inverse.
    """
    relpath = unicodedata.normalize("NFC", relpath)
    parts = relpath.split("/")
    if relpath.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"not a relative POSIX path below the folder: {relpath!r}")
    return prefix + relpath


def is_ignored(relpath: str, ignore_patterns: Sequence[str] = DEFAULT_IGNORE) -> bool:
    """Whether a relpath is skipped.

    A pattern without ``/`` is matched against every component (so ``.*`` hides hidden folders
    and everything in them); a pattern with ``/`` is matched against the whole relpath.
    Matching is case-sensitive on every platform, so a config behaves the same everywhere.
    """
    parts = relpath.split("/")
    for pattern in ignore_patterns:
        if "/" in pattern:
            if fnmatchcase(relpath, pattern):
                return True
        elif any(fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def relpath_of(root: Path, path: str) -> str | None:
    """The relpath of ``path`` below ``root``, or None when it is not below it or not a key."""
    rel = os.path.relpath(path, root)
    if rel in {".", ".."} or rel.startswith(".." + os.sep):
        return None
    relpath = unicodedata.normalize("NFC", PurePath(rel).as_posix())
    return relpath if _is_utf8(relpath) else None


def stat_file(
    path: str | Path, relpath: str, real_root: Path, *, follow: bool = True
) -> LocalFile | None:
    """The file at ``path`` now, or None if it is gone, not a regular file, or leaves the folder.

    A symlink counts only when ``follow`` is set and it resolves to a regular file inside the
    folder (``real_root`` is the folder with its own symlinks resolved): a link out of the
    folder would publish whatever it points at.
    """
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            if not follow:
                return None
            target = Path(path).resolve(strict=True)
            if not target.is_relative_to(real_root):
                return None
            info = target.stat()
    except (OSError, RuntimeError):
        # Gone since it was listed, unreadable, or a symlink loop (RuntimeError on 3.11).
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return LocalFile(Path(path), relpath, info.st_size, info.st_mtime_ns)


def scan(
    root: Path,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    *,
    follow: bool = True,
    under: Path | None = None,
    on_error: Callable[[OSError], None] | None = None,
) -> Iterator[LocalFile]:
    """Every file below ``root`` (or only below its subfolder ``under``) that is not ignored.

    Depth first with one open directory per level: memory is the walk stack, whatever the
    number of files. Symlinked folders are never entered (no loops, no file seen twice);
    symlinked files are handled by :func:`stat_file`. Folders that cannot be listed and names
    that are not valid UTF-8 (``errno.EILSEQ``) go to ``on_error``, like ``os.walk``'s.
    """
    root = Path(root)
    start_rel = "" if under is None else relpath_of(root, os.fspath(under))
    if start_rel is None or (under is not None and _skipped_folder(under, start_rel, ignore)):
        return
    real_root = root.resolve()
    stack = [(_entries(root if under is None else under), start_rel)]
    try:
        while stack:
            entries, rel_dir = stack[-1]
            entry = _next_entry(entries, on_error)
            if entry is None:
                stack.pop()[0].close()
                continue
            rel = _child_relpath(rel_dir, entry, on_error)
            if rel is None or is_ignored(rel, ignore):
                continue
            if _is_dir(entry):
                stack.append((_entries(entry.path), rel))
            elif (found := stat_file(entry.path, rel, real_root, follow=follow)) is not None:
                yield found
    finally:
        for entries, _ in stack:
            entries.close()


def _entries(directory: str | Path) -> Generator[os.DirEntry[str]]:
    # A generator so that closing it (walk done or abandoned) closes the directory handle.
    with os.scandir(directory) as entries:
        yield from entries


def _next_entry(
    entries: Iterator[os.DirEntry[str]], on_error: Callable[[OSError], None] | None
) -> os.DirEntry[str] | None:
    try:
        return next(entries, None)
    except OSError as exc:
        if on_error is not None:
            on_error(exc)
        return None


def _child_relpath(
    rel_dir: str, entry: os.DirEntry[str], on_error: Callable[[OSError], None] | None
) -> str | None:
    name = unicodedata.normalize("NFC", entry.name)
    if not _is_utf8(name):
        if on_error is not None:
            on_error(OSError(errno.EILSEQ, "file name is not valid UTF-8", entry.path))
        return None
    return f"{rel_dir}/{name}" if rel_dir else name


def _skipped_folder(folder: Path, relpath: str, ignore: Sequence[str]) -> bool:
    # The same rules the full walk applies on its way down to this folder.
    return is_ignored(relpath, ignore) or folder.is_symlink()


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_utf8(text: str) -> bool:
    # Undecodable bytes in a name arrive as lone surrogates, which no object key can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
