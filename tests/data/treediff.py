"""Snapshots of a file tree, from a directory or from an ext4 image (debugfs, no mount),
and a diff that prints the first differences.

A snapshot maps each path (relative, "" for the root) to what the oracle comparison
covers: type, mode, owner, link target, content hash, device numbers, xattrs, and
the hardlink group (every path sharing the inode). mtimes are left out: umoci gives
implicit directories the time of the unpack.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

SKIPPED_XATTRS = ("security.selinux",)


@dataclass(frozen=True)
class Node:
    kind: str  # file, dir, symlink, char, block, fifo
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    target: str = ""  # symlink target
    sha: str = ""  # regular file content
    rdev: tuple[int, int] = (0, 0)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    group: tuple[str, ...] = ()  # hardlink group, when nlink > 1


Tree = dict[str, Node]
_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
}


def snapshot(root: Path) -> Tree:
    raw: dict[str, tuple[os.stat_result, Node]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in ["", *dirs, *files] if dirpath == str(root) else [*dirs, *files]:
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root) if name else ""
            st = os.lstat(path)
            raw[rel] = (st, _node_of(path, st))
    return _with_groups({rel: (st.st_ino, st.st_nlink, n) for rel, (st, n) in raw.items()})


def _node_of(path: str, st: os.stat_result) -> Node:
    kind = _KINDS[stat.S_IFMT(st.st_mode)]
    node = Node(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    xattrs = tuple(
        sorted(
            (k, os.getxattr(path, k, follow_symlinks=False))
            for k in os.listxattr(path, follow_symlinks=False)
            if k not in SKIPPED_XATTRS
        )
    )
    return Node(
        kind,
        node.mode,
        node.uid,
        node.gid,
        target=os.readlink(path) if kind == "symlink" else "",
        sha=_sha(Path(path).read_bytes()) if kind == "file" else "",
        rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else (0, 0),
        xattrs=xattrs,
    )


def _with_groups(nodes: dict[str, tuple[int, int, Node]]) -> Tree:
    by_inode: dict[int, list[str]] = {}
    for rel, (ino, nlink, node) in nodes.items():
        if nlink > 1 and node.kind != "dir":
            by_inode.setdefault(ino, []).append(rel)
    out: Tree = {}
    for rel, (ino, _, node) in nodes.items():
        group = tuple(sorted(by_inode.get(ino, [])))
        out[rel] = Node(**{**node.__dict__, "group": group if len(group) > 1 else ()})
    return out


def diff(ours: Tree, theirs: Tree, limit: int = 10) -> list[str]:
    """The first `limit` differences, one line each."""
    lines = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path), theirs.get(path)
        if a == b:
            continue
        if a is None or b is None:
            lines.append(f"/{path}: only in {'theirs' if a is None else 'ours'}: {a or b}")
        else:
            fields = [
                f"{k}: {getattr(a, k)!r} != {getattr(b, k)!r}"
                for k in a.__dict__
                if getattr(a, k) != getattr(b, k)
            ]
            lines.append(f"/{path}: " + "; ".join(fields))
        if len(lines) == limit:
            break
    return lines


def disk_view(tree: Tree) -> Tree:
    """What an ext4 image built by mke2fs -d can hold of `tree`: mke2fs 1.47 copies a
    hardlinked symlink as separate symlinks (same target), so their group is dropped."""
    return {p: replace(n, group=()) if n.kind == "symlink" else n for p, n in tree.items()}


def assert_same(ours: Tree, theirs: Tree, what: str) -> None:
    problems = diff(ours, theirs)
    assert not problems, f"{what}: trees differ (ours vs theirs):\n" + "\n".join(problems)


# --- ext4 images, read with debugfs --------------------------------------------------

_LS = re.compile(r"^/(\d+)/(\d+)/(\d+)/(\d+)/(.*)/(\d*)/$")
_MAJMIN = re.compile(r"Device major/minor number: (\d+):(\d+)")
_FAST = re.compile(r'Fast link dest: "(.*)"$', re.M)


def debugfs(image: Path, commands: list[str]) -> list[str]:
    """Run commands in one debugfs; returns each command's output."""
    with tempfile.NamedTemporaryFile("w", suffix=".cmds") as f:
        f.write("".join(c + "\n" for c in commands))
        f.flush()
        out = subprocess.run(
            ["debugfs", "-f", f.name, str(image)], capture_output=True, text=True, check=True
        ).stdout
    return out.split("debugfs: ")[1:]


def image_snapshot(image: Path) -> Tree:
    """The tree an ext4 image holds, read without mounting it."""
    entries: dict[str, tuple[int, int, int, int]] = {}  # path -> inode, mode, uid, gid
    level = [""]
    while level:
        outputs = debugfs(image, [f'ls -p "/{p}"' for p in level])
        nxt = []
        for parent, out in zip(level, outputs, strict=True):
            for line in out.splitlines()[1:]:
                m = _LS.match(line)
                if not m or m[5] in ("", ".", "..") or m[1] == "0":
                    continue
                rel = f"{parent}/{m[5]}".lstrip("/")
                entries[rel] = (int(m[1]), int(m[2], 8), int(m[3]), int(m[4]))
                if stat.S_ISDIR(int(m[2], 8)):
                    nxt.append(rel)
        level = nxt
    root = debugfs(image, ['stat "/"'])[0]
    mode = int(re.search(r"Mode:\s+(\d+)", root)[1], 8)  # type: ignore[index]
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", root)
    entries[""] = (2, stat.S_IFDIR | mode, int(owner[1]), int(owner[2]))  # type: ignore[index]
    return _image_nodes(image, entries)


def _image_nodes(image: Path, entries: dict[str, tuple[int, int, int, int]]) -> Tree:
    paths = sorted(entries)
    stats = debugfs(image, [f'stat "/{p}"' for p in paths])
    xattr_names = debugfs(image, [f'ea_list "/{p}"' for p in paths])
    counts: dict[int, int] = {}
    for ino, *_ in entries.values():
        counts[ino] = counts.get(ino, 0) + 1
    with tempfile.TemporaryDirectory() as tmp:
        data = _dump(image, entries, stats, Path(tmp))
        nodes = {}
        for p, st_out, ea_out in zip(paths, stats, xattr_names, strict=True):
            ino, mode, uid, gid = entries[p]
            kind = _KINDS[stat.S_IFMT(mode)]
            node = Node(
                kind,
                stat.S_IMODE(mode),
                uid,
                gid,
                target=data.get(p, b"").decode("utf-8", "surrogateescape")
                if kind == "symlink"
                else "",
                sha=_sha(data.get(p, b"")) if kind == "file" else "",
                rdev=_rdev(st_out) if kind in ("char", "block") else (0, 0),
                xattrs=_xattrs(image, p, ea_out, Path(tmp)),
            )
            nodes[p] = (ino, counts[ino], node)
    return _with_groups(nodes)


def _dump(
    image: Path, entries: dict[str, tuple[int, int, int, int]], stats: list[str], tmp: Path
) -> dict[str, bytes]:
    """File contents and symlink targets (fast ones from stat, slow ones dumped)."""
    out: dict[str, bytes] = {}
    dumps = []
    for i, (p, st_out) in enumerate(zip(sorted(entries), stats, strict=True)):
        mode = entries[p][1]
        fast = _FAST.search(st_out)
        if stat.S_ISLNK(mode) and fast:
            out[p] = fast[1].encode("utf-8", "surrogateescape")
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            dumps.append((p, tmp / f"d{i}"))
    if dumps:
        debugfs(image, [f'dump "/{p}" "{f}"' for p, f in dumps])
        out.update({p: f.read_bytes() for p, f in dumps})
    return out


def _xattrs(image: Path, path: str, listing: str, tmp: Path) -> tuple[tuple[str, bytes], ...]:
    names = [
        m[1] for m in re.finditer(r"^  (\S+) \(\d+\)", listing, re.M) if m[1] not in SKIPPED_XATTRS
    ]
    if not names:
        return ()
    files = [tmp / f"x{i}" for i in range(len(names))]
    debugfs(image, [f'ea_get -f "{f}" "/{path}" {n}' for n, f in zip(names, files, strict=True)])
    return tuple(sorted((n, f.read_bytes()) for n, f in zip(names, files, strict=True)))


def _rdev(stat_out: str) -> tuple[int, int]:
    m = _MAJMIN.search(stat_out)
    assert m, stat_out
    return int(m[1]), int(m[2])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
