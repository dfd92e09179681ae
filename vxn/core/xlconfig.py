"""The xl config of one guest, rendered from checked values (pure).

Every value passes `_string` (or an integer check) before it reaches the text: a
name, path or argument is refused, not escaped, when it holds anything outside a
small allowlist. So quotes, backslashes, newlines, `#`, `,`, `[` and `]` can never
end a string, a disk spec or a list early, whatever xl's own escape rules are.

The console needs no line: a PV or PVH guest always has the Xen PV console, which
its kernel sees as hvc0 (vxn's data channel) and xenconsoled publishes as a pty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vxn.errors import InvalidArgument

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PATH = re.compile(r"/[A-Za-z0-9_./+@-]{1,4000}")
_CMDLINE = re.compile(r"[A-Za-z0-9 _.:=/+-]{0,1024}")  # no quote, backslash, # or comma
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_BRIDGE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # a Linux interface name
_VDEV = re.compile(r"xvd[a-z]")
ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy")
TYPES = ("pv", "pvh")
MAX_MEMORY_MIB = 1 << 22  # 4 TiB: anything bigger is a typo
MAX_VCPUS = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class XlDisk:
    path: str
    vdev: str  # xvda, xvdb, ...
    writable: bool
    format: str = "raw"


@dataclass(frozen=True, slots=True, kw_only=True)
class XlVif:
    bridge: str
    mac: str


@dataclass(frozen=True, slots=True, kw_only=True)
class XlConfig:
    name: str
    kernel: str
    ramdisk: str
    extra: str  # the kernel command line
    type: str = "pv"
    memory_mib: int = 256
    maxmem_mib: int | None = None  # None: the same as memory (no ballooning up)
    vcpus: int = 1
    disks: tuple[XlDisk, ...] = ()
    vifs: tuple[XlVif, ...] = ()
    uuid: str | None = None
    # preserve: a powered-off guest keeps its domain and XenStore nodes, so vxnd can
    # read its exit state, then destroy it (ARCHITECTURE.md, decision 5).
    on_poweroff: str = "preserve"
    on_reboot: str = "destroy"
    on_crash: str = "preserve"


def guest_type(machine: str) -> str:
    """pv on x86_64, pvh on aarch64. PVH on x86 needs hardware support that xl info
    cannot vouch for: it reports hvm under QEMU TCG too, where PVH guests fail
    (XEN-IN-QEMU.md 3.5), so x86 stays PV until PVH is proven on hardware."""
    if machine in ("aarch64", "arm64"):
        return "pvh"
    if machine in ("x86_64", "amd64"):
        return "pv"
    raise InvalidArgument(f"machine {machine!r}: vxn runs Xen guests on x86_64 and aarch64")


def vdevs(count: int) -> list[str]:
    """xvda, xvdb, ... for `count` disks."""
    if count > 26:
        raise InvalidArgument(f"{count} disks: a guest takes at most 26")
    return [f"xvd{chr(ord('a') + i)}" for i in range(count)]


def render(config: XlConfig) -> str:
    """The config file's text; InvalidArgument names the first bad value."""
    c = config
    lines = [
        f"name = {_string(c.name, _NAME, 'guest name')}",
        f"type = {_choice(c.type, TYPES, 'guest type')}",
    ]
    if c.uuid is not None:
        lines.append(f"uuid = {_string(c.uuid, _UUID, 'uuid')}")
    lines += [
        f"kernel = {_string(c.kernel, _PATH, 'kernel path')}",
        f"ramdisk = {_string(c.ramdisk, _PATH, 'ramdisk path')}",
        f"extra = {_string(c.extra, _CMDLINE, 'kernel command line')}",
        f"memory = {_int(c.memory_mib, 1, MAX_MEMORY_MIB, 'memory (MiB)')}",
        f"maxmem = {_int(c.maxmem_mib or c.memory_mib, c.memory_mib, MAX_MEMORY_MIB, 'maxmem')}",
        f"vcpus = {_int(c.vcpus, 1, MAX_VCPUS, 'vcpus')}",
    ]
    lines += _list("disk", [_disk(d) for d in c.disks])
    lines += _list("vif", [_vif(v) for v in c.vifs])
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        lines.append(f"{key} = {_choice(getattr(c, key), ACTIONS, key)}")
    return "\n".join(lines) + "\n"


def _disk(disk: XlDisk) -> str:
    # target= comes last: xl takes the rest of the spec as the path.
    fmt = _choice(disk.format, ("raw",), "disk format").strip('"')
    vdev = _string(disk.vdev, _VDEV, "disk vdev").strip('"')
    path = _string(disk.path, _PATH, "disk path").strip('"')
    access = "rw" if disk.writable else "ro"
    return f'"format={fmt},vdev={vdev},access={access},target={path}"'


def _vif(vif: XlVif) -> str:
    bridge = _string(vif.bridge, _BRIDGE, "vif bridge").strip('"')
    mac = _string(vif.mac, _MAC, "vif mac").strip('"')
    return f'"bridge={bridge},mac={mac}"'


def _list(key: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return [f"{key} = [", *(f"    {item}," for item in items), "]"]


def _string(value: str, allowed: re.Pattern[str], what: str) -> str:
    """The one place a value becomes an xl string: allowlisted, then double-quoted."""
    if not isinstance(value, str) or not allowed.fullmatch(value):
        raise InvalidArgument(
            f"xl config: {what} {value!r} has characters xl configs cannot carry safely; "
            f"want {allowed.pattern}"
        )
    return f'"{value}"'


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise InvalidArgument(f"xl config: {what} {value!r}: want one of {', '.join(allowed)}")
    return f'"{value}"'


def _int(value: int, low: int, high: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"xl config: {what} {value!r}: want {low} to {high}")
    return str(value)
