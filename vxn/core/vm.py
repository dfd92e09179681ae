"""A guest as every backend sees it, and the QEMU command line for one, pure.

Both backends boot the same kernel, initramfs and disks. On QEMU the channel is a
virtconsole (hvc0, as on Xen) on a unix socket that QEMU also logs to a file itself;
the kernel's own console is ttyS0, written to another file, so kernel messages never
reach the channel. `-S` creates the guest paused, `-no-shutdown` keeps its exit
state for vxnd, and QMP is how vxnd (or its successor) drives it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vxn.errors import InvalidArgument

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
# The labels vxn puts on every guest it makes (docs/CONTAINERS.md 6): a guest without
# an `origin` is not vxn's, and one with origin "oci-runtime" belongs to vxn-oci-runtime.
# `owner` is the identity of the vxnd state dir that made it: another state dir's
# guests are foreign too.
LABEL_ID, LABEL_IMAGE, LABEL_ORIGIN, LABEL_CREATED = "id", "image", "origin", "created"
LABEL_OWNER = "owner"
ORIGIN_VXN, ORIGIN_OCI_RUNTIME = "vxn", "oci-runtime"


class State(enum.StrEnum):
    PAUSED = "paused"  # created, not started (or stopped by vxn)
    RUNNING = "running"
    SHUTDOWN = "shutdown"  # powered off (or crashed); the exit state waits for vxnd
    GONE = "gone"  # no such guest, or its hypervisor process ended


@dataclass(frozen=True, slots=True, kw_only=True)
class Disk:
    path: str
    read_only: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestConfig:
    name: str
    kernel: str
    initrd: str
    cmdline: str
    disks: tuple[Disk, ...] = ()
    memory_mib: int = 256
    cpus: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)  # kept where the guest cannot write

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise InvalidArgument(f"guest name {self.name!r}: want [a-z0-9][a-z0-9_.-]*")
        check_labels(self.labels, self.name)


def check_labels(labels: Mapping[str, str], guest: str) -> None:
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key) or not value.isprintable() or len(value) > 256:
            raise InvalidArgument(
                f"guest {guest}: label {key!r}={value[:40]!r}: want a [a-z][a-z0-9_]* key "
                "and a printable value of at most 256 characters"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class QemuPaths:
    """The files of one QEMU guest, all in its own directory."""

    qmp: str
    console: str  # the hvc0 socket
    console_log: str  # everything the guest wrote to hvc0, logged by QEMU
    kernel_log: str  # ttyS0: the kernel's messages
    pidfile: str


def qemu_argv(binary: str, config: GuestConfig, paths: QemuPaths, accel: str) -> list[str]:
    """The command line for `config`; `accel` is "kvm" or "tcg"."""
    argv = [
        binary,
        *("-name", f"vxn-{config.name}", "-machine", f"pc,accel={accel}"),
        *("-cpu", "host" if accel == "kvm" else "max"),
        *("-m", str(config.memory_mib), "-smp", str(config.cpus)),
        *("-nodefaults", "-no-user-config", "-display", "none", "-nic", "none"),
        *("-kernel", config.kernel, "-initrd", config.initrd),
        *("-append", config.cmdline),
        *("-serial", f"file:{paths.kernel_log}"),
        *("-device", "virtio-serial-pci,id=vs"),
        *("-chardev", _chardev(paths)),
        *("-device", "virtconsole,chardev=hvc0,bus=vs.0"),
        *("-qmp", f"unix:{paths.qmp},server=on,wait=off"),
        *("-pidfile", paths.pidfile),
        *("-S", "-no-reboot", "-no-shutdown"),
    ]
    for i, disk in enumerate(config.disks):
        ro = ",readonly=on" if disk.read_only else ""
        argv += ["-drive", f"file={_comma(disk.path)},if=none,id=d{i},format=raw{ro}"]
        argv += ["-device", f"virtio-blk-pci,drive=d{i}"]
    return argv


def _chardev(paths: QemuPaths) -> str:
    return (
        f"socket,id=hvc0,path={_comma(paths.console)},server=on,wait=off,"
        f"logfile={_comma(paths.console_log)},logappend=on"
    )


def _comma(path: str) -> str:
    """QEMU option values escape a comma by doubling it."""
    return str(path).replace(",", ",,")


def check_resources(memory_mib: int, cpus: int, minimum_mib: int, max_cpus: int) -> None:
    if memory_mib < minimum_mib:
        raise InvalidArgument(
            f"memory {memory_mib} MiB: a guest needs at least {minimum_mib} MiB; raise -m"
        )
    if not 1 <= cpus <= max_cpus:
        raise InvalidArgument(f"cpus {cpus}: want 1 to {max_cpus}")


def console_tail(text: bytes, lines: int = 12) -> list[str]:
    """The last `lines` readable lines of a console, for error messages."""
    decoded = text.decode("utf-8", "replace").replace("\r", "")
    kept = [line.rstrip() for line in decoded.split("\n") if line.strip()]
    tail = kept[-lines:]
    # A panic's cause precedes its call trace: keep that line too.
    panics = [line for line in kept if "Kernel panic" in line]
    if panics and panics[-1] not in tail:
        tail = [panics[-1], "...", *tail[2 - lines :]]
    return tail
