"""One layer blob as its uncompressed tar stream: sniffed, decompressed, hashed, capped.

The compression is read from the magic bytes, not the media type, because registries
mislabel layers (Docker "gzip" layers are sometimes plain tar). gzip goes through
ISA-L (`isal`, zlib's API at 1.5-2.5x the speed) and zstd through `zstandard`; both
release the GIL, so a producer thread decompresses the next chunks while the consumer
hashes them and writes files: on two cores the work overlaps. Output is produced in
bounded chunks, so a decompression bomb costs at most the byte cap, never memory. The
caller checks `digest()` against the config's diff_id once the stream is read to its end.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

import zstandard
from isal import isal_zlib

from vxn.core.digest import Digest
from vxn.errors import InvalidArgument

CHUNK = 1 << 20
# isal's stub types its error as an instance; it is the exception class at run time.
_BAD_DATA = (cast(type[Exception], isal_zlib.error), zstandard.ZstdError, EOFError)
_DEPTH = 8  # chunks in flight between the threads: bounded memory
GZIP_WBITS = 16 + 15  # gzip framing, the largest window
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sniff(head: bytes) -> str:
    """ "gzip", "zstd" or "" (plain tar), by magic bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return ""


def _gunzip(source: BinaryIO) -> Iterator[bytes]:
    d = isal_zlib.decompressobj(GZIP_WBITS)
    while chunk := source.read(CHUNK):
        while chunk:
            if d.eof:  # a gzip stream may hold several members back to back
                d = isal_zlib.decompressobj(GZIP_WBITS)
            # max_length bounds each output, whatever the compression ratio.
            out = d.decompress(chunk, CHUNK)
            chunk = d.unconsumed_tail if not d.eof else d.unused_data
            if out:
                yield out
    if not d.eof:
        raise EOFError("compressed data ends early")


def _unzstd(source: BinaryIO) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    while out := reader.read(CHUNK):
        yield out


def _plain(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(CHUNK):
        yield chunk


_DECODERS: dict[str, Callable[[BinaryIO], Iterator[bytes]]] = {
    "gzip": _gunzip,
    "zstd": _unzstd,
    "": _plain,
}


class LayerStream:
    """The uncompressed bytes of `source`, produced by a thread; hashes them as they go.

    `budget` is the most bytes the stream may yield (the rootfs size cap shared by
    all layers); past it, reading raises InvalidArgument naming `label`.
    """

    def __init__(self, source: BinaryIO, label: str, budget: int) -> None:
        head = source.read(4)
        source.seek(0)
        self.compression = sniff(head)
        self.label = label
        self.size = 0
        self._budget = budget
        self._hash = hashlib.sha256()
        self._source = source
        self._queue: queue.Queue[Any] = queue.Queue(_DEPTH)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, name=f"layer {label}", daemon=True)
        self._thread.start()

    def chunk(self) -> bytes:
        """The next piece of the stream; b"" at its end. Raises what the producer hit."""
        if self._done:
            return b""
        item = self._queue.get()
        if isinstance(item, bytes):
            self._hash.update(item)  # here, beside the writes: the producer only inflates
            return item
        self._done = True
        if isinstance(item, BaseException):
            raise item
        return b""

    def digest(self) -> Digest:
        """The sha256 of everything read so far (call once the stream is at its end)."""
        return Digest(algorithm="sha256", hex=self._hash.hexdigest())

    def drain(self) -> None:
        """Read to the end: the diff_id covers the tar's trailing padding too."""
        while self.chunk():
            pass

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblock a producer on a full queue
                self._queue.get(timeout=0.05)
        self._thread.join()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _produce(self) -> None:
        try:
            for chunk in _DECODERS[self.compression](self._source):
                self.size += len(chunk)
                if self.size > self._budget:
                    raise InvalidArgument(
                        f"layer {self.label}: the uncompressed layers exceed the "
                        f"{self._budget}-byte limit (a decompression bomb?)"
                    )
                if not self._put(chunk):
                    return
            self._put(None)
        except InvalidArgument as e:
            self._put(e)
        except _BAD_DATA as e:
            what = self.compression or "tar"
            self._put(InvalidArgument(f"layer {self.label}: bad {what} data ({e})"))
        except BaseException as e:  # reported to the reader; the thread must not die silently
            self._put(e)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
