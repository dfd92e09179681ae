"""`vxn run` against real QEMU guests (TCG), through real vxn and vxnd processes.

Few but real: each run boots the provisioned Debian kernel with vxn's initramfs and
the image's base disk, so guest-init and the helper are what answer here. One vxnd
and one set of images serve the module; each guest takes a few seconds under TCG.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from data.guestimages import APP_NAME, DISTROLESS_NAME, app_image, distroless_image
from data.imagebuild import DEMO_NAME, Layout, oci_archive
from integration.qemuguests import KERNEL_DIR, tcg_vxnd

from vxn.testing.daemon import VxnDirs, vxn_argv

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 120


@dataclass
class Ran:
    code: int
    out: bytes
    err: bytes


class Vxn:
    def __init__(self, dirs: VxnDirs) -> None:
        self.dirs = dirs
        self.env = dirs.env()

    def __call__(self, *args: str, stderr: int | None = subprocess.PIPE) -> Ran:
        p = subprocess.run(
            vxn_argv(*args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=RUN_TIMEOUT,
        )
        return Ran(p.returncode, p.stdout, p.stderr or b"")


@pytest.fixture(scope="module")
def vxn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vxn]:
    tmp = tmp_path_factory.mktemp("guest-images")
    layout = Layout(tmp / "demo")
    built = layout.add_image()
    layout.write_index([(built.manifest, {"io.containerd.image.name": DEMO_NAME})])
    demo = oci_archive(tmp / "demo", tmp / "demo.tar")
    with tcg_vxnd(demo, app_image(tmp / "app.tar"), distroless_image(tmp / "distroless.tar")) as d:
        yield Vxn(d)


def test_echo_hello_prints_exactly_hello(vxn: Vxn) -> None:
    ran = vxn("run", "--rm", DEMO_NAME, "echo", "hello")
    assert (ran.code, ran.out, ran.err) == (0, b"hello\n", b"")


@pytest.mark.parametrize(("script", "code"), [("exit 1", 1), ("exit 42", 42), ("kill -9 $$", 137)])
def test_exit_codes(vxn: Vxn, script: str, code: int) -> None:
    assert vxn("run", "--rm", DEMO_NAME, "sh", "-c", script).code == code


def test_stdout_and_stderr_stay_separate(vxn: Vxn) -> None:
    ran = vxn(
        "run", "--rm", DEMO_NAME, "sh", "-c", "echo out; echo err >&2", stderr=subprocess.DEVNULL
    )
    assert (ran.code, ran.out) == (0, b"out\n")


def test_argv_survives_exactly(vxn: Vxn) -> None:
    args = ["a b", ' "q" ', "it's", "$HOME", "l1\nl2", "üñí €", "", "--x", "*", "\\n"]
    ran = vxn(
        "run", "--rm", DEMO_NAME, "sh", "-c", 'for a; do printf "[%s]" "$a"; done', "sh", *args
    )
    assert ran.out.decode() == "".join(f"[{a}]" for a in args)


def test_env_workdir_and_numeric_user_without_passwd(vxn: Vxn) -> None:
    script = 'echo "$FOO|$HOME|$HOSTNAME|$(pwd)"; id'
    ran = vxn(
        "run", "--rm", "-e", "FOO=bar baz", "-w", "/made/here", "-u", "4242:4343", "-h", "box",
        DEMO_NAME, "sh", "-c", script,
    )  # fmt: skip
    assert ran.out.decode().splitlines() == [
        "bar baz|/|box|/made/here",
        "uid=4242 gid=4343 groups=4343",
    ]


def test_user_by_name_with_its_groups(vxn: Vxn) -> None:
    ran = vxn("run", "--rm", "-u", "app", APP_NAME, "sh", "-c", 'id; echo "$HOME"')
    assert (
        ran.out.decode() == "uid=1001(app) gid=1002(app) groups=1002(app),3000(extra)\n/home/app\n"
    )


def test_a_real_vm_with_guest_init_as_pid_1(vxn: Vxn) -> None:
    release = (KERNEL_DIR / "release").read_text().strip()
    ran = vxn("run", "--rm", APP_NAME, "sh", "-c", 'uname -r; tr "\\0" " " < /proc/1/cmdline')
    assert ran.out.decode().splitlines() == [release, "/guest-init/vxn-helper run /mnt/root "]
    assert release != os.uname().release


def test_root_writes_stay_in_their_container(vxn: Vxn) -> None:
    first = vxn("run", "--rm", APP_NAME, "sh", "-c", "echo kept > /etc/written; cat /etc/written")
    second = vxn("run", "--rm", APP_NAME, "cat", "/etc/written")
    assert (first.code, first.out) == (0, b"kept\n")
    assert second.code == 1
    assert b"No such file" in second.err


def test_output_is_live(vxn: Vxn) -> None:
    argv = vxn_argv("run", "--rm", APP_NAME, "sh", "-c", "echo A; sleep 3; echo B")
    with subprocess.Popen(argv, env=vxn.env, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        seen_a = time.monotonic()
        rest = proc.stdout.read()
        proc.wait(RUN_TIMEOUT)
    assert (first, rest, proc.returncode) == (b"A\n", b"B\n", 0)
    assert time.monotonic() - seen_a >= 2.0


def test_protocol_looking_and_binary_output_is_exact(vxn: Vxn) -> None:
    script = r'printf "vxn-start 1 x\n\001\000\000\000\005\003\000\000\000\000\377\376"; exit 7'
    ran = vxn("run", "--rm", APP_NAME, "sh", "-c", script)
    assert ran.out == b"vxn-start 1 x\n\x01\x00\x00\x00\x05\x03\x00\x00\x00\x00\xff\xfe"
    assert ran.code == 7


def test_missing_and_not_executable_commands(vxn: Vxn) -> None:
    missing = vxn("run", "--rm", APP_NAME, "nope")
    denied = vxn("run", "--rm", APP_NAME, "/etc/passwd")
    assert missing.code == 127
    assert b'exec: "nope": executable file not found in $PATH' in missing.err
    assert denied.code == 126
    assert b"permission denied" in denied.err.lower()


def test_a_distroless_image_runs(vxn: Vxn) -> None:
    ran = vxn("run", "--rm", DISTROLESS_NAME)
    assert (ran.code, ran.out) == (0, b"distroless\n")


def test_named_container_keeps_its_record_and_the_name_is_taken(vxn: Vxn) -> None:
    assert vxn("run", "--name", "keep1", "--read-only", APP_NAME, "true").code == 0
    again = vxn("run", "--name", "keep1", APP_NAME, "true")
    assert again.code == 125
    assert b"container name keep1: already in use" in again.err
    assert not list((vxn.dirs.run.root / "guests").iterdir())  # every guest was destroyed
