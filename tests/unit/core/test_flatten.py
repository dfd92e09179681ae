"""The flatten planner, table-driven: layer stacks in, the tree its ops make out.

`Model` applies ops to a dict, the way the real executor applies them to a
directory; each case names the tree a stack must give (umoci's result, which the
integration suite checks against umoci itself). A few tests look at the ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from vxn.core.flatten import (
    DevicePolicy,
    Entry,
    Hardlink,
    Kind,
    MakeDir,
    MakeNode,
    Meta,
    Op,
    Parts,
    Planner,
    Remove,
    SetDirMeta,
    SetTimes,
    Symlink,
    WriteFile,
)
from vxn.errors import InvalidArgument


def F(name: str, size: int = 1, mode: int = 0o644, **kw: Any) -> Entry:
    return Entry(name=name, kind=Kind.FILE, size=size, mode=mode, **kw)


def D(name: str, mode: int = 0o755, **kw: Any) -> Entry:
    return Entry(name=name, kind=Kind.DIR, mode=mode, **kw)


def S(name: str, target: str) -> Entry:
    return Entry(name=name, kind=Kind.SYMLINK, link=target, mode=0o777)


def H(name: str, target: str) -> Entry:
    return Entry(name=name, kind=Kind.HARDLINK, link=target)


def C(name: str) -> Entry:
    return Entry(name=name, kind=Kind.CHAR, major=1, minor=3, mode=0o666)


@dataclass
class Node:
    what: str  # "d", "f<size>", "l>target", "c"
    inode: int
    meta: Meta | None = None


@dataclass
class Model:
    """A filesystem as a dict, changed only by ops (what tree.Tree does to a real one)."""

    nodes: dict[Parts, Node] = field(default_factory=lambda: {(): Node("d", 0)})
    next_inode: int = 1
    times: dict[Parts, float] = field(default_factory=dict)

    def apply(self, op: Op) -> None:
        if isinstance(op, Remove):
            assert op.path in self.nodes, f"remove of missing {op.path}"
            self.nodes = {p: n for p, n in self.nodes.items() if p[: len(op.path)] != op.path}
            return
        if isinstance(op, SetTimes):
            assert self.nodes[op.path].what == "d"
            self.times[op.path] = op.mtime
            return
        if isinstance(op, SetDirMeta):
            assert self.nodes[op.path].what == "d"
            self.nodes[op.path].meta = op.meta
            return
        assert op.path not in self.nodes, f"create over existing {op.path}"
        assert self.nodes[op.path[:-1]].what == "d", f"parent of {op.path} is not a dir"
        if isinstance(op, Hardlink):
            self.nodes[op.path] = self.nodes[op.target]
            return
        what = {MakeDir: "d", MakeNode: "c"}.get(type(op), "")
        if isinstance(op, WriteFile):
            what = f"f{op.size}"
        elif isinstance(op, Symlink):
            what = f"l>{op.target}"
        self.nodes[op.path] = Node(what, self.next_inode, op.meta)
        self.next_inode += 1

    def tree(self) -> dict[str, str]:
        return {"/".join(p): n.what for p, n in self.nodes.items() if p}


def flatten(*layers: list[Entry], devices: DevicePolicy = DevicePolicy.CREATE) -> Model:
    planner, model = Planner(devices), Model()
    for i, layer in enumerate(layers):
        planner.begin_layer(f"sha256:layer{i}")
        for entry in layer:
            for op in planner.plan(entry):
                model.apply(op)
    for op in planner.finish():
        model.apply(op)
    return model


BASE = [D("etc"), F("etc/a", 1), F("etc/b", 2), D("etc/sub"), F("etc/sub/c", 3)]

CASES: list[tuple[str, list[list[Entry]], dict[str, str]]] = [
    (
        "plain files and dirs",
        [BASE],
        {"etc": "d", "etc/a": "f1", "etc/b": "f2", "etc/sub": "d", "etc/sub/c": "f3"},
    ),
    (
        "whiteout deletes a lower file",
        [BASE, [F("etc/.wh.a")]],
        {"etc": "d", "etc/b": "f2", "etc/sub": "d", "etc/sub/c": "f3"},
    ),
    (
        "whiteout of a lower dir removes its tree",
        [BASE, [F("etc/.wh.sub")]],
        {"etc": "d", "etc/a": "f1", "etc/b": "f2"},
    ),
    (
        "whiteout after a file of the same layer keeps that file",
        [BASE, [F("etc/a", 9), F("etc/.wh.a")]],
        {"etc": "d", "etc/a": "f9", "etc/b": "f2", "etc/sub": "d", "etc/sub/c": "f3"},
    ),
    (
        "whiteout before a file of the same layer: lower gone, new kept",
        [BASE, [F("etc/.wh.a"), F("etc/a", 9)]],
        {"etc": "d", "etc/a": "f9", "etc/b": "f2", "etc/sub": "d", "etc/sub/c": "f3"},
    ),
    (
        "whiteout of a dir keeps what its own layer wrote below it",
        [BASE, [F("etc/sub/new", 7), F("etc/.wh.sub")]],
        {"etc": "d", "etc/a": "f1", "etc/b": "f2", "etc/sub": "d", "etc/sub/new": "f7"},
    ),
    (
        "opaque dir hides lower children",
        [BASE, [F("etc/.wh..wh..opq")]],
        {"etc": "d"},
    ),
    (
        "opaque dir keeps same-layer children, before and after it",
        [BASE, [F("etc/x", 5), F("etc/.wh..wh..opq"), F("etc/y", 6)]],
        {"etc": "d", "etc/x": "f5", "etc/y": "f6"},
    ),
    (
        "opaque on a dir made by its own layer changes nothing",
        [BASE, [D("new"), F("new/a", 4), F("new/.wh..wh..opq")]],
        {**{"etc": "d", "etc/a": "f1", "etc/b": "f2", "etc/sub": "d", "etc/sub/c": "f3"}}
        | {"new": "d", "new/a": "f4"},
    ),
    (
        "whiteouts of missing paths and under missing dirs are no-ops",
        [[F("a")], [F(".wh.nothing"), F("no/such/.wh.x"), F("no/.wh..wh..opq")]],
        {"a": "f1"},
    ),
    (
        "a file replaces a dir and its tree",
        [BASE, [F("etc/sub", 8)]],
        {"etc": "d", "etc/a": "f1", "etc/b": "f2", "etc/sub": "f8"},
    ),
    (
        "a dir replaces a file",
        [BASE, [D("etc/a"), F("etc/a/in", 4)]],
        {"etc": "d", "etc/a": "d", "etc/a/in": "f4", "etc/b": "f2", "etc/sub": "d"}
        | {"etc/sub/c": "f3"},
    ),
    (
        "a dir over a dir keeps its children",
        [BASE, [D("etc", mode=0o700)]],
        {"etc": "d", "etc/a": "f1", "etc/b": "f2", "etc/sub": "d", "etc/sub/c": "f3"},
    ),
    (
        "a symlink replaces a dir, a dir replaces a symlink",
        [[D("a"), F("a/x"), S("b", "a")], [S("a", "b"), D("b")]],
        {"a": "l>b", "b": "d"},
    ),
    (
        "a hardlink into an earlier layer",
        [[F("a", 3)], [H("b", "a")]],
        {"a": "f3", "b": "f3"},
    ),
    (
        "a hardlink survives a later whiteout of its target",
        [[F("a", 3), H("b", "a")], [F(".wh.a")]],
        {"b": "f3"},
    ),
    (
        "writes through a symlinked parent land inside the root (merged /usr)",
        [[D("usr"), D("usr/lib"), S("lib", "usr/lib")], [F("lib/libc.so", 6)]],
        {"usr": "d", "usr/lib": "d", "lib": "l>usr/lib", "usr/lib/libc.so": "f6"},
    ),
    (
        "an absolute symlink parent is resolved inside the root",
        [[D("real"), S("etc", "/real")], [F("etc/passwd", 2)]],
        {"real": "d", "etc": "l>/real", "real/passwd": "f2"},
    ),
    (
        "a symlink climbing above the root stops at the root",
        [[D("d"), S("d/up", "../../../../x")], [F("d/up/f", 2)]],
        {"d": "d", "d/up": "l>../../../../x", "x": "d", "x/f": "f2"},
    ),
    (
        "a whiteout through a symlinked parent",
        [[D("real"), F("real/a"), S("link", "real")], [F("link/.wh.a")]],
        {"real": "d", "link": "l>real"},
    ),
    (
        "missing parents are made",
        [[F("a/b/c", 2)]],
        {"a": "d", "a/b": "d", "a/b/c": "f2"},
    ),
    (
        "absolute names and ./ prefixes are contained",
        [[F("/abs", 2), F("./dot", 3), D("/")]],
        {"abs": "f2", "dot": "f3"},
    ),
    (
        "a dir named later than its children keeps them",
        [[F("late/x", 2), D("late", mode=0o700)]],
        {"late": "d", "late/x": "f2"},
    ),
    (
        "device nodes are made by default",
        [[D("dev"), C("dev/null")]],
        {"dev": "d", "dev/null": "c"},
    ),
]


@pytest.mark.parametrize(("layers", "tree"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_changeset_rules(layers: list[list[Entry]], tree: dict[str, str]) -> None:
    assert flatten(*layers).tree() == tree


ERRORS: list[tuple[str, list[list[Entry]], str]] = [
    ("dot-dot in a name", [[F("a/../../x")]], r"'a/../../x' has '\.\.' in its path"),
    ("dot-dot in a hardlink", [[F("a"), H("b", "../a")]], r"has '\.\.' in its path"),
    ("bare whiteout", [[F("etc/.wh.")]], "is a whiteout of nothing"),
    ("whiteout of .", [[F(".wh..")]], r"is a whiteout of \."),
    ("whiteout of ..", [[F("d/.wh...")]], r"is a whiteout of \.\."),
    ("root as a symlink (CVE-2021-29136)", [[S(".", "/")]], "changes the type of the root"),
    ("root as a file", [[F("./")]], "changes the type of the root"),
    ("a path twice in a layer", [[F("a"), F("a")]], "appears twice in the layer"),
    ("a dir and a file", [[D("x"), F("x")]], "'x' appears twice in the layer"),
    ("a file and a dir", [[F("x"), D("./x/")]], "'./x/' appears twice in the layer"),
    ("a file over its own layer's tree", [[F("x/y"), F("x")]], "replaces a dir of the same"),
    ("a symlink over its own layer's tree", [[F("d/y"), S("d", "/")]], "replaces a dir of the"),
    ("a parent that is a file", [[F("a")], [F("a/b")]], "has a parent a that is not a dir"),
    ("a hardlink to nothing", [[H("b", "a")]], r"hardlink to a missing file \(a\)"),
    ("a hardlink to a dir", [[D("d"), H("b", "d")]], "hardlink to a directory"),
    ("a hardlink to itself", [[F("a")], [H("a", "a")]], "hardlink to itself"),
    ("a hardlink to the root", [[H("b", "/")]], "hardlink to the root"),
    ("a symlink loop in a path", [[S("a", "b"), S("b", "a")], [F("a/x")]], "too many levels"),
    ("a NUL in a name", [[F("a\x00b")]], "NUL byte"),
    ("a whiteout as a parent", [[F(".wh.x/y")]], "has a whiteout as a parent"),
    ("an empty symlink target", [[S("a", "")]], "empty or invalid target"),
]


@pytest.mark.parametrize(("layers", "match"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_malformed_and_hostile_entries_are_refused(layers: list[list[Entry]], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as caught:
        flatten(*layers)
    assert str(caught.value).startswith(f"layer sha256:layer{len(layers) - 1}: entry ")


def test_ops_of_a_dir_over_a_dir_and_a_replacement() -> None:
    planner = Planner()
    planner.begin_layer("l1")
    assert planner.plan(D("d", mtime=5.0)) == [MakeDir(("d",), _meta(0o755, 5.0))]
    assert planner.plan(F("d/f", 3)) == [WriteFile(("d", "f"), _meta(0o644), 3)]
    planner.begin_layer("l2")
    assert planner.plan(D("d", mode=0o700, mtime=9.0)) == [SetDirMeta(("d",), _meta(0o700, 9.0))]
    assert planner.plan(S("d/f", "/x")) == [
        Remove(("d", "f")),
        Symlink(("d", "f"), "/x", _meta(0o777)),
    ]
    assert planner.finish() == [SetTimes(("d",), 9.0), SetTimes((), 0.0)]


def test_modes_owners_mtimes_and_xattrs_are_kept() -> None:
    caps = b"\x01\x00\x00\x02\x00\x20\x00\x00"
    entry = F(
        "bin/ping",
        mode=0o104755,  # a tar mode may carry type bits; only the low 12 bits count
        uid=0,
        gid=1001,
        mtime=1.5,
        xattrs={"security.capability": caps, "security.selinux": b"x", "user.a": b"b"},
    )
    model = flatten([entry])
    meta = model.nodes[("bin", "ping")].meta
    assert meta == Meta(
        mode=0o4755,
        uid=0,
        gid=1001,
        mtime=1.5,
        xattrs={"security.capability": caps, "user.a": b"b"},
    )
    assert model.nodes[("bin",)].meta == Meta(mode=0o755, uid=0, gid=0, mtime=0.0)


def test_directory_mtimes_come_last_deepest_first() -> None:
    model = Planner()
    model.begin_layer("l")
    for entry in (D("a", mtime=1.0), D("a/b", mtime=2.0), F("a/b/f"), D("c", mtime=3.0)):
        model.plan(entry)
    assert model.finish() == [
        SetTimes(("a", "b"), 2.0),
        SetTimes(("a",), 1.0),
        SetTimes(("c",), 3.0),
        SetTimes((), 0.0),
    ]


def test_an_implicit_parent_takes_the_entrys_mtime() -> None:
    planner = Planner()
    planner.begin_layer("l")
    planner.plan(F("a/f", mtime=7.0))
    assert planner.finish()[0] == SetTimes(("a",), 7.0)


def test_root_entry_sets_root_metadata() -> None:
    planner = Planner()
    planner.begin_layer("l")
    assert planner.plan(D("./", mode=0o700, mtime=4.0)) == [SetDirMeta((), _meta(0o700, 4.0))]
    assert planner.finish() == [SetTimes((), 4.0)]


@pytest.mark.parametrize(
    ("policy", "tree"),
    [(DevicePolicy.CREATE, {"p": "c", "dev": "c"}), (DevicePolicy.SKIP, {})],
)
def test_device_policy(policy: DevicePolicy, tree: dict[str, str]) -> None:
    fifo = Entry(name="p", kind=Kind.FIFO)
    assert flatten([fifo, C("dev")], devices=policy).tree() == tree


def test_device_policy_reject() -> None:
    with pytest.raises(InvalidArgument, match="'dev' is a char node; the policy rejects them"):
        flatten([C("dev")], devices=DevicePolicy.REJECT)


def test_hardlinks_share_the_inode() -> None:
    model = flatten([F("a", 3)], [H("b", "a"), H("c", "/b")])
    inodes = {model.nodes[(n,)].inode for n in ("a", "b", "c")}
    assert len(inodes) == 1


def test_a_hardlink_target_is_resolved_through_symlinked_parents() -> None:
    model = flatten([D("real"), F("real/f", 4), S("ln", "real")], [H("h", "ln/f")])
    assert model.tree()["h"] == "f4"


def _meta(mode: int, mtime: float = 0.0) -> Meta:
    return Meta(mode=mode, uid=0, gid=0, mtime=mtime)
