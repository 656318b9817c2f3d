"""Which line each custom_id first appeared on, in memory that does not grow with id length."""

from __future__ import annotations

import hashlib
from typing import Final

_DICT_IDS: Final = 1 << 19
_ENTRY_BYTES: Final = 13


class FirstLines:
    """custom_id -> the line it first appeared on, in memory that does not grow with id length.

    Ids are unbounded strings, so only an 80-bit blake2b digest of each is kept. Two ids share
    a digest with probability about n**2 / 2**81, 1e-10 for the 18 million lines of a 5 GiB
    file of 300-byte lines; a collision would report a false duplicate, it can never hide a
    real one.

    The first ``_DICT_IDS`` digests go in a dict: the fastest lookup, but about 113 bytes per id
    (a bytes and an int object plus the entry), 56 MiB at the cap. Later ids go in 65536 byte
    arrays of 13-byte entries (8 more digest bytes, then the line number in 5 bytes), picked by
    the first 2 digest bytes: about 14 MiB per million ids, plus 4 MiB of empty arrays, but
    about 1 us more per line, as each id touches two objects that are rarely in cache.
    Measured: 66 MiB for a million lines, 79 MiB for two million; a 5 GiB file of 18 million
    lines needs about 0.3 GB where a dict alone would take 2 GB.
    """

    def __init__(self) -> None:
        self._dict: dict[bytes, int] = {}
        self._buckets: list[bytearray] = []

    def first_line(self, custom_id: str, line: int) -> int:
        """The line ``custom_id`` was first seen on, recording ``line`` if it is new."""
        # surrogatepass: JSON escapes can produce lone surrogates, which strict UTF-8 refuses.
        # Slicing the default 64-byte digest is faster than passing digest_size.
        digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass")).digest()[:10]
        if len(self._dict) < _DICT_IDS:
            return self._dict.setdefault(digest, line)
        first = self._dict.get(digest)
        return self._compact(digest, line) if first is None else first

    def _compact(self, digest: bytes, line: int) -> int:
        if not self._buckets:
            self._buckets = [bytearray() for _ in range(1 << 16)]
        bucket = self._buckets[digest[0] << 8 | digest[1]]
        key = digest[2:]
        found = bucket.find(key)
        while found >= 0:
            # Entries start at multiples of 13; a match straddling two entries is not one.
            if found % _ENTRY_BYTES == 0:
                return int.from_bytes(bucket[found + len(key) : found + _ENTRY_BYTES], "little")
            found = bucket.find(key, found + 1)
        bucket += key + line.to_bytes(_ENTRY_BYTES - len(key), "little")
        return line
