"""The flatten planner: OCI layer entries in, filesystem ops out, one entry at a time.

Pure and incremental, so every layer is read once, as a stream. The planner keeps a
model of the tree built so far and applies the image-spec changeset rules to it:
whiteouts delete from lower layers only, an opaque dir hides lower children but not
its own layer's, a dir over a dir keeps the children and takes the new metadata, any
other type change removes the old node (with its whole tree) first.

Every path in an op is *resolved*: symlinks in parent components are followed inside
the model, clamped at the root, as umoci and containerd do, so no op path ever holds
a symlink and the executor never has to follow one. Leaves are never followed.
What is refused (with the layer and entry): `..` in a name or a hardlink target, a
type change of the root (umoci CVE-2021-29136), a path twice in a layer, a parent
that is not a directory, a hardlink to a missing node or a directory, a bare `.wh.`.
Absolute names are contained: the leading `/` is dropped, as GNU tar and umoci do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

from vxn.errors import InvalidArgument

# Part of the rootfs cache key: bump it whenever the same layers would flatten differently.
VERSION = 1
MAX_SYMLINKS = 40  # as Linux's path walk
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# Host-specific xattrs that are never restored (umoci skips the same ones).
IGNORED_XATTRS = frozenset({"security.selinux", "system.nfs4_acl"})

Parts = tuple[str, ...]  # a resolved path: components under the root, no symlinks among them


class Kind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


SPECIAL = frozenset({Kind.CHAR, Kind.BLOCK, Kind.FIFO})


class DevicePolicy(Enum):
    """What to do with fifos and device nodes. A guest is a VM, so creating them is safe."""

    CREATE = "create"
    SKIP = "skip"
    REJECT = "reject"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One tar entry, as the executor read it (names still raw)."""

    name: str
    kind: Kind
    mode: int = 0o644  # permission bits incl. setuid/setgid/sticky
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    size: int = 0
    link: str = ""  # symlink target, or hardlink target (a name in the archive)
    major: int = 0
    minor: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    mode: int
    uid: int
    gid: int
    mtime: float
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


# --- ops: what the executor does, in order ------------------------------------------


@dataclass(frozen=True, slots=True)
class Remove:
    """Remove a node; a directory goes with its whole tree."""

    path: Parts


@dataclass(frozen=True, slots=True)
class MakeDir:
    path: Parts
    meta: Meta  # mtime is applied by SetTimes at the end


@dataclass(frozen=True, slots=True)
class SetDirMeta:
    """A dir over a dir: owner, mode and xattrs (replaced as a set) of the new entry."""

    path: Parts
    meta: Meta


@dataclass(frozen=True, slots=True)
class WriteFile:
    """Create a regular file from the entry's data."""

    path: Parts
    meta: Meta
    size: int


@dataclass(frozen=True, slots=True)
class Symlink:
    path: Parts
    target: str  # verbatim: it is data, never followed here
    meta: Meta


@dataclass(frozen=True, slots=True)
class Hardlink:
    path: Parts
    target: Parts


@dataclass(frozen=True, slots=True)
class MakeNode:
    path: Parts
    kind: Kind  # CHAR, BLOCK or FIFO
    major: int
    minor: int
    meta: Meta


@dataclass(frozen=True, slots=True)
class SetTimes:
    """A directory's mtime, set after everything below it is written."""

    path: Parts
    mtime: float


Op = Remove | MakeDir | SetDirMeta | WriteFile | Symlink | Hardlink | MakeNode | SetTimes


@dataclass(slots=True)
class _Node:
    kind: Kind
    layer: int  # the last layer that wrote this node or something below it
    children: dict[str, _Node] | None = None
    target: str = ""
    mtime: float = 0.0


class Planner:
    """Feed it `begin_layer`, then `plan(entry)` for each entry, then `finish()`."""

    def __init__(self, devices: DevicePolicy = DevicePolicy.CREATE) -> None:
        self.devices = devices
        self._root = _Node(Kind.DIR, layer=0, children={})
        self._layer = 0
        self._label = ""
        self._seen: set[Parts] = set()

    def begin_layer(self, label: str) -> None:
        """`label` names the layer in errors (its digest)."""
        self._layer += 1
        self._label = label
        self._seen = set()

    def plan(self, entry: Entry) -> list[Op]:
        parts = self._clean(entry.name, entry.name)
        if not parts:
            return self._plan_root(entry)
        if parts[-1].startswith(WHITEOUT):
            return self._plan_whiteout(entry, parts)
        if entry.kind in SPECIAL and self.devices is not DevicePolicy.CREATE:
            if self.devices is DevicePolicy.REJECT:
                raise self._error(entry, f"is a {entry.kind.value} node; the policy rejects them")
            return []
        ops: list[Op] = []
        parent, where = self._parent(entry, parts[:-1], ops, create=True)
        assert parent is not None
        assert parent.children is not None
        name = parts[-1]
        path = (*where, name)
        if path in self._seen:
            raise self._error(entry, "appears twice in the layer; the layer is malformed")
        self._seen.add(path)
        old = parent.children.get(name)
        if entry.kind is Kind.DIR and old is not None and old.kind is Kind.DIR:
            old.mtime = entry.mtime
            ops.append(SetDirMeta(path, _meta(entry)))
        else:
            if old is not None and old.layer == self._layer:
                # Its own layer wrote there (or below): one path cannot be two things.
                raise self._error(entry, f"replaces a {old.kind.value} of the same layer")
            node, op = self._new_node(entry, path, old)
            if old is not None:
                ops.append(Remove(path))
            parent.children[name] = node
            ops.append(op)
        self._touch(path)
        return ops

    def finish(self) -> list[Op]:
        """Directory mtimes, deepest first, so writing below a dir cannot change its time."""
        return [SetTimes(path, node.mtime) for path, node in _dirs_post_order(self._root, ())]

    # --- entry kinds ---------------------------------------------------------------------

    def _plan_root(self, entry: Entry) -> list[Op]:
        # umoci CVE-2021-29136: a `.` symlink would send every later write elsewhere.
        if entry.kind is not Kind.DIR:
            raise self._error(entry, "changes the type of the root directory; refused")
        self._root.mtime = entry.mtime
        return [SetDirMeta((), _meta(entry))]

    def _plan_whiteout(self, entry: Entry, parts: Parts) -> list[Op]:
        name = parts[-1]
        opaque = name == OPAQUE
        victim = name.removeprefix(WHITEOUT)
        if not opaque and victim in ("", ".", ".."):
            raise self._error(entry, f"is a whiteout of {victim or 'nothing'}; refused")
        parent, where = self._parent(entry, parts[:-1], [], create=False)
        if parent is None or parent.children is None:
            return []  # nothing below to delete
        if opaque:
            return self._remove_lower(parent, where)
        node = parent.children.get(victim)
        if node is None:
            return []
        return self._remove_lower_node(parent, where, victim, node)

    def _new_node(self, entry: Entry, path: Parts, old: _Node | None) -> tuple[_Node, Op]:
        meta = _meta(entry)
        if entry.kind is Kind.FILE:
            return _Node(Kind.FILE, self._layer), WriteFile(path, meta, entry.size)
        if entry.kind is Kind.DIR:
            node = _Node(Kind.DIR, self._layer, children={}, mtime=entry.mtime)
            return node, MakeDir(path, meta)
        if entry.kind is Kind.SYMLINK:
            if not entry.link or "\x00" in entry.link:
                raise self._error(entry, "is a symlink with an empty or invalid target")
            node = _Node(Kind.SYMLINK, self._layer, target=entry.link)
            return node, Symlink(path, entry.link, meta)
        if entry.kind is Kind.HARDLINK:
            return self._hardlink(entry, path, old)
        node = _Node(entry.kind, self._layer)
        return node, MakeNode(path, entry.kind, entry.major, entry.minor, meta)

    def _hardlink(self, entry: Entry, path: Parts, old: _Node | None) -> tuple[_Node, Op]:
        target_parts = self._clean(entry.link, f"{entry.name} -> {entry.link}")
        if not target_parts:
            raise self._error(entry, "is a hardlink to the root directory; refused")
        parent, where = self._parent(entry, target_parts[:-1], [], create=False)
        target = (
            None
            if parent is None or parent.children is None
            else parent.children.get(target_parts[-1])
        )
        resolved = (*where, target_parts[-1])
        if target is None or target.kind is Kind.DIR:
            what = "a missing file" if target is None else "a directory"
            raise self._error(entry, f"is a hardlink to {what} ({entry.link}); refused")
        if resolved == path or (old is not None and _within(resolved, path)):
            raise self._error(entry, f"is a hardlink to itself or below itself ({entry.link})")
        return _Node(target.kind, self._layer, target=target.target), Hardlink(path, resolved)

    # --- the model -------------------------------------------------------------------------

    def _parent(
        self, entry: Entry, parts: Parts, ops: list[Op], *, create: bool
    ) -> tuple[_Node | None, Parts]:
        """Resolve a parent path in the model, following symlinks inside the root.

        With `create`, missing dirs are made (ops appended, as umoci's MkdirAll does);
        without, a missing or non-dir component gives (None, partial path).
        """
        node = self._root
        where: Parts = ()
        todo = list(parts)
        hops = 0
        while todo:
            name = todo.pop(0)
            assert node.children is not None
            child = node.children.get(name)
            if child is None:
                if not create:
                    return None, where
                child = _Node(Kind.DIR, self._layer, children={}, mtime=entry.mtime)
                node.children[name] = child
                ops.append(MakeDir((*where, name), _implicit_meta()))
            if child.kind is Kind.SYMLINK:
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise self._error(entry, "has too many levels of symlinks in its path")
                node, where, todo = self._follow(child.target, where, todo)
                continue
            if child.kind is not Kind.DIR:
                if not create:
                    return None, where
                shown = "/".join((*where, name))
                raise self._error(entry, f"has a parent {shown} that is not a directory")
            node, where = child, (*where, name)
        return node, where

    def _follow(self, target: str, where: Parts, todo: list[str]) -> tuple[_Node, Parts, list[str]]:
        # A symlink is resolved as if the root were `/`: `..` stops at the root.
        base = [] if target.startswith("/") else list(where)
        for part in target.split("/"):
            if part == "..":
                if base:
                    base.pop()
            elif part not in ("", "."):
                base.append(part)
        # Re-walk from the root: the target's own components may be symlinks too.
        return self._root, (), [*base, *todo]

    def _remove_lower(self, parent: _Node, where: Parts) -> list[Op]:
        assert parent.children is not None
        ops: list[Op] = []
        for name, node in list(parent.children.items()):
            ops += self._remove_lower_node(parent, where, name, node)
        return ops

    def _remove_lower_node(self, parent: _Node, where: Parts, name: str, node: _Node) -> list[Op]:
        """Delete what lower layers made; keep what this layer wrote (umoci's upperPaths)."""
        assert parent.children is not None
        path = (*where, name)
        if node.layer != self._layer:
            del parent.children[name]
            return [Remove(path)]
        if node.kind is Kind.DIR:
            return self._remove_lower(node, path)
        return []

    def _touch(self, path: Parts) -> None:
        node = self._root
        node.layer = self._layer
        for name in path:
            assert node.children is not None
            node = node.children[name]
            node.layer = self._layer

    def _clean(self, raw: str, shown: str) -> Parts:
        if "\x00" in raw:
            raise self._error_name(shown, "has a NUL byte in its name")
        parts = tuple(p for p in raw.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self._error_name(shown, "has '..' in its path; refused")
        if any(p.startswith(WHITEOUT) for p in parts[:-1]):
            raise self._error_name(shown, "has a whiteout as a parent; refused")
        return parts

    def _error(self, entry: Entry, why: str) -> InvalidArgument:
        return self._error_name(entry.name, why)

    def _error_name(self, name: str, why: str) -> InvalidArgument:
        return InvalidArgument(f"layer {self._label}: entry {name!r} {why}")


def _meta(entry: Entry) -> Meta:
    xattrs = {k: v for k, v in entry.xattrs.items() if k not in IGNORED_XATTRS}
    return Meta(
        mode=entry.mode & 0o7777, uid=entry.uid, gid=entry.gid, mtime=entry.mtime, xattrs=xattrs
    )


def _implicit_meta() -> Meta:
    # A parent the layer never named: what umoci's MkdirAll(0777) gives under umask 022.
    return Meta(mode=0o755, uid=0, gid=0, mtime=0.0)


def _within(path: Parts, top: Parts) -> bool:
    return path[: len(top)] == top


def _dirs_post_order(node: _Node, path: Parts) -> Iterator[tuple[Parts, _Node]]:
    assert node.children is not None
    for name, child in node.children.items():
        if child.kind is Kind.DIR:
            yield from _dirs_post_order(child, (*path, name))
    yield path, node
