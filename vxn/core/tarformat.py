"""Tar headers, parsed from bytes: ustar, GNU (long names, base-256 numbers) and PAX.

Pure, so the reader in vxn.adapters.tarstream only moves bytes. Written for layers,
which are untrusted and numerous: one header costs a few microseconds here, against
~60 µs in tarfile, and for a 20k-file image that is most of the difference to GNU
tar. Everything that is not plainly valid is an error: a bad checksum, a negative
or malformed number, a PAX record that does not add up, sparse files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from vxn.errors import InvalidArgument

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
# Typeflags of entries the reader handles itself (they describe the next header).
PAX_LOCAL = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
META_TYPES = frozenset({PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK})
MAX_META_SIZE = 1 << 20  # a PAX header or long name larger than this is hostile
_POSIX = b"ustar\x00"
_GNU = b"ustar "


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """One header block (before PAX and GNU long-name overrides)."""

    name: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    type: bytes  # typeflag, one byte
    link: str
    major: int
    minor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A complete entry: the header with every override applied."""

    header: Header
    pax: Mapping[str, bytes] = field(default_factory=dict)


def padded(size: int) -> int:
    """`size` rounded up to whole blocks (data is stored that way)."""
    return -(-size // BLOCK) * BLOCK


def parse_header(block: bytes) -> Header | None:
    """A header from one 512-byte block; None for a zero block (the end of the archive)."""
    if len(block) != BLOCK:
        raise _bad("the archive ends inside a header")
    if block == ZERO_BLOCK:
        return None
    _check_sum(block)
    magic = block[257:263]
    name = _text(block[0:100])
    if magic == _POSIX:
        if block[345] != 0:
            name = _text(block[345:500]) + "/" + name  # the ustar prefix field
    elif magic != _GNU and magic != bytes(6):  # GNU, or a pre-POSIX (v7) header
        raise _bad(f"unknown header format (magic {magic!r})")
    typeflag = block[156:157]
    return Header(
        name=name,
        mode=_number(block[100:108], "mode"),
        uid=_number(block[108:116], "uid"),
        gid=_number(block[116:124], "gid"),
        size=_number(block[124:136], "size"),
        mtime=float(_number(block[136:148], "mtime")),
        type=b"0" if typeflag == b"\x00" else typeflag,
        link=_text(block[157:257]),
        major=_number(block[329:337], "devmajor"),
        minor=_number(block[337:345], "devminor"),
    )


def parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX records, `<len> <key>=<value>\\n` each; values stay bytes (xattrs are binary)."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # NUL padding after the last record
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise _bad("a PAX record has no length")
        end = pos + int(data[pos:space])
        if end > len(data) or end <= space + 1 or data[end - 1] != 0x0A:
            raise _bad("a PAX record's length does not match its content")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key:
            raise _bad("a PAX record has no key")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return out


def apply_overrides(
    header: Header, pax: Mapping[str, bytes], long_name: str | None, long_link: str | None
) -> Member:
    """The header as PAX records and GNU long names say it is."""
    if any(k.startswith("GNU.sparse.") for k in pax) or header.type == b"S":
        raise _bad(f"{header.name!r} is a sparse file; refused")
    if pax or long_name is not None or long_link is not None:
        header = replace(
            header,
            name=_pax_text(pax, "path", long_name or header.name),
            link=_pax_text(pax, "linkpath", long_link or header.link),
            size=_pax_int(pax, "size", header.size),
            uid=_pax_int(pax, "uid", header.uid),
            gid=_pax_int(pax, "gid", header.gid),
            mtime=_pax_float(pax, "mtime", header.mtime),
        )
    return Member(header=header, pax=pax)


def meta_text(data: bytes) -> str:
    """A GNU long name or link: the data up to its NUL."""
    return data.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


# --- fields --------------------------------------------------------------------------


def _check_sum(block: bytes) -> None:
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return
    # Some old writers summed signed chars.
    signed = unsigned - 256 * sum(1 for b in block if b >= 0x80)
    signed += 256 * sum(1 for b in block[148:156] if b >= 0x80)
    if stored != signed:
        raise _bad("a header's checksum is wrong (a corrupt or non-tar stream)")


def _number(raw: bytes, what: str) -> int:
    if raw and raw[0] & 0x80:  # GNU base-256: big-endian, sign in the first byte
        if raw[0] == 0xFF:
            raise _bad(f"a header has a negative {what}")
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _bad(f"a header's {what} is not a number ({raw!r})") from None


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _pax_text(pax: Mapping[str, bytes], key: str, default: str) -> str:
    value = pax.get(key)
    return default if value is None else value.decode("utf-8", "surrogateescape")


def _pax_int(pax: Mapping[str, bytes], key: str, default: int) -> int:
    value = pax.get(key)
    if value is None:
        return default
    if not value.isdigit():
        raise _bad(f"PAX {key} is not a non-negative integer ({value[:40]!r})")
    return int(value)


def _pax_float(pax: Mapping[str, bytes], key: str, default: float) -> float:
    value = pax.get(key)
    if value is None:
        return default
    try:
        number = float(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise _bad(f"PAX {key} is not a number ({value[:40]!r})")
    return number


def _bad(why: str) -> InvalidArgument:
    return InvalidArgument(f"malformed tar: {why}")
