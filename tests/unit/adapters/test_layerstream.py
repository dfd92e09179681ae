"""Layer streams: sniffed by magic (not media type), decompressed in bounded chunks,
hashed, capped; and the tar reader on top of them."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
import zstandard
from data.layerstacks import f, layer_tar

from vxn.adapters.layerstream import LayerStream, sniff
from vxn.adapters.tarstream import TarReader
from vxn.errors import InvalidArgument

TAR = layer_tar([f("a", b"alpha\n"), f("b", bytes(300_000))])


def _read(blob: bytes, budget: int = 1 << 30) -> tuple[bytes, LayerStream]:
    with LayerStream(io.BytesIO(blob), "sha256:test", budget) as stream:
        data = b"".join(iter(stream.chunk, b""))
    return data, stream


@pytest.mark.parametrize(
    ("pack", "kind"),
    [
        (lambda t: gzip.compress(t), "gzip"),
        (lambda t: zstandard.ZstdCompressor().compress(t), "zstd"),
        (lambda t: t, ""),
        (lambda t: gzip.compress(t[:5000]) + gzip.compress(t[5000:]), "gzip"),  # two members
    ],
    ids=["gzip", "zstd", "plain", "multi-member-gzip"],
)
def test_each_compression_gives_the_tar_and_its_digest(pack: object, kind: str) -> None:
    blob = pack(TAR)  # type: ignore[operator]
    data, stream = _read(blob)
    assert data == TAR
    assert stream.compression == kind == sniff(blob[:4])
    assert stream.digest().hex == hashlib.sha256(TAR).hexdigest()
    assert stream.size == len(TAR)


def test_truncated_and_corrupt_gzip_are_errors_naming_the_layer() -> None:
    blob = gzip.compress(TAR)
    with pytest.raises(InvalidArgument, match=r"^layer sha256:test: bad gzip data"):
        _read(blob[: len(blob) // 2])
    corrupt = blob[:20] + bytes(b ^ 0xFF for b in blob[20:40]) + blob[40:]
    with pytest.raises(InvalidArgument, match=r"^layer sha256:test: bad gzip data"):
        _read(corrupt)


def test_a_bomb_is_stopped_at_the_budget_in_bounded_chunks() -> None:
    gz = gzip.compress(bytes(64 << 20), 9)
    with pytest.raises(InvalidArgument, match="exceed the 1048576-byte limit"):
        _read(gz, budget=1 << 20)


def test_closing_early_stops_the_producer() -> None:
    stream = LayerStream(io.BytesIO(gzip.compress(bytes(32 << 20))), "sha256:x", 1 << 30)
    assert stream.chunk()
    stream.close()  # the producer is blocked on a full queue: close must not hang
    assert not stream._thread.is_alive()


def test_the_tar_reader_hands_out_data_and_skips_what_is_left() -> None:
    reader = TarReader(iter([TAR[:700], TAR[700:9000], TAR[9000:], b""]).__next__)
    first = reader.next()
    assert first is not None
    assert (first.header.name, reader.read(3), reader.read(100)) == ("a", b"alp", b"ha\n")
    second = reader.next()  # `b` is never read: skipped with its padding
    assert second is not None
    assert second.header.size == 300_000
    assert reader.next() is None


def test_the_tar_reader_refuses_a_truncated_entry() -> None:
    reader = TarReader(iter([TAR[:2600], b""]).__next__)
    assert reader.next() is not None
    assert reader.next() is not None  # `b`, whose data is cut short
    with pytest.raises(InvalidArgument, match="ends inside an entry's data"):
        reader.read(300_000)
    reader = TarReader(iter([TAR[:1100], b""]).__next__)
    assert reader.next() is not None
    with pytest.raises(InvalidArgument, match="ends inside a header"):
        reader.next()


def test_the_tar_reader_refuses_a_huge_pax_header() -> None:
    info = tarfile.TarInfo("x")
    info.pax_headers = {"comment": "c" * (2 << 20)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info)
    with pytest.raises(InvalidArgument, match="refused"):
        TarReader(iter([buf.getvalue(), b""]).__next__).next()
