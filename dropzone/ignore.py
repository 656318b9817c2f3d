"""The local names a folder watch ignores by default: temporary and hidden files.

A module of its own, like :mod:`dropzone.levels`: the config's default and the folder source's
walk share it, and importing the source package (boto3 with it) only for it cost every
command about 120 ms of start-up.
"""

from __future__ import annotations

DEFAULT_IGNORE: tuple[str, ...] = (".*", "*.tmp", "*.part", "*~", "*.crdownload", "*.swp")
