"""The xl adapter against a stand-in `xl` script: argv, parsing, and xl's stderr in errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vxn.adapters.xl import Xl, parse_info, parse_list
from vxn.core.vm import State
from vxn.errors import Unavailable
from vxn.testing.fake_xenstored import FakeXenstored
from vxn.testing.fake_xl import FakeXen
from vxn.testing.xl_contract import XlContract

LIST = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     2     r-----      42.1
vxn-a                                        3   256     1     --p---       0.0
vxn-b                                        4   256     1     ---s--       3.2
odd name                                     5   128     1     -b----       1.0
"""
INFO = """host                   : dom0
virt_caps              : pv hvm hap shadow
total_memory           : 3071
free_memory            : 2014
xen_version            : 4.17.5
"""


@pytest.fixture
def xl(tmp_path: Path) -> Xl:
    """An `xl` that logs its argv and answers from files named after its verb."""
    script = tmp_path / "xl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/argv\n'
        f"d={tmp_path}\n"
        'if [ -f "$d/$1.err" ]; then cat "$d/$1.err" >&2; exit 1; fi\n'
        'if [ "$1 $2" = "list vxn-a" ]; then\n'
        '    head -1 "$d/list.out"; grep "^vxn-a " "$d/list.out"; exit 0\n'
        "fi\n"
        'if [ "$1" = list ] && [ -n "$2" ]; then\n'
        '    echo "$2 is an invalid domain identifier (rc=-6)" >&2; exit 1\n'
        "fi\n"
        '[ -f "$d/$1.out" ] && cat "$d/$1.out"; exit 0\n'
    )
    script.chmod(0o755)
    (tmp_path / "list.out").write_text(LIST)
    (tmp_path / "info.out").write_text(INFO)
    return Xl(str(script))


def test_parse_list() -> None:
    domains = parse_list(LIST)
    assert [(d.name, d.domid, d.memory_mib) for d in domains] == [
        ("Domain-0", 0, 1024),
        ("vxn-a", 3, 256),
        ("vxn-b", 4, 256),
        ("odd name", 5, 128),
    ]
    assert [d.state for d in domains] == [
        State.RUNNING,
        State.PAUSED,
        State.SHUTDOWN,
        State.RUNNING,
    ]


def test_parse_info() -> None:
    info = parse_info(INFO)
    assert (info.free_memory_mib, info.xen_version) == (2014, "4.17.5")
    with pytest.raises(Unavailable, match="no free_memory"):
        parse_info("host : x\n")


async def test_calls_and_lookups(xl: Xl, tmp_path: Path) -> None:
    await xl.create(tmp_path / "g.cfg")
    await xl.unpause("vxn-a")
    await xl.destroy("vxn-a")
    assert await xl.domid("vxn-a") == 3
    assert await xl.domain("vxn-zz") is None
    assert (await xl.info()).free_memory_mib == 2014
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:3] == [f"create -p {tmp_path}/g.cfg", "unpause vxn-a", "destroy vxn-a"]


async def test_an_error_carries_xls_stderr(xl: Xl, tmp_path: Path) -> None:
    (tmp_path / "create.err").write_text(
        "libxl: error: libxl_dom.c:590: xc_dom_chk_alloc_pages: segment kernel too large\n"
    )
    with pytest.raises(Unavailable, match=r"xl create -p .* failed \(exit 1\): .*kernel too large"):
        await xl.create(tmp_path / "g.cfg")


@pytest.fixture
async def fake_xl(tmp_path: Path) -> AsyncIterator[Xl]:
    async with FakeXenstored(tmp_path / "xs") as xs, FakeXen(tmp_path, xs) as xen:
        yield Xl(xen.binary)


class TestFakeXl(XlContract):
    """The fake `xl` the unit tier's XenBackend tests use keeps the real one's contract."""

    @pytest.fixture
    def xl(self, fake_xl: Xl) -> Xl:
        return fake_xl

    @pytest.fixture
    def guest(self, tmp_path: Path) -> tuple[Path, Path]:
        for name in ("vmlinux", "initrd"):
            (tmp_path / name).write_bytes(b"x")
        return tmp_path / "vmlinux", tmp_path / "initrd"

    @pytest.fixture
    def name(self) -> str:
        return "vxn-contract"
