"""Boots Xen and the Dom0 under QEMU TCG and watches its serial console.

The serial console goes to `<rundir>/serial.log` (QEMU writes it itself), so a
run started by an earlier process (`--keep`) can be followed the same way as
our own child. Every wait has a timeout of about 3x the time it takes on an
idle 2-core host, and every failure carries the tail of the serial log.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.dom0image import Dom0Image

# Idle times (XEN-IN-QEMU.md 4.1; this tier's runs agree): Xen banner 0.1-0.5 s,
# Dom0 Linux 4-5 s, ready 18-30 s; a busy host doubles them.
T_XEN = 30.0
T_LINUX = 60.0
T_READY = 120.0
T_EXIT = 15.0  # QEMU exits 0.5-1 s after Dom0's poweroff
ABORT = re.compile(r"Kernel panic|Hardware Dom0 crashed|Panic on CPU|FATAL PAGE FAULT")
READY = "VXN-DOM0-READY"
# qemu64, not max: with `-cpu max` Dom0 processes failed at random once several ran
# at once (GPFs in libc, malloc aborts, an ld.so hwcaps assertion, libxl assertions:
# the block hotplug scripts of concurrent `xl create`s died), with one TCG thread or
# two. qemu64 has none of max's newer features (XSAVE, AVX, PCID...) whose emulation
# QEMU 7.2 TCG gets wrong under Xen PV; Xen and Dom0 boot as fast (XEN-IN-QEMU.md).
ACCEL, CPU = "tcg,thread=multi", "qemu64"
XEN_ARGS = (
    "dom0_mem=1024M,max:1024M dom0_max_vcpus=2 console=com1 com1=115200,8n1"
    " loglvl=all guest_loglvl=all noreboot"
)


class BootError(RuntimeError):
    """Something on the serial console went wrong; the message ends with its tail."""


@dataclass(frozen=True)
class Share:
    tag: str  # the Dom0 init mounts vxnsrc, vxnrun and vxndeps (dom0/init.sh)
    path: Path
    readonly: bool = True


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: QEMU never outlives the pytest that started it, even on SIGKILL.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


def _qemu_escape(s: str) -> str:
    return s.replace(",", ",,")  # QEMU option lists use ',' as separator


class XenVM:
    """One QEMU running Xen + Dom0, with its files in `rundir`."""

    def __init__(
        self,
        image: Dom0Image | None,
        rundir: Path,
        shares: list[Share],
        hook: str = "",
        disks: tuple[Path, ...] = (),
    ) -> None:
        self.image = image
        self.rundir = rundir
        self.shares = shares
        self.disks = disks  # extra read-only disks after the root disk (vdb, ...)
        self.hook = hook
        self.log = rundir / "serial.log"
        self.pidfile = rundir / "qemu.pid"
        self.socket = rundir / "console.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.text = ""  # serial output read so far (from the mark on)
        self._offset = 0  # bytes of serial.log consumed
        self._scan = 0  # where the next wait_for() starts looking in self.text

    def command(self, console_socket: bool) -> list[str]:
        dom0_args = "root=/dev/vda rw console=hvc0 earlyprintk=xen init=/sbin/vxn-dom0-init"
        if self.hook:
            dom0_args += f" vxn.hook={self.hook}"
        if console_socket:
            dom0_args += " vxn.shell"  # a shell on the console beside the hook
        img = self.image
        assert img is not None, "attached-only XenVM cannot start QEMU"
        q = _qemu_escape
        if console_socket:  # --keep: type into the Dom0's shell through the socket
            chardev = f"socket,id=con,path={q(str(self.socket))},server=on,wait=off"
            chardev += f",logfile={q(str(self.log))}"
        else:
            chardev = f"file,id=con,path={q(str(self.log))}"
        cmd = ["qemu-system-x86_64", "-accel", ACCEL, "-cpu", CPU]
        cmd += ["-m", "3072M", "-smp", "2", "-display", "none", "-monitor", "none"]
        cmd += ["-nic", "none", "-no-reboot", "-pidfile", str(self.pidfile)]
        cmd += ["-chardev", chardev, "-serial", "chardev:con"]
        cmd += ["-kernel", str(img.xen), "-append", XEN_ARGS]
        cmd += ["-initrd", f"{q(f'{img.kernel} {dom0_args}')},{q(str(img.initrd))}"]
        cmd += ["-drive", f"file={q(str(img.disk))},if=virtio,format=raw,snapshot=on"]  # vda
        for disk in self.disks:
            cmd += ["-drive", f"file={q(str(disk))},if=virtio,format=raw,readonly=on"]
        for s in self.shares:
            ro = ",readonly=on" if s.readonly else ""
            path = q(str(s.path))
            cmd += ["-virtfs", f"local,path={path},mount_tag={s.tag},security_model=none{ro}"]
        return cmd

    def start(self, detached: bool = False) -> None:
        """Start QEMU. `detached`: it daemonizes and outlives this process (--keep)."""
        self.log.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)
        self.text, self._scan, self._offset = "", 0, 0
        cmd = self.command(detached)
        with open(self.rundir / "qemu.out", "wb") as out:  # the child keeps its own copy
            if detached:
                subprocess.run([*cmd, "-daemonize"], stdout=out, stderr=out, check=True, timeout=60)
                self.pid = int(self.pidfile.read_text())
                return
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C to pytest must not skip our cleanup
                preexec_fn=_die_with_parent,
            )
        self.pid = self.proc.pid

    @classmethod
    def attach(cls, image: Dom0Image | None, rundir: Path, shares: list[Share]) -> XenVM | None:
        """The QEMU an earlier process left running in `rundir`, if it still runs."""
        vm = cls(image, rundir, shares)
        try:
            vm.pid = int(vm.pidfile.read_text())
        except (OSError, ValueError):
            return None
        if not vm.alive():
            return None
        vm._offset = vm.log.stat().st_size if vm.log.exists() else 0  # only new output
        return vm

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:  # not our child: check it is still our QEMU, not a reused pid
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"qemu-system" in cmdline and str(self.pidfile).encode() in cmdline

    def _read(self) -> str:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return ""
        self._offset += len(data)
        new = data.decode("utf-8", "replace").replace("\r", "")
        self.text += new
        return new

    def mark(self) -> None:
        """Later waits only look at output from now on."""
        self._read()
        self._scan = len(self.text)

    def tail(self, lines: int = 60) -> str:
        self._read()
        try:
            text = self.log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            text = "(no serial log)"
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    def fail(self, why: str) -> BootError:
        return BootError(f"{why}\n--- last lines of {self.log} ---\n{self.tail()}")

    def wait_for(self, pattern: str, timeout: float, what: str) -> re.Match[str]:
        """Wait until `pattern` shows up on the console; abort on a panic or QEMU exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            new = self._read()
            m = rx.search(self.text, self._scan)
            if m:
                self._scan = m.end()
                return m
            bad = ABORT.search(self.text, max(0, len(self.text) - len(new) - 200))
            if bad:
                raise self.fail(f"{what}: '{bad.group(0)}' on the console")
            if not self.alive():
                raise self.fail(f"{what}: QEMU exited ({self._exit_status()})")
            if time.monotonic() > deadline:
                raise self.fail(f"{what}: not seen within {timeout:.0f} s")
            time.sleep(0.1)

    def _exit_status(self) -> str:
        if self.proc is None:
            return "not our child"
        out = (self.rundir / "qemu.out").read_text(errors="replace").strip()
        return f"status {self.proc.returncode}; {out[-500:] or 'no output'}"

    def boot(self, detached: bool = False) -> dict[str, float]:
        """Start and wait for the Dom0's ready marker; returns the milestones in seconds."""
        t0 = time.monotonic()
        self.start(detached)
        times: dict[str, float] = {}
        for name, pattern, timeout in (
            ("xen", r"\(XEN\) Xen version", T_XEN),
            ("linux", r"Linux version", T_LINUX),
            ("ready", READY, T_READY),
        ):
            self.wait_for(pattern, timeout, f"boot: waiting for {name}")
            times[name] = round(time.monotonic() - t0, 1)
        return times

    def wait_exit(self, timeout: float = T_EXIT) -> None:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise self.fail(f"QEMU still running {timeout:.0f} s after Dom0 powered off")
            time.sleep(0.1)

    def run(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run a shell command in the Dom0 over the console socket (--keep Dom0s only).

        The output is what the console showed, Dom0 kernel messages included.
        """
        self.mark()
        tag = f"__VXNRC{os.getpid()}x{time.monotonic_ns()}__"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            # Drain it: QEMU writes each console byte separately, and an unread
            # Unix socket fills up after a few hundred, stalling the console.
            threading.Thread(target=_drain, args=(sock,), daemon=True).start()
            sock.sendall(f"{command}; echo {tag}=$?\n".encode())
            start = len(self.text)
            # needs digits: the echoed command line itself cannot match
            m = self.wait_for(rf"{tag}=(\d+)", timeout, f"console command {command!r}")
            sock.shutdown(socket.SHUT_RDWR)
        out = self.text[start : m.start()]
        first_nl = out.find("\n")  # drop the echo of the command line
        return int(m.group(1)), out[first_nl + 1 :] if first_nl >= 0 else out

    def stop(self) -> None:
        """End QEMU (ours or an attached one): SIGTERM, then SIGKILL."""
        if not self.pid or not self.alive():
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.alive():
                break
        if self.proc is not None:
            self.proc.wait(timeout=5)
