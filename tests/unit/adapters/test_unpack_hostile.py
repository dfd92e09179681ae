"""Hostile layers: each attack is refused (naming the layer and entry) or contained in
the root. Either way a canary file outside the root, and the listing of the root's
parent, prove nothing outside changed.

    refused:   `..` in a name, a hardlink target or a whiteout; a `.` symlink
               (CVE-2021-29136); a path twice in a layer; a hardlink to a file that is
               not in the image; over-limit bytes, entries or file size; a diff_id
               mismatch
    contained: absolute names (leading / dropped); symlinked parents, absolute or
               climbing (resolved inside the root, as umoci and containerd do); a
               symlink replaced by a directory (the symlink is removed, nothing is
               chmod'ed through it)
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from data import imagebuild as ib
from data.layerstacks import E, d, f, hard, layer_tar, sym

from vxn.adapters.unpack import Layer, Limits, flatten
from vxn.core.digest import Digest
from vxn.errors import FailedPrecondition, InvalidArgument


@dataclass
class Scene:
    tmp: Path
    outside: Path  # a directory next to the root, with a canary
    root: Path

    def listing(self) -> list[tuple[str, int, int]]:
        out = []
        for dirpath, dirs, files in os.walk(self.tmp):
            if Path(dirpath) == self.root or self.root in Path(dirpath).parents:
                continue
            for name in sorted(dirs + files):
                if Path(dirpath, name) == self.root:
                    continue
                st = os.lstat(os.path.join(dirpath, name))
                out.append((os.path.join(dirpath, name), st.st_mode, st.st_size))
        return sorted(out)

    def fresh(self) -> None:
        """For another attempt in the same scene: the last one's root goes first."""
        shutil.rmtree(self.root, ignore_errors=True)

    def flatten(self, *layers: list[E] | bytes, limits: Limits | None = None) -> None:
        flatten([_layer(x) for x in layers], self.root, limits=limits)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"untouched\n")
    os.chmod(outside / "canary", 0o600)
    (outside / "shadow").write_bytes(b"root:secret\n")
    s = Scene(tmp_path, outside, tmp_path / "root")
    before = s.listing()
    yield s
    assert (outside / "canary").read_bytes() == b"untouched\n"
    assert stat.S_IMODE((outside / "canary").stat().st_mode) == 0o600
    assert (outside / "canary").stat().st_nlink == 1
    assert s.listing() == before, "something outside the root changed"


def _layer(content: list[E] | bytes) -> Layer:
    tar = content if isinstance(content, bytes) else layer_tar(content)
    digest = Digest.parse(ib.sha256(tar))
    return Layer(digest=digest, diff_id=digest, blob=io.BytesIO(ib.gzip_bytes(tar, 1)))


def _refused(scene: Scene, match: str, *layers: list[E] | bytes, **kw: Limits) -> str:
    with pytest.raises(InvalidArgument, match=match) as caught:
        scene.flatten(*layers, **kw)
    message = str(caught.value)
    assert message.startswith("layer sha256:"), message
    assert "\n" not in message
    return message


def test_dot_dot_names_are_refused(scene: Scene) -> None:
    message = _refused(scene, r"has '\.\.' in its path", [f("../outside/canary", b"pwned")])
    assert "entry '../outside/canary'" in message
    _refused_again(scene, r"has '\.\.' in its path", [d("a"), f("a/../../outside/x")])


def test_absolute_names_are_contained(scene: Scene) -> None:
    scene.flatten([f(str(scene.outside / "canary"), b"pwned\n"), f("/abs", b"in\n")])
    contained = scene.root / str(scene.outside / "canary").lstrip("/")
    assert contained.read_bytes() == b"pwned\n"
    assert (scene.root / "abs").read_bytes() == b"in\n"


@pytest.mark.parametrize("how", ["absolute", "climbing", "root"])
def test_writes_through_a_symlink_stay_in_the_root(scene: Scene, how: str) -> None:
    outside = str(scene.outside)
    target = {"absolute": outside, "climbing": "../" * 12 + outside[1:], "root": "/"}[how]
    scene.flatten([sym("evil", target)], [f("evil/canary", b"pwned\n"), f("evil/new", b"new\n")])
    assert not (scene.outside / "new").exists()
    assert os.readlink(scene.root / "evil") == target  # the link is kept, as data
    landed = scene.root / ("" if how == "root" else outside[1:])
    assert (landed / "canary").read_bytes() == b"pwned\n"


def test_a_write_through_a_symlink_of_the_same_layer_stays_in_the_root(scene: Scene) -> None:
    scene.flatten([sym("evil", str(scene.outside)), f("evil/canary", b"pwned\n")])
    inside = scene.root / str(scene.outside).lstrip("/") / "canary"
    assert inside.read_bytes() == b"pwned\n"


@pytest.mark.parametrize("name", [".", "./", "/.", "/", "./."])
def test_a_root_symlink_is_refused_cve_2021_29136(scene: Scene, name: str) -> None:
    _refused(scene, "changes the type of the root directory", [sym(name, str(scene.outside))])


def test_a_symlink_to_a_host_dir_then_chmod_changes_nothing_outside(scene: Scene) -> None:
    scene.flatten(
        [sym("etc", str(scene.outside)), sym("etc2", str(scene.outside / "canary"))],
        [d("etc", 0o777), f("etc2", b"replaced\n", mode=0o4777)],
    )
    assert stat.S_IMODE((scene.root / "etc").lstat().st_mode) == 0o777
    assert not (scene.root / "etc").is_symlink()
    assert (scene.root / "etc2").read_bytes() == b"replaced\n"


def test_hardlinks_to_host_files_are_refused(scene: Scene) -> None:
    shadow = str(scene.outside / "shadow")
    _refused(scene, "hardlink to a missing file", [hard("h", shadow)])
    _refused_again(scene, r"has '\.\.' in its path", [hard("h", "../outside/shadow")])
    _refused_again(scene, "hardlink to a missing file", [sym("o", shadow), hard("h", "o/x")])
    _refused_again(scene, "hardlink to a missing file", [sym("o", "/"), hard("h", f"o{shadow}")])


def test_whiteouts_outside_their_directory_are_refused_or_harmless(scene: Scene) -> None:
    _refused(scene, r"has '\.\.' in its path", [f("../outside/.wh.canary")])
    _refused_again(scene, r"is a whiteout of \.\.", [d("a"), f("a/.wh...")])
    _refused_again(scene, "is a whiteout of nothing", [f("a/.wh.")])
    # Through a symlink: resolved inside the root, where there is nothing to delete.
    scene.fresh()
    scene.flatten([sym("l", str(scene.outside))], [f("l/.wh.canary")])


def test_an_entry_that_is_both_a_dir_and_a_file_is_refused(scene: Scene) -> None:
    _refused(scene, "'x' appears twice in the layer", [d("x"), f("x/in"), f("x", b"file")])


def test_a_decompression_bomb_stops_at_the_byte_limit(scene: Scene) -> None:
    bomb = layer_tar([f("zeros", bytes(48 << 20))])  # 48 MiB of zeros: ~50 KB of gzip
    limits = Limits(max_bytes=8 << 20)
    _refused(scene, "exceed the 8388608-byte limit", bomb, limits=limits)


def test_a_file_over_the_size_limit_is_refused_before_it_is_written(scene: Scene) -> None:
    limits = Limits(max_file_size=1000)
    big = [f("big", bytes(1001))]
    _refused(scene, "'big' is 1001 bytes, over the 1000-byte file limit", big, limits=limits)


def test_too_many_entries(scene: Scene) -> None:
    many = [f(f"f{i}") for i in range(30)]
    _refused(scene, "over 10 entries in the image", many, limits=Limits(max_entries=10))


def test_a_truncated_layer_names_the_entry(scene: Scene) -> None:
    cut = layer_tar([f("a", bytes(5000))])[:2000]
    _refused(scene, "entry 'a': malformed tar: the archive ends inside an entry's data", cut)


def test_a_diff_id_mismatch_fails_the_flatten(scene: Scene) -> None:
    tar = layer_tar([f("a", b"what the blob holds\n")])
    claimed = Digest.parse(ib.sha256(layer_tar([f("a", b"what the config says\n")])))
    blob = io.BytesIO(gzip.compress(tar))  # its own digest is right: the store checked it
    layer = Layer(digest=Digest.parse(ib.sha256(blob.getvalue())), diff_id=claimed, blob=blob)
    with pytest.raises(InvalidArgument, match=f"the image config says {claimed}"):
        flatten([layer], scene.root)


def _refused_again(scene: Scene, match: str, *layers: list[E] | bytes) -> None:
    scene.fresh()
    _refused(scene, match, *layers)


def test_flatten_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(FailedPrecondition, match="needs root, to keep the image's owners"):
        flatten([_layer([f("a")])], tmp_path / "root")
    assert not (tmp_path / "root").exists()
