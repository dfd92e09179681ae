"""The Dom0 side of a run against a fake hypervisor: events, failures, cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from vxn.core import protocol
from vxn.core.guestspec import GuestSpec
from vxn.engine.guestrun import Boot, Timeline, run_guest
from vxn.errors import Internal, Unavailable
from vxn.testing.fake_hypervisor import FakeHypervisor, Script, normal

SPEC = GuestSpec(argv=("echo", "hi"), env=(), cwd="/", user="", hostname="h")


def make_boot(tmp: Path, timeout: float = 5.0) -> Boot:
    base = tmp / "base.cpio"
    base.write_bytes(b"base")
    return Boot(
        name="g1",
        spec=SPEC,
        kernel=tmp / "vmlinux",
        initramfs=base,
        ramdisk=tmp / "initrd",
        disks=(),
        memory_mib=256,
        cpus=1,
        boot_timeout=timeout,
    )


async def run(hv: FakeHypervisor, boot: Boot) -> tuple[int, list[tuple[int, bytes]], list[str]]:
    out: list[tuple[int, bytes]] = []
    errors: list[str] = []

    async def output(stream: int, data: bytes) -> None:
        out.append((stream, data))

    async def error(message: str) -> None:
        errors.append(message)

    code = await run_guest(hv, boot, output, error, Timeline())
    return code, out, errors


async def test_output_and_exit_code(tmp_path: Path) -> None:
    hv = FakeHypervisor(normal(b"hi\n", 42))
    assert await run(hv, make_boot(tmp_path)) == (42, [(1, b"hi\n")], [])
    assert hv.destroyed == ["g1"]
    assert (tmp_path / "initrd").stat().st_mode & 0o777 == 0o600


async def test_the_ramdisk_is_the_base_then_the_spec(tmp_path: Path) -> None:
    seen: list[dict[str, list[str]]] = []

    def script(spec: dict[str, list[str]]) -> list[bytes]:
        seen.append(spec)
        return normal()(spec)

    await run(FakeHypervisor(script), make_boot(tmp_path))
    assert seen[0]["arg"] == ["echo", "hi"]
    assert (tmp_path / "initrd").read_bytes().startswith(b"base")


async def test_an_error_frame_reaches_the_caller(tmp_path: Path) -> None:
    def script(spec: dict[str, list[str]]) -> list[bytes]:
        nonce = spec["nonce"][0]
        error = protocol.frame(protocol.Frame.ERROR, b'exec: "x": not found')
        return [protocol.start_marker(nonce) + error + protocol.exit_frame(127)]

    assert await run(FakeHypervisor(script), make_boot(tmp_path)) == (
        127,
        [],
        ['exec: "x": not found'],
    )


def silent(spec: dict[str, list[str]]) -> list[bytes]:
    return [b"Linux version 6.1\n"]


async def test_a_guest_that_never_says_hello_times_out(tmp_path: Path) -> None:
    hv = FakeHypervisor(silent, stop=False, boot_log=b"[ 0.1] booting\n")
    with pytest.raises(Unavailable, match=r"did not start in 0 s before guest-init said hello"):
        await run(hv, make_boot(tmp_path, timeout=0.2))
    assert hv.destroyed == ["g1"]


async def test_a_guest_that_stops_early_shows_its_console(tmp_path: Path) -> None:
    hv = FakeHypervisor(silent, boot_log=b"Kernel panic - not syncing: VFS\n")
    with pytest.raises(Unavailable) as caught:
        await run(hv, make_boot(tmp_path))
    assert str(caught.value).startswith("guest g1: stopped before guest-init said hello")
    assert "  | Kernel panic - not syncing: VFS" in str(caught.value)
    assert "  | Linux version 6.1" in str(caught.value)


async def test_a_protocol_error_is_internal_and_the_guest_is_destroyed(tmp_path: Path) -> None:
    bad: Script = lambda spec: [protocol.start_marker(spec["nonce"][0]) + b"\x09\0\0\0\0"]  # noqa: E731
    hv = FakeHypervisor(bad)
    with pytest.raises(Internal, match="bad frame header"):
        await run(hv, make_boot(tmp_path))
    assert hv.destroyed == ["g1"]
