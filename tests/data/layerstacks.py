"""A corpus of layer stacks, each exercising one or more changeset rules, for the umoci
oracle. Each stack is a name, a tar format and a list of layers; `write` adds it to an
OCI layout (gzip layers, which umoci 0.4.7 reads) under the stack's name as tag.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field

from data import imagebuild as ib

MTIME = 1_700_000_000
CAP_NET_RAW = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass(frozen=True)
class E:
    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)


def d(name: str, mode: int = 0o755, **kw: object) -> E:
    return E(name, "dir", mode=mode, **kw)  # type: ignore[arg-type]


def f(name: str, data: bytes = b"x\n", mode: int = 0o644, **kw: object) -> E:
    return E(name, "file", data=data, mode=mode, **kw)  # type: ignore[arg-type]


def sym(name: str, target: str) -> E:
    return E(name, "symlink", link=target, mode=0o777)


def hard(name: str, target: str) -> E:
    return E(name, "hardlink", link=target)


def wh(path: str) -> E:
    parent, _, base = path.rpartition("/")
    return f(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"")


def opq(dir_: str) -> E:
    return f(f"{dir_}/.wh..wh..opq", b"")


def layer_tar(entries: list[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.mtime = _TYPES[e.kind], e.mode, MTIME
            info.uid, info.gid, info.linkname = e.uid, e.gid, e.link
            info.uname = info.gname = ""
            info.devmajor, info.devminor = e.dev
            info.pax_headers = {
                f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                for k, v in e.xattrs.items()
            }
            info.size = len(e.data) if e.kind == "file" else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


@dataclass(frozen=True)
class Stack:
    name: str
    layers: list[list[E]]
    fmt: int = tarfile.PAX_FORMAT

    def tars(self) -> list[bytes]:
        return [layer_tar(layer, self.fmt) for layer in self.layers]


def write(layout: ib.Layout, stack: Stack) -> tuple[ib.Json, list[bytes]]:
    """Add the stack as an image; returns its manifest descriptor and its layer tars."""
    tars = stack.tars()
    diff_ids = [ib.sha256(t) for t in tars]
    layers = [layout.add_blob(ib.gzip_bytes(t, 1), ib.LAYER_TYPES["gzip"]) for t in tars]
    config = layout.add_blob(ib.canonical(ib.config_doc(ib.ImageSpec(), diff_ids)), ib.OCI_CONFIG)
    return layout.add_manifest(config, layers), tars


BASE = [d("etc"), f("etc/a", b"a\n"), f("etc/b", b"b\n"), d("etc/sub"), f("etc/sub/c", b"c\n")]
LONG = "very-long-directory-name-" * 5
USR = [d("usr"), d("usr/lib"), d("usr/bin"), f("usr/bin/tool", b"#!/bin/sh\n", 0o755)]

STACKS = [
    Stack("plain", [BASE]),
    Stack("modes", [[f(f"m{m:o}", mode=m) for m in (0o600, 0o640, 0o755, 0o000, 0o777)]]),
    Stack("setuid-setgid-sticky", [[f("su", mode=0o4755), f("sg", mode=0o2755), d("t", 0o1777)]]),
    Stack("setuid-after-chown", [[f("su", mode=0o4750, uid=1000, gid=1000)]]),
    Stack("setgid-dir-owned", [[d("g", 0o2775, uid=33, gid=33), f("g/x", uid=33, gid=33)]]),
    Stack("owners", [[d("home"), d("home/u", 0o700, uid=1000, gid=1000), f("o", gid=5)]]),
    Stack("large-ids", [[f("big", uid=3_000_000, gid=4_000_000)]]),
    Stack("large-ids-gnu", [[f("big", uid=3_000_000, gid=4_000_000)]], tarfile.GNU_FORMAT),
    Stack("long-names-pax", [[d(LONG), f(f"{LONG}/{LONG}", b"deep\n"), sym("ln", "/" + LONG)]]),
    Stack("long-names-gnu", [[d(LONG), f(f"{LONG}/{LONG}"), sym(f"{LONG}/s", LONG * 2)]], 1),
    Stack("long-hardlink-target", [[d(LONG), f(f"{LONG}/{LONG}"), hard("h", f"{LONG}/{LONG}")]]),
    Stack("utf8-names", [[d("données"), f("données/café.txt", "é\n".encode())]]),
    Stack("odd-names", [[f("with space"), f("-dash"), f("a'quote"), f("tab\there")]]),
    Stack("xattrs", [[f("x", xattrs={"user.k": b"v", "user.bin": b"\x00\xff"})]]),
    Stack(
        "security-capability",
        [[f("ping", mode=0o755, xattrs={"security.capability": CAP_NET_RAW})]],
    ),
    Stack("trusted-xattr-on-dir", [[d("t", xattrs={"trusted.vxn": b"1"})]]),
    Stack(
        "symlinks", [[sym("rel", "etc/a"), sym("abs", "/etc/a"), sym("dangling", "/nope"), *BASE]]
    ),
    Stack("symlink-to-dir", [[*BASE, sym("e", "etc"), sym("up", "../../..")]]),
    Stack("hardlinks-same-layer", [[f("a", b"A\n"), hard("b", "a"), hard("c", "b")]]),
    Stack("hardlink-into-lower-layer", [[f("a", b"A\n")], [hard("b", "a")]]),
    Stack("hardlink-survives-whiteout", [[f("a", b"A\n"), hard("b", "a")], [wh("a")]]),
    Stack(
        "hardlink-then-target-replaced", [[f("a", b"old\n"), hard("b", "a")], [f("a", b"new\n")]]
    ),
    Stack("hardlink-to-symlink", [[sym("s", "/target"), hard("h", "s")]]),
    Stack("whiteout-file", [BASE, [wh("etc/a")]]),
    Stack("whiteout-dir", [BASE, [wh("etc/sub")]]),
    Stack("whiteout-missing", [BASE, [wh("etc/none"), wh("none/deeper")]]),
    Stack("whiteout-then-recreate", [BASE, [wh("etc/a"), f("etc/a", b"new\n")]]),
    Stack("recreate-then-whiteout", [BASE, [f("etc/a", b"new\n"), wh("etc/a")]]),
    Stack("whiteout-dir-keeps-same-layer", [BASE, [f("etc/sub/n", b"n\n"), wh("etc/sub")]]),
    Stack("opaque", [BASE, [d("etc"), opq("etc")]]),
    Stack("opaque-keeps-same-layer", [BASE, [f("etc/x"), opq("etc"), f("etc/y")]]),
    Stack("opaque-nested", [BASE, [opq("etc/sub"), f("etc/sub/z")]]),
    Stack("opaque-new-dir", [BASE, [d("n"), f("n/a"), opq("n")]]),
    Stack("file-replaces-dir", [BASE, [f("etc/sub", b"now a file\n")]]),
    Stack("dir-replaces-file", [BASE, [d("etc/a", 0o700), f("etc/a/in")]]),
    Stack("symlink-replaces-file", [BASE, [sym("etc/a", "b")]]),
    Stack("file-replaces-symlink", [[sym("l", "/x")], [f("l", b"real\n")]]),
    Stack("dir-replaces-symlink", [[*BASE, sym("l", "etc")], [d("l"), f("l/own")]]),
    Stack("symlink-replaces-dir", [BASE, [sym("etc/sub", "/tmp")]]),
    Stack("dir-over-dir", [BASE, [d("etc", 0o750, uid=7, gid=8, xattrs={"user.new": b"1"})]]),
    Stack("dir-over-dir-xattrs-replaced", [[d("x", xattrs={"user.old": b"1"})], [d("x")]]),
    Stack("devices", [[d("dev"), E("dev/null", "char", mode=0o666, dev=(1, 3))]]),
    Stack("block-and-fifo", [[E("sda", "block", mode=0o660, dev=(8, 0)), E("p", "fifo")]]),
    Stack("implicit-parents", [[f("a/b/c/d", b"deep\n"), f("a/x")]]),
    Stack("root-entry", [[d("./", 0o750), f("x")]]),
    Stack("merged-usr", [[*USR, sym("lib", "usr/lib"), sym("bin", "usr/bin")], [f("lib/libx.so")]]),
    Stack("absolute-symlink-parent", [[d("real"), sym("etc", "/real")], [f("etc/conf")]]),
    Stack("empty-layer", [BASE, [], [f("after")]]),
    Stack("only-whiteouts", [BASE, [wh("etc/a"), wh("etc/b"), wh("etc/sub")]]),
    Stack("zero-and-big-files", [[f("empty", b""), f("big", bytes(range(256)) * 400)]]),
    Stack("deep-nesting", [[f("/".join(f"n{i}" for i in range(24)) + "/leaf")]]),
    Stack(
        "five-layers",
        [BASE, [f("etc/new")], [wh("etc/a"), d("var")], [opq("etc"), f("etc/only")], [wh("var")]],
    ),
]
