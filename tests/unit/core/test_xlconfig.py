"""The xl config renderer: golden files, and hostile values that must not inject."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vxn.core.xlconfig import XlConfig, XlDisk, XlVif, guest_type, render, vdevs
from vxn.errors import InvalidArgument

GOLDEN = Path(__file__).parents[2] / "data" / "xlcfg"

PV = XlConfig(
    name="vxn-3f2a9c",
    kernel="/var/lib/vxn/guest/vmlinux-6.1.0-50-amd64",
    ramdisk="/run/vxn/guests/vxn-3f2a9c/ramdisk",
    extra="console=ttyS0 quiet panic=1 rdinit=/init",
    uuid="6f1b2c3d-0a1b-4c2d-8e3f-112233445566",
    memory_mib=256,
    disks=(
        XlDisk(path="/var/lib/vxn/rootfs/sha256-ab12.ext4", vdev="xvda", writable=False),
        XlDisk(path="/var/lib/vxn/containers/3f2a/upper.ext4", vdev="xvdb", writable=True),
    ),
)
PVH = XlConfig(
    name="web.1",
    type="pvh",
    kernel="/boot/vmlinux",
    ramdisk="/boot/initrd",
    extra="console=hvc0",
    memory_mib=512,
    maxmem_mib=1024,
    vcpus=2,
    vifs=(XlVif(bridge="xenbr0", mac="00:16:3e:12:34:56"),),
    on_reboot="restart",
)


@pytest.mark.parametrize(("config", "golden"), [(PV, "pv-two-disks.cfg"), (PVH, "pvh-vif.cfg")])
def test_golden(config: XlConfig, golden: str) -> None:
    assert render(config) == (GOLDEN / golden).read_text()


HOSTILE = [
    'a"b',  # ends the string
    "a\nb",  # a new line: a new key
    "a#b",  # a comment
    "a,b",  # a new disk-spec key
    "a]b",  # ends the list
    "a\\b",  # an escape
    "a'b",
    "",
]


@pytest.mark.parametrize("bad", HOSTILE[:-1])
@pytest.mark.parametrize("field", ["name", "kernel", "ramdisk", "extra"])
def test_hostile_strings_are_refused(field: str, bad: str) -> None:
    value = bad if field in ("name", "extra") else f"/x/{bad}"
    with pytest.raises(InvalidArgument, match="cannot carry safely"):
        render(dataclasses.replace(PV, **{field: value}))


def test_an_empty_name_or_relative_path_is_refused() -> None:
    for change in ({"name": ""}, {"kernel": "vmlinux"}, {"ramdisk": ""}):
        with pytest.raises(InvalidArgument, match="cannot carry safely"):
            render(dataclasses.replace(PV, **change))
    assert 'extra = ""' in render(dataclasses.replace(PV, extra=""))


@pytest.mark.parametrize("bad", HOSTILE[:-1])
def test_hostile_disk_paths_are_refused(bad: str) -> None:
    disk = XlDisk(path=f"/x/{bad}", vdev="xvda", writable=False)
    with pytest.raises(InvalidArgument, match="disk path"):
        render(dataclasses.replace(PV, disks=(disk,)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "hvm"}, "guest type 'hvm'"),
        ({"memory_mib": 0}, "memory"),
        ({"memory_mib": True}, "memory"),
        ({"maxmem_mib": 128}, "maxmem 128: want 256"),
        ({"vcpus": 0}, "vcpus"),
        ({"on_poweroff": 'preserve"\nx="'}, "on_poweroff"),
        ({"uuid": "not-a-uuid"}, "uuid"),
        ({"vifs": (XlVif(bridge="br0", mac="00:16:3e:zz:00:00"),)}, "vif mac"),
        ({"vifs": (XlVif(bridge="br0,script=/x", mac="00:16:3e:00:00:00"),)}, "vif bridge"),
        ({"disks": (XlDisk(path="/d", vdev="hda", writable=True),)}, "disk vdev"),
        ({"disks": (XlDisk(path="/d", vdev="xvda", writable=True, format="qcow2"),)}, "format"),
    ],
)
def test_bad_values_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        render(dataclasses.replace(PV, **change))  # type: ignore[arg-type]


def test_every_line_is_one_key() -> None:
    text = render(PV)
    keys = [line.split(" = ")[0] for line in text.splitlines() if not line.startswith((" ", "]"))]
    assert keys == [
        *("name", "type", "uuid", "kernel", "ramdisk", "extra", "memory", "maxmem", "vcpus"),
        *("disk", "on_poweroff", "on_reboot", "on_crash"),
    ]


def test_guest_type() -> None:
    assert guest_type("x86_64") == "pv"
    assert guest_type("aarch64") == "pvh"
    with pytest.raises(InvalidArgument, match="riscv64"):
        guest_type("riscv64")


def test_vdevs() -> None:
    assert vdevs(2) == ["xvda", "xvdb"]
    with pytest.raises(InvalidArgument, match="at most 26"):
        vdevs(27)
