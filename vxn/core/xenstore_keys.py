"""Where vxn reads and writes in XenStore, and how it reads what a guest may forge (pure).

Labels live under `/vm/<uuid>/vxn/`. libxl makes `/vm/<uuid>` owned by domain 0
with read-only access for the guest, nodes domain 0 creates below inherit that, and
libxl removes the whole subtree when the domain is destroyed: so a guest can read its
labels but never write them, and they leave with the domain. The uuid is vxn's own
(set in the xl config), and a domain's `vm` node, which names it, is written by libxl
under the guest's read-only `/local/domain/<domid>`. Everything under the guest's
`data/`, and its `console/`, is guest-writable: untrusted, validated here.
"""

from __future__ import annotations

import re

from vxn.errors import InvalidArgument

EXIT_CODE = "data/vxn-exit-code"  # written by the guest's helper (PROTOCOL.md)
_VM = re.compile(r"/vm/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TTY = re.compile(r"/dev/pts/[0-9]{1,6}")
_CODE = re.compile(rb"[0-9]{1,3}")
# Everything printable in ASCII stays as is; the rest (and %) as %XX of its UTF-8.
_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}
_ESCAPE = re.compile(rb"%([0-9A-F]{2})")


DOMAINS = "/local/domain"


def domain(domid: int) -> str:
    return f"{DOMAINS}/{domid}"


def name_key(domid: int) -> str:
    """libxl's name of the domain; the guest can read it, not write it."""
    return f"{domain(domid)}/name"


def vm_key(domid: int) -> str:
    return f"{domain(domid)}/vm"


def console_tty_key(domid: int) -> str:
    return f"{domain(domid)}/console/tty"


def exit_code_key(domid: int) -> str:
    return f"{domain(domid)}/{EXIT_CODE}"


def vm_path(uuid: str) -> str:
    return f"/vm/{uuid}"


def labels_dir(vm: str) -> str:
    if not _VM.fullmatch(vm):
        raise InvalidArgument(f"xenstore: {vm!r} is not a /vm/<uuid> path")
    return f"{vm}/vxn"


def encode_label(value: str) -> bytes:
    return b"".join(bytes([b]) if b in _SAFE else b"%%%02X" % b for b in value.encode())


def decode_label(raw: bytes) -> str:
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), raw).decode("utf-8", "replace")


def exit_code(raw: bytes | None) -> int | None:
    """The guest's own exit code node: None unless it is a plain 0..255."""
    if raw is None or not _CODE.fullmatch(raw):
        return None
    code = int(raw)
    return code if code <= 255 else None


def console_tty(raw: bytes | None) -> str | None:
    """xenconsoled's pty for the guest, if the node names one: the guest can write
    console/, so anything but /dev/pts/N is refused."""
    if raw is None:
        return None
    path = raw.decode("ascii", "replace")
    return path if _TTY.fullmatch(path) else None
