"""A tar stream read entry by entry, without tarfile: see vxn.core.tarformat for why.

The reader owns the byte bookkeeping: it joins PAX and GNU long-name headers to the
entry they describe, hands out the entry's data in pieces, and skips what is left of
it (and the padding) before the next header. It reads whole chunks from its source
and slices them, so a small file costs one slice, not a read call.
"""

from __future__ import annotations

from collections.abc import Callable

from vxn.core import tarformat as tf
from vxn.errors import InvalidArgument

# Types whose size field counts data blocks that follow (tarfile's rule: regular files
# and types it does not know; the caller refuses the latter).
_NO_DATA = frozenset({b"1", b"2", b"3", b"4", b"5", b"6"})


class TarReader:
    def __init__(self, chunk: Callable[[], bytes]) -> None:
        """`chunk()` returns the next piece of the stream, b"" at its end."""
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self._left = 0  # data of the current entry not yet read
        self._pad = 0
        self._global: dict[str, bytes] = {}

    def next(self) -> tf.Member | None:
        """The next entry, or None at the end of the archive."""
        self._skip(self._left + self._pad)
        self._left = self._pad = 0
        pax: dict[str, bytes] = {}
        long_name = long_link = None
        while True:
            block = self._take(tf.BLOCK)
            if not block:
                return None  # no end-of-archive blocks: tarfile accepts that too
            header = tf.parse_header(block)
            if header is None:
                return None
            if header.type not in tf.META_TYPES:
                break
            data = self._meta_data(header)
            if header.type == tf.PAX_LOCAL:
                pax = tf.parse_pax(data)
            elif header.type == tf.PAX_GLOBAL:
                self._global.update(tf.parse_pax(data))
            elif header.type == tf.GNU_LONGNAME:
                long_name = tf.meta_text(data)
            else:
                long_link = tf.meta_text(data)
        member = tf.apply_overrides(header, {**self._global, **pax}, long_name, long_link)
        size = 0 if member.header.type in _NO_DATA else member.header.size
        self._left, self._pad = size, tf.padded(size) - size
        return member

    def read(self, n: int) -> bytes:
        """Up to `n` bytes of the current entry's data (b"" when it is all read)."""
        n = min(n, self._left)
        data = self._take(n)
        if len(data) != n:
            raise InvalidArgument("malformed tar: the archive ends inside an entry's data")
        self._left -= n
        return data

    def _meta_data(self, header: tf.Header) -> bytes:
        if header.size > tf.MAX_META_SIZE:
            raise InvalidArgument(
                f"malformed tar: a {header.type.decode(errors='replace')!r} header of "
                f"{header.size} bytes; refused"
            )
        data = self._take(tf.padded(header.size))
        if len(data) != tf.padded(header.size):
            raise InvalidArgument("malformed tar: the archive ends inside a header")
        return data[: header.size]

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            chunk = self._chunk()
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        joined = b"".join(parts)
        self._buf, self._pos = joined, min(n, len(joined))
        return joined[:n]

    def _skip(self, n: int) -> None:
        while n:
            piece = self._take(min(n, 1 << 20))
            if not piece:
                raise InvalidArgument("malformed tar: the archive ends inside an entry's data")
            n -= len(piece)
