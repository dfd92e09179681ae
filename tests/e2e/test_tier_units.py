"""Fast, hermetic tests of the tier's own helpers (no QEMU, no image, no network).

These also run in the fast suite: they need nothing the tier builds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e import checkout, junit
from e2e.aptsource import configured_source
from e2e.dom0.agent import console_lines
from e2e.dom0image import Dom0Image, _module_order
from e2e.xenvm import BootError, Share, XenVM

JUNIT = b"""<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.e2e.xen.test_a" name="test_ok" time="0.5"/>
<testcase classname="tests.e2e.xen.test_a" name="test_bad" time="1.0">
  <failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.e2e.xen.test_a" name="test_skip" time="0">
  <skipped message="no xen"/></testcase>
<testcase classname="tests.e2e.xen.test_a" name="test_teardown" time="0.1">
  <failure message="f"/><error message="teardown broke"/></testcase>
</testsuite></testsuites>"""


def test_junit_outcomes() -> None:
    cases = junit.parse(JUNIT)
    assert [(c.nodeid.split("::")[1], c.outcome) for c in cases] == [
        ("test_ok", "passed"),
        ("test_bad", "failed"),
        ("test_skip", "skipped"),
        ("test_teardown", "error"),
    ]
    assert len(junit.problems(cases)) == 3  # a skip fails the tier too


def test_junit_zero_tests_is_a_problem() -> None:
    assert junit.problems(junit.parse(b"<testsuites><testsuite/></testsuites>")) == [
        "no test ran inside the Dom0"
    ]


def test_junit_round_trips_over_the_console() -> None:
    noise = ["(XEN) something", "VXN-JUNIT-B64 id=other QUJD"]
    text = "\n".join([*noise, *console_lines("j1", JUNIT), "VXN-JOB-DONE id=j1 rc=1"])
    assert junit.from_console(text, "j1") == JUNIT


def test_apt_source_from_deb822_and_one_line_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VXN_E2E_MIRROR", raising=False)
    monkeypatch.delenv("VXN_E2E_SUITE", raising=False)
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"")
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        f"Types: deb-src deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n"
        f"Components: main contrib\nSigned-By: {keyring}\n"
    )
    src = configured_source(tmp_path)
    assert (src.uri, src.suite, src.keyring) == (
        "http://mirror.invalid/debian",
        "bookworm",
        keyring,
    )
    (tmp_path / "sources.list.d" / "a.sources").unlink()
    (tmp_path / "sources.list").write_text("# c\ndeb [arch=amd64] http://m.invalid/d trixie main\n")
    assert configured_source(tmp_path).suite == "trixie"


def test_head_read_without_git(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text("# pack-refs\n" + "ab" * 20 + " refs/heads/main\n")
    assert checkout.read_head(tmp_path) == "ab" * 20
    (git / "refs" / "heads" / "main").write_text("cd" * 20 + "\n")  # a loose ref wins
    assert checkout.read_head(tmp_path) == "cd" * 20
    (git / "HEAD").write_text("ef" * 20 + "\n")  # detached
    assert checkout.read_head(tmp_path) == "ef" * 20


def test_snapshot_digest_covers_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.py").write_text("x = 1\n")
    files = checkout.files_in(tmp_path)
    before = checkout.tree_digest(tmp_path, files)
    (tmp_path / "a" / "f.py").write_text("x = 2\n")
    assert files == ["a/f.py"]
    assert checkout.tree_digest(tmp_path, files) != before


def test_a_snapshot_is_byte_compiled_for_the_read_only_dom0(tmp_path: Path) -> None:
    repo, dest = tmp_path / "repo", tmp_path / "dest"
    (repo / "vxn").mkdir(parents=True)
    (repo / "vxn" / "mod.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "vxn"], check=True)
    dest.mkdir()
    checkout.snapshot(repo, dest)
    cached = list((dest / "vxn" / "__pycache__").glob("mod.*.pyc"))
    assert len(cached) == 1
    # checked against the copy's mtime and size, which copy2 kept: valid in the Dom0
    assert cached[0].read_bytes()[8:12] == int((repo / "vxn" / "mod.py").stat().st_mtime).to_bytes(
        4, "little"
    )


def test_module_order_puts_dependencies_first(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "k/ext4.ko: k/crc16.ko k/jbd2.ko\nk/jbd2.ko: k/crc16.ko\nk/crc16.ko:\nk/blk.ko:\n"
    )
    assert _module_order(tmp_path, ["ext4", "blk"]) == [
        "k/crc16.ko",
        "k/jbd2.ko",
        "k/ext4.ko",
        "k/blk.ko",
    ]


def _vm(tmp_path: Path) -> XenVM:
    img = Dom0Image(
        tmp_path, tmp_path / "xen", tmp_path / "vmlinux", tmp_path / "i", tmp_path / "d", {}
    )
    return XenVM(img, tmp_path, [Share("vxnrun", tmp_path, readonly=False)], hook="/a,b.py")


def test_qemu_command_has_the_required_settings(tmp_path: Path) -> None:
    cmd = " ".join(_vm(tmp_path).command(console_socket=False))
    for needed in ("-cpu qemu64", "-nic none", "snapshot=on", "-no-reboot", "tcg"):
        assert needed in cmd
    assert "vxn.hook=/a,,b.py" in cmd  # a comma inside a multiboot module line is doubled
    assert "--log" not in cmd


def test_wait_for_reports_the_serial_tail(tmp_path: Path) -> None:
    vm = _vm(tmp_path)
    vm.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        vm.log.write_text("(XEN) Xen version 4.17\nline two\n")
        assert vm.wait_for(r"Xen version (\S+)", 5, "banner").group(1) == "4.17"
        with pytest.raises(BootError, match=r"(?s)not seen within.*line two"):
            vm.wait_for("never", 0.3, "ready")
        with vm.log.open("a") as fh:
            fh.write("Kernel panic - not syncing\n")
        with pytest.raises(BootError, match="Kernel panic"):
            vm.wait_for("never", 5, "ready")
    finally:
        vm.proc.kill()
        vm.proc.wait()
