"""Images for the real-guest tests, built here like the demo image (nothing downloaded).

app         busybox with an `app` user (uid 1001) in a supplementary group, no USER
distroless  one static binary (/busybox), no shell, no /etc
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from data.imagebuild import (
    APPLETS,
    BUSYBOX,
    LAYER_TYPES,
    OCI_CONFIG,
    Entry,
    ImageSpec,
    Layout,
    _platform,
    canonical,
    config_doc,
    gzip_bytes,
    oci_archive,
    sha256,
    tar_bytes,
)

APP_NAME = "localhost/vxn-app:latest"
DISTROLESS_NAME = "localhost/vxn-distroless:latest"


def app_entries() -> list[Entry]:
    out = [Entry(d, "dir", mode=0o755) for d in ("bin", "etc", "home", "home/app")]
    out += [
        Entry("tmp", "dir", mode=0o1777),
        Entry("bin/busybox", data=BUSYBOX.read_bytes(), mode=0o755),
    ]
    out += [Entry(f"bin/{a}", "symlink", link="busybox", mode=0o777) for a in (*APPLETS, "uname")]
    out += [
        Entry(
            "etc/passwd",
            data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        ),
        Entry("etc/group", data=b"root:x:0:\napp:x:1002:\nextra:x:3000:app,other\n"),
    ]
    return out


def distroless_entries() -> list[Entry]:
    return [Entry("busybox", data=BUSYBOX.read_bytes(), mode=0o755)]


def write_image(out: Path, name: str, entries: list[Entry], spec: ImageSpec) -> Path:
    """An oci-archive of one single-layer image named `name`."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = Layout(Path(tmp))
        tar = tar_bytes(entries)
        layer = layout.add_blob(gzip_bytes(tar), LAYER_TYPES["gzip"])
        config = layout.add_blob(canonical(config_doc(spec, [sha256(tar)])), OCI_CONFIG)
        desc = layout.add_manifest(config, [layer])
        desc["platform"] = _platform("amd64", "")
        layout.write_index([(desc, {"io.containerd.image.name": name})])
        return oci_archive(Path(tmp), out)


def app_image(out: Path) -> Path:
    spec = ImageSpec(entrypoint=None, cmd=["sh"], env=["PATH=/bin"], working_dir="", user="")
    return write_image(out, APP_NAME, app_entries(), spec)


def distroless_image(out: Path) -> Path:
    spec = ImageSpec(
        entrypoint=["/busybox"], cmd=["echo", "distroless"], env=[], working_dir="", user=""
    )
    return write_image(out, DISTROLESS_NAME, distroless_entries(), spec)
