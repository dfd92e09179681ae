"""A pure-Python OCI image builder for tests: nothing downloaded, no Docker.

Deterministic (fixed mtimes, owners and gzip mtime=0), so the same call gives the
same digests. Writes OCI image layouts (single images, a multi-arch index with an
attestation entry, ref annotations in index.json) and packs them as an oci-archive
or a docker-archive (`docker save`, legacy or with an OCI layout inside). The
damage helpers below make the broken inputs the safety tests feed the loader.

    layer 1: a busybox-ish tree (the static /bin/busybox if present), dirs, symlinks,
             a setuid file, a char device, files that layer 2 deletes
    layer 2: a whiteout, an opaque dir, a hardlink, absolute and relative symlinks
    layer 3: (big_mb > 0) pseudo-random files, half noise and half text
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MTIME = 1_700_000_000
CREATED = "2024-01-02T03:04:05Z"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
}
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "true", "false", "sleep", "env", "id")
Json = dict[str, Any]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# --- layers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar entry: `kind` is file, dir, symlink, hardlink or chardev."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    pax: dict[str, str] = field(default_factory=dict)


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chardev": tarfile.CHRTYPE,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.mtime, info.linkname = types[e.kind], e.mode, MTIME, e.link
            info.uname = info.gname = ""
            info.pax_headers = dict(e.pax)
            if e.kind == "chardev":
                info.devmajor, info.devminor = 1, 3
            info.size = len(e.data) if e.kind == "file" else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def base_entries() -> list[Entry]:
    busybox = BUSYBOX.read_bytes() if BUSYBOX.is_file() else b"#!/bin/sh\necho busybox\n"
    out = [Entry(d, "dir", mode=0o755) for d in ("bin", "etc", "dev", "data", "opt", "opt/opaque")]
    out += [Entry("tmp", "dir", mode=0o1777), Entry("bin/busybox", data=busybox, mode=0o755)]
    out += [Entry(f"bin/{a}", "symlink", link="busybox", mode=0o777) for a in APPLETS]
    out += [
        Entry(
            "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/data:/bin/sh\n"
        ),
        Entry("etc/group", data=b"root:x:0:\nuser:x:1000:\n"),
        Entry("etc/hostname", data=b"vxn-test\n"),
        Entry("etc/toremove", data=b"deleted by layer 2\n"),
        Entry("opt/opaque/a", data=b"a\n"),
        Entry("opt/opaque/b", data=b"b\n"),
        Entry("data/setuid", data=b"#!/bin/sh\n", mode=0o4755),
        Entry("data/with-xattr", data=b"x\n", pax={"SCHILY.xattr.user.vxn": "hello"}),
        Entry("dev/null", "chardev", mode=0o666),
    ]
    return out


def second_entries() -> list[Entry]:
    return [
        Entry("etc/.wh.toremove"),
        Entry("opt/opaque/.wh..wh..opq"),
        Entry("opt/opaque/c", data=b"c\n"),
        Entry("data/hl-src", data=b"linked\n"),
        Entry("data/hl-dst", "hardlink", link="data/hl-src"),
        Entry("usr", "dir", mode=0o755),
        Entry("usr/local", "dir", mode=0o755),
        Entry("usr/local/bin", "dir", mode=0o755),
        Entry("usr/local/bin/hello", "symlink", link="/bin/busybox", mode=0o777),
        Entry("data/rel-link", "symlink", link="../etc/hostname", mode=0o777),
        Entry("etc/motd", data=b"welcome to vxn test image\n"),
    ]


def big_entries(mb: int, seed: int = 7) -> list[Entry]:
    """About `mb` MiB of 16-512 KiB files: half noise, half compressible text."""
    rng = random.Random(seed)
    words = [b"alpha", b"bravo", b"xen", b"domu", b"layer", b"blob", b"oci", b"tar"]
    out, total, i = [Entry("big", "dir", mode=0o755)], 0, 0
    while total < mb * 1024 * 1024:
        size = rng.randint(16, 512) * 1024
        if i % 2:
            data = b" ".join(rng.choice(words) for _ in range(size // 4))[:size]
        else:
            data = rng.randbytes(size)
        out.append(Entry(f"big/f{i:05d}", data=data))
        total, i = total + size, i + 1
    return out


def small_entries(count: int, seed: int = 11) -> list[Entry]:
    """`count` small text files (0.1-4 KiB) spread over 100-file directories."""
    rng = random.Random(seed)
    out = [Entry("small", "dir", mode=0o755)]
    for i in range(count):
        if i % 100 == 0:
            out.append(Entry(f"small/d{i // 100:04d}", "dir", mode=0o755))
        data = (b"line %d of a small file\n" % i) * rng.randint(4, 160)
        out.append(Entry(f"small/d{i // 100:04d}/f{i:06d}.txt", data=data))
    return out


# --- images and layouts --------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    arch: str = "amd64"
    variant: str = ""
    big_mb: int = 0
    small_files: int = 0  # a layer of this many small files
    compression: str = "gzip"  # or "" for plain tar layers (as docker save writes them)
    entrypoint: list[str] | None = field(default_factory=lambda: ["/bin/busybox"])
    cmd: list[str] | None = field(default_factory=lambda: ["sh", "-c", "echo hello"])
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/bin:/bin", "VXN_TEST=1"])
    working_dir: str = "/data"
    user: str = "1000:1000"
    labels: dict[str, str] = field(default_factory=lambda: {"org.example.test": "yes"})
    marker: str = ""  # a file of this text in layer 2, to make distinct images


@dataclass(frozen=True)
class Built:
    """An image written to a layout: its manifest descriptor and its parts."""

    manifest: Json  # descriptor (mediaType, digest, size[, platform])
    config: Json
    config_bytes: bytes
    layers: list[Json]  # descriptors
    layer_tars: list[bytes]  # uncompressed, for docker-archives
    diff_ids: list[str]

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def config_digest(self) -> str:
        return str(self.config["digest"])


def config_doc(spec: ImageSpec, diff_ids: list[str]) -> Json:
    config: Json = {
        "Entrypoint": spec.entrypoint,
        "Cmd": spec.cmd,
        "Env": spec.env,
        "WorkingDir": spec.working_dir,
        "User": spec.user,
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/data": {}},
        "Labels": spec.labels,
        "StopSignal": "SIGTERM",
    }
    doc: Json = {
        "created": CREATED,
        "architecture": spec.arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": "imagebuild"} for _ in diff_ids],
    }
    if spec.variant:
        doc["variant"] = spec.variant
    return doc


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def add_blob(self, data: bytes, media_type: str) -> Json:
        digest = sha256(data)
        self.blob_path(digest).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_manifest(self, config: Json, layers: list[Json]) -> Json:
        """An OCI manifest of `config` and `layers`, stored; returns its descriptor."""
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
        return self.add_blob(canonical(doc), OCI_MANIFEST)

    def add_image(self, spec: ImageSpec | None = None) -> Built:
        spec = spec or ImageSpec()
        contents = [base_entries(), second_entries()]
        if spec.marker:
            contents[1].append(Entry("etc/marker", data=spec.marker.encode()))
        if spec.big_mb:
            contents.append(big_entries(spec.big_mb))
        if spec.small_files:
            contents.append(small_entries(spec.small_files))
        tars = [tar_bytes(c) for c in contents]
        diff_ids = [sha256(t) for t in tars]
        pack = gzip_bytes if spec.compression == "gzip" else bytes
        layers = [self.add_blob(pack(t), LAYER_TYPES[spec.compression]) for t in tars]
        config_bytes = canonical(config_doc(spec, diff_ids))
        config = self.add_blob(config_bytes, OCI_CONFIG)
        desc = self.add_manifest(config, layers)
        desc["platform"] = _platform(spec.arch, spec.variant)
        return Built(desc, config, config_bytes, layers, tars, diff_ids)

    def add_attestation(self, subject: Built) -> Json:
        """A BuildKit-style attestation manifest for `subject` (never a platform match)."""
        statement = self.add_blob(
            b'{"_type":"https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json"
        )
        config = self.add_blob(b"{}", OCI_CONFIG)
        desc = self.add_manifest(config, [statement])
        desc["platform"] = {"architecture": "unknown", "os": "unknown"}
        desc["annotations"] = {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject.digest,
        }
        return desc

    def add_index(self, images: list[Built], *, attestation: bool = True) -> Json:
        entries = [dict(b.manifest) for b in images]
        if attestation:
            entries.append(self.add_attestation(images[0]))
        return self.add_blob(
            canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}), OCI_INDEX
        )

    def write_index(self, entries: list[tuple[Json, dict[str, str]]]) -> None:
        """index.json: each (descriptor, annotations), e.g. {ref.name: "v1"}."""
        manifests = []
        for desc, notes in entries:
            d = dict(desc)
            if notes:
                d["annotations"] = notes
            manifests.append(d)
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        (self.root / "index.json").write_bytes(canonical(doc))


def _platform(arch: str, variant: str) -> Json:
    p = {"architecture": arch, "os": "linux"}
    return p | {"variant": variant} if variant else p


def ref_name(name: str) -> dict[str, str]:
    return {"org.opencontainers.image.ref.name": name}


def simple_layout(root: Path, spec: ImageSpec | None = None, name: str = "v1") -> Built:
    """A layout holding one image, named by a ref.name annotation."""
    layout = Layout(root)
    built = layout.add_image(spec)
    layout.write_index([(built.manifest, ref_name(name) if name else {})])
    return built


def multiarch_layout(root: Path, name: str = "multi") -> tuple[Json, Built, Built]:
    """amd64 + arm64/v8 + an attestation entry, behind one index."""
    layout = Layout(root)
    amd = layout.add_image(ImageSpec(arch="amd64"))
    arm = layout.add_image(ImageSpec(arch="arm64", variant="v8"))
    index = layout.add_index([amd, arm])
    layout.write_index([(index, ref_name(name))])
    return index, amd, arm


# --- archives ------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uname, info.gname = MTIME, "", ""
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _open_out(out: Path, compress: bool) -> tarfile.TarFile:
    if compress:
        return tarfile.open(out, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT)
    return tarfile.open(out, "w", format=tarfile.PAX_FORMAT)


def oci_archive(layout_dir: Path, out: Path, *, compress: bool = False, prefix: str = "") -> Path:
    """Tar a layout dir the way the CLI does (members sorted; `prefix` may be "./")."""
    with _open_out(out, compress) as tar:
        for path in sorted(layout_dir.rglob("*")):
            name = prefix + path.relative_to(layout_dir).as_posix()
            _add(tar, name, None if path.is_dir() else path.read_bytes())
    return out


def docker_archive(
    out: Path, images: list[tuple[Built, list[str]]], *, repositories: bool = True
) -> Path:
    """A legacy `docker save` tar: <config hex>.json, <id>/layer.tar (a symlink to the
    first copy when a layer repeats), manifest.json and repositories."""
    manifest, repos, written = [], {}, {}
    with _open_out(out, False) as tar:
        for built, tags in images:
            config_hex = built.config_digest.removeprefix("sha256:")
            _add(tar, f"{config_hex}.json", built.config_bytes)
            layer_names = []
            for i, data in enumerate(built.layer_tars):
                layer_id = hashlib.sha256(f"{config_hex}/{i}".encode()).hexdigest()
                _add(tar, layer_id)
                _add(tar, f"{layer_id}/VERSION", b"1.0")
                diff = built.diff_ids[i]
                if diff in written:
                    _add(tar, f"{layer_id}/layer.tar", link=f"../{written[diff]}/layer.tar")
                else:
                    _add(tar, f"{layer_id}/layer.tar", data)
                    written[diff] = layer_id
                layer_names.append(f"{layer_id}/layer.tar")
            manifest.append(
                {"Config": f"{config_hex}.json", "RepoTags": tags or None, "Layers": layer_names}
            )
            for tag in tags:
                repo, _, t = tag.rpartition(":")
                repos.setdefault(repo, {})[t] = layer_names[-1].split("/")[0]
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        if repositories:
            _add(tar, "repositories", json.dumps(repos).encode())
    return out


def docker_oci_archive(layout_dir: Path, out: Path, built: Built, tags: list[str]) -> Path:
    """A Docker 25+ save: an OCI layout plus manifest.json naming blobs by path."""
    entry = {
        "Config": f"blobs/sha256/{built.config_digest.removeprefix('sha256:')}",
        "RepoTags": tags,
        "Layers": [f"blobs/sha256/{d['digest'].removeprefix('sha256:')}" for d in built.layers],
    }
    (layout_dir / "manifest.json").write_bytes(json.dumps([entry]).encode())
    return oci_archive(layout_dir, out)


# --- damage --------------------------------------------------------------------------


def flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def copy_layout(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_manifest(layout_dir: Path, change: Callable[[Json], None], entry: int = 0) -> Json:
    """Edit the manifest of index.json entry `entry` (and repoint the entry at it)."""
    index_path = layout_dir / "index.json"
    index = json.loads(index_path.read_bytes())
    desc = index["manifests"][entry]
    layout = Layout(layout_dir)
    doc = json.loads(layout.blob_path(desc["digest"]).read_bytes())
    change(doc)
    data = canonical(doc)
    new = layout.add_blob(data, desc["mediaType"])
    desc.update(digest=new["digest"], size=new["size"])
    index_path.write_bytes(canonical(index))
    return doc


def replace_blob_bytes(layout_dir: Path, old_digest: str, data: bytes) -> Json:
    """Store `data` as a new blob (e.g. malformed JSON) and make index.json point to it."""
    index_path = layout_dir / "index.json"
    index = json.loads(index_path.read_bytes())
    new = Layout(layout_dir).add_blob(data, OCI_MANIFEST)
    for desc in index["manifests"]:
        if desc["digest"] == old_digest:
            desc.update(digest=new["digest"], size=new["size"])
    index_path.write_bytes(canonical(index))
    return new


# --- command line: the setup script's demo image and the benchmarks' big one -----------

DEMO_NAME = "localhost/vxn-demo:latest"


def main(argv: list[str]) -> None:
    """`imagebuild.py demo OUT.tar` or `imagebuild.py big MB OUT_DIR` (an OCI layout)."""
    if len(argv) == 2 and argv[0] == "demo":
        with tempfile.TemporaryDirectory() as tmp:
            layout = Layout(Path(tmp))
            built = layout.add_image()
            layout.write_index([(built.manifest, {"io.containerd.image.name": DEMO_NAME})])
            oci_archive(Path(tmp), Path(argv[1]))
    elif len(argv) == 3 and argv[0] == "big":
        simple_layout(Path(argv[2]), ImageSpec(big_mb=int(argv[1])), name="big")
    else:
        sys.exit("usage: imagebuild.py demo OUT.tar | imagebuild.py big MB OUT_DIR")


if __name__ == "__main__":
    main(sys.argv[1:])
