"""Cutting a byte stream into blocks of whole lines, in memory bounded by one line.

The stream is read in ``CHUNK_BYTES`` pieces and never seeked, so a botocore ``StreamingBody``
works as well as a local file. What the lines say is :mod:`dropzone.preflight.jsonl`'s concern;
this module only finds where they end, drops a byte order mark and skips lines past the limit.
"""

from __future__ import annotations

from typing import Final, Protocol

from dropzone.preflight.report import size_text

# Big enough that per-read overhead vanishes next to parsing; no bigger, as a read is held
# twice at once (as bytes and decoded).
CHUNK_BYTES: Final = 1024**2

_BOM: Final = b"\xef\xbb\xbf"


class Readable(Protocol):
    """What is read: an open binary file, a botocore ``StreamingBody``, ..."""

    def read(self, size: int, /) -> bytes: ...


class LineSink(Protocol):
    """What the reader hands its findings to (the JSONL checker)."""

    def problem(self, line: int | None, message: str) -> None: ...

    def long_line(self, limit: int) -> None: ...

    def block(self, data: bytes, at: int, *, final: bool) -> None: ...


class LineReader:
    """Cuts the stream into blocks of whole lines for a :class:`LineSink`.

    A block is everything up to the last newline of a read, with the unfinished line carried
    over; newlines never occur inside a multi-byte UTF-8 sequence, so a block always decodes
    on its own. A carried line that grows past the limit is dropped and the rest of it is
    skipped up to its newline, so it never sits in memory whole.
    """

    def __init__(
        self, stream: Readable, checker: LineSink, *, max_line_bytes: int, max_file_bytes: int
    ) -> None:
        self._read = stream.read
        self._checker = checker
        self._max_line = max_line_bytes
        self._max_file = max_file_bytes
        # No read may exceed the line limit, so that a line lying wholly inside one read is
        # short enough by construction and only carried lines need measuring.
        self._chunk = min(CHUNK_BYTES, max_line_bytes)
        self.total = 0  # bytes read
        self.stopped = False  # reading stopped at the size limit
        self._position = 0  # file offset of the next byte fed
        self._carry: list[bytes] = []  # the unfinished line, in pieces
        self._carry_len = 0
        self._carry_at = 0
        self._skipping = False  # in a line that is too long

    def run(self) -> int:
        for piece in self._start():
            self._feed(piece)
        while not self.stopped:
            piece = self._next()
            if not piece:
                break
            self._feed(piece)
        if not self.stopped:
            self._finish()
        return self.total

    def _next(self) -> bytes:
        piece = self._read(self._chunk)
        self.total += len(piece)
        if self.total > self._max_file:
            self._checker.problem(
                None,
                f"file is larger than {size_text(self._max_file)}; "
                f"stopped reading at {self.total} bytes",
            )
            self.stopped = True
            return b""
        return piece

    def _start(self) -> list[bytes]:
        """The first pieces, with a byte order mark removed (and reported)."""
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < len(_BOM):
            piece = self._next()
            if not piece:
                break
            pieces.append(piece)
        if not b"".join(pieces).startswith(_BOM):
            return pieces
        # RFC 8259 forbids writing a BOM and only allows parsers to ignore one; Python's json
        # and Go's encoding/json both reject it. Ark's parser is unpublished and a line it
        # cannot parse fails the job after it started, so the BOM is an error. The rest of
        # line 1 is still checked, to list every problem in one pass.
        self._checker.problem(
            1, "the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM"
        )
        self._position = len(_BOM)
        return [b"".join(pieces)[len(_BOM) :]]

    def _feed(self, piece: bytes) -> None:
        at = self._position
        self._position += len(piece)
        if self._skipping:
            newline = piece.find(b"\n")
            if newline < 0:
                return
            self._skipping = False
            self._checker.long_line(self._max_line)
            piece = piece[newline + 1 :]
            at += newline + 1
        last = piece.rfind(b"\n")
        if last < 0:
            self._hold(piece, at)
            return
        block, block_at = piece[: last + 1], at
        if self._carry:
            newline = piece.find(b"\n")
            if self._carry_len + newline > self._max_line:
                self._checker.long_line(self._max_line)
                block, block_at = piece[newline + 1 : last + 1], at + newline + 1
            else:
                block, block_at = b"".join([*self._carry, block]), self._carry_at
            self._carry.clear()
            self._carry_len = 0
        if block:
            self._checker.block(block, block_at, final=False)
        if last + 1 < len(piece):
            self._hold(piece[last + 1 :], at + last + 1)

    def _hold(self, piece: bytes, at: int) -> None:
        if not piece:
            return
        if not self._carry:
            self._carry_at = at
        self._carry.append(piece)
        self._carry_len += len(piece)
        if self._carry_len > self._max_line:
            self._carry.clear()
            self._carry_len = 0
            self._skipping = True

    def _finish(self) -> None:
        """The end of the stream: the last line may have no newline."""
        if self._skipping:
            self._checker.long_line(self._max_line)
        elif self._carry:
            self._checker.block(b"".join(self._carry), self._carry_at, final=True)
