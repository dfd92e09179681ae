"""The `xen` backend: one PV domain per guest, through xl and XenStore.

    <root>/<name>/xl.cfg    the rendered config (root is <run dir>/guests)

A guest is created paused (`xl create -p`), labelled in XenStore where it cannot
write (`vxn.core.xenstore_keys`), and its console is the pty xenconsoled publishes
at console/tty, opened raw before the unpause so no byte is lost: no `xl console`
process, no log file; every ^O written to it is doubled (`escape_sysrq`).
`on_poweroff="preserve"` keeps a stopped domain (and its data/ node, the exit
witness) until vxnd destroys it. Its stop is seen through the
`@releaseDomain` watch, which xenstored fires when any domain shuts down or dies;
each event re-reads the domain's state. Domains outlive vxnd, and the next one finds
them by their labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tty
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from vxn.adapters.hypervisor import Console, GuestInfo
from vxn.adapters.xenstore import XenStore
from vxn.adapters.xl import Domain, Xl
from vxn.core import protocol, xenstore_keys as keys
from vxn.core.guestboot import CMDLINE_QEMU
from vxn.core.vm import NAME, GuestConfig, State
from vxn.core.xlconfig import XlConfig, XlDisk, guest_type, render, vdevs
from vxn.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

# ttyS0 does not exist in a PV guest, so the kernel's messages go nowhere and hvc0
# stays the data channel alone, as on QEMU: the same command line serves both.
CMDLINE = CMDLINE_QEMU
CONSOLE_LIMIT = 30.0  # for xenconsoled to publish the pty of a new domain
_PTY_MAJORS = range(136, 144)  # Unix98 pty slaves (Documentation/admin-guide/devices.txt)
_LOG_TAIL = 4096
SYSRQ = b"\x0f"  # ^O: hvc_console's SysRq prefix on the kernel's own console
WAIT_RETRIES = 3  # reconnections in a row before wait() gives up


def escape_sysrq(data: bytes) -> bytes:
    """Xen PV makes hvc0 a kernel console, and the guest's hvc driver then reads ^O
    (0x0f) as the magic SysRq prefix: it eats it and the next byte (a SIGNAL frame
    of SIGTERM, 15, ends in 0x0f 0x10...). Two ^O in a row reach the tty as one."""
    return data.replace(SYSRQ, SYSRQ * 2)


class PtyConsole:
    """hvc0 through xenconsoled's pty, raw and non-blocking on the event loop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def read(self) -> bytes:
        while self.fd >= 0:
            try:
                return os.read(self.fd, 1 << 16)
            except BlockingIOError:
                await _ready(self.fd, write=False)
            except OSError:  # EIO: xenconsoled closed the pty, the domain is gone
                return b""
        return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(escape_sysrq(data))
        while view:
            if self.fd < 0:
                raise Unavailable("xen console: closed")
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await _ready(self.fd, write=True)
            except OSError as e:
                raise Unavailable(f"xen console: {e.strerror}") from None

    async def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class XenBackend:
    name = "xen"
    cmdline = CMDLINE

    def __init__(self, root: Path, xl: Xl, store: XenStore, *, machine: str) -> None:
        self.root = root
        self.xl = xl
        self.store = store
        self.type = guest_type(machine)
        self._consoles: dict[str, PtyConsole] = {}
        # One `xl create` at a time: the block hotplug scripts of its disks run one at
        # a time anyway (under their own lock), and parallel creates only make the
        # last ones miss libxl's hotplug timeout (7 at once under TCG: all failed).
        self._creating = asyncio.Lock()
        # One `xl destroy` per domain at a time: a supervisor ending its run and an
        # `rm -f` both destroy, and two concurrent destroys of one domain can leave
        # the second xl waiting on libxl for a minute.
        self._destroying: dict[str, asyncio.Future[None]] = {}

    @classmethod
    async def open(
        cls,
        root: Path,
        *,
        xl: Xl | None = None,
        socket: str | None = None,
        running: Callable[[str], bool] | None = None,
    ) -> XenBackend:
        """The backend, once the toolstack checks out; FailedPrecondition names the fix.
        `running(comm)`: whether a process of that name runs (default: /proc)."""
        xl = xl or Xl()
        if os.geteuid() != 0:
            raise FailedPrecondition("backend xen: needs root (xl, xenstored); run vxnd as root")
        if shutil.which(xl.binary) is None:
            raise FailedPrecondition(
                f"backend xen: {xl.binary} not found; install the Xen tools (xen-utils)"
            )
        store = XenStore(socket)
        try:
            await store.directory("/local/domain")
        except Unavailable as e:
            raise FailedPrecondition(
                f"backend xen: xenstored is not answering ({e}); start it: "
                "systemctl start xenstored (or /etc/init.d/xen start)"
            ) from None
        if not await asyncio.to_thread(running or _running, "xenconsoled"):
            await store.close()
            raise FailedPrecondition(
                "backend xen: xenconsoled is not running; start it: "
                "systemctl start xenconsoled (or /etc/init.d/xen start)"
            )
        try:
            await xl.info()
        except Unavailable as e:
            await store.close()
            raise FailedPrecondition(f"backend xen: the toolstack does not work: {e}") from None
        return cls(root, xl, store, machine=os.uname().machine)

    async def close(self) -> None:
        for console in self._consoles.values():
            await console.close()
        self._consoles.clear()
        await self.store.close()

    async def create(self, config: GuestConfig) -> GuestInfo:
        name = config.name
        for what, path in (("kernel", config.kernel), ("initramfs", config.initrd)):
            if not await asyncio.to_thread(os.path.isfile, path):
                raise FailedPrecondition(
                    f"guest {name}: the {what} {path} is missing; provision the guest "
                    "kernel (scripts/setup.sh) or set guest.kernel in the config"
                )
        if await self._find(name) is not None:
            raise AlreadyExists(
                f"guest {name}: a Xen domain of that name exists; remove it (xl destroy {name})"
            )
        free = (await self.xl.info()).free_memory_mib
        if config.memory_mib > free:
            raise FailedPrecondition(
                f"guest {name}: needs {config.memory_mib} MiB but Xen has {free} MiB free; "
                "lower -m or stop other guests"
            )
        vm = str(uuid.uuid4())
        text = render(self._xl_config(config, vm))  # refuses bad values before any I/O
        cfg = await asyncio.to_thread(self._write_config, name, text)
        try:
            async with self._creating:
                await self.xl.create(cfg, paused=True)
            labels = keys.labels_dir(keys.vm_path(vm))
            values = {f"{labels}/{k}": keys.encode_label(v) for k, v in config.labels.items()}
            if values:
                await self.store.write_all(values)
        except BaseException:
            await asyncio.shield(self.destroy(name))
            raise
        return GuestInfo(name=name, state=State.PAUSED, backend=self.name, labels=config.labels)

    async def console(self, name: str) -> Console:
        console = self._consoles.get(name)
        if console is None or console.fd < 0:
            console = self._consoles[name] = await self._open_console(await self._domid(name))
        return console

    async def unpause(self, name: str) -> None:
        await self.xl.unpause(name)

    async def pause(self, name: str) -> None:
        await self.xl.pause(name)

    async def wait(self, name: str) -> GuestInfo:
        failures = 0
        while True:
            async with self.store.watch("@releaseDomain") as released:
                while True:
                    try:
                        await released.next()  # the first one comes at once
                        info = await self.info(name)
                    except Unavailable:
                        # A broken connection (the watch's or the reads'): watch again,
                        # then look again; an error that persists is the caller's.
                        failures += 1
                        if failures > WAIT_RETRIES:
                            raise
                        break
                    failures = 0
                    if info.state in (State.SHUTDOWN, State.GONE):
                        return info

    async def signal(self, name: str, signum: int) -> None:
        console = self._consoles.get(name)
        if console is None or console.fd < 0:
            raise NotFound(f"guest {name}: no console attached to signal through")
        await console.write(protocol.signal_frame(signum))

    async def destroy(self, name: str) -> None:
        """Destroy the domain and its files; a caller that comes while a destroy of the
        same guest runs joins it."""
        running = self._destroying.get(name)
        if running is None:
            running = asyncio.ensure_future(self._destroy(name))
            self._destroying[name] = running
            running.add_done_callback(lambda _: self._destroying.pop(name, None))
        await asyncio.shield(running)

    async def _destroy(self, name: str) -> None:
        console = self._consoles.pop(name, None)
        if console is not None:
            await console.close()
        try:
            present = await self._find(name) is not None
        except Unavailable:
            present = NAME.fullmatch(name) is not None  # XenStore is down: let xl say
        if present:
            try:
                await self.xl.destroy(name)
            except Unavailable:
                if await self.xl.domain(name) is not None:
                    raise  # still there: not a race with another destroy
        await asyncio.to_thread(shutil.rmtree, self.root / name, True)

    async def list(self) -> list[GuestInfo]:
        """vxn's domains (those with labels); every other domain is left alone."""
        found = []
        for domain in await self.xl.list():
            if domain.domid == 0:
                continue
            labels = await self._labels(domain.domid)
            if labels:
                found.append(self._info(domain, labels))
        return found

    async def adopt(self, name: str) -> GuestInfo:
        info = await self.info(name)
        if info.state is State.GONE or not info.labels:
            raise NotFound(f"guest {name}: no Xen domain of vxn's with that name")
        if info.state is not State.SHUTDOWN:
            await self.console(name)
        return info

    async def info(self, name: str) -> GuestInfo:
        domain = await self.xl.domain(name) if await self._find(name) is not None else None
        if domain is None:
            return GuestInfo(name=name, state=State.GONE, backend=self.name)
        return self._info(domain, await self._labels(domain.domid))

    async def boot_log(self, name: str) -> bytes:
        """The tail of xl's own log of the domain: why it stopped (a crash, reason
        code 3, is a kernel panic or the death of init). The kernel's messages are
        not kept: PV has no serial console, and hvc0 is the data channel."""
        path = Path("/var/log/xen") / f"xl-{name}.log"
        try:
            return await asyncio.to_thread(_tail, path, _LOG_TAIL)
        except OSError:
            return b""

    async def exit_witness(self, name: str) -> int | None:
        domid = await self._find(name)
        if domid is None:
            return None
        return keys.exit_code(await self.store.read(keys.exit_code_key(domid)))

    async def console_log(self, name: str) -> bytes | None:
        return None  # xenconsoled keeps no copy (its guest logs are off by default)

    def _xl_config(self, config: GuestConfig, vm: str) -> XlConfig:
        names = vdevs(len(config.disks))
        return XlConfig(
            name=config.name,
            type=self.type,
            uuid=vm,
            kernel=config.kernel,
            ramdisk=config.initrd,
            extra=config.cmdline,
            memory_mib=config.memory_mib,
            vcpus=config.cpus,
            disks=tuple(
                XlDisk(path=d.path, vdev=v, writable=not d.read_only)
                for d, v in zip(config.disks, names, strict=True)
            ),
        )

    def _write_config(self, name: str, text: str) -> Path:
        guest = self.root / name
        shutil.rmtree(guest, ignore_errors=True)  # a stale one: its domain is gone
        guest.mkdir(mode=0o700, parents=True)
        cfg = guest / "xl.cfg"
        cfg.write_text(text)
        return cfg

    async def _domid(self, name: str) -> int:
        domid = await self._find(name)
        if domid is None:
            raise NotFound(f"guest {name}: no such Xen domain")
        return domid

    async def _find(self, name: str) -> int | None:
        """The domid of the domain called `name`, from XenStore, where libxl keeps
        every domain's name (read-only for the guest): no xl process, which costs a
        few hundred ms under TCG. A name vxn would not give is no domain of vxn's."""
        if not NAME.fullmatch(name):
            return None
        want = name.encode()
        for entry in await self.store.directory(keys.DOMAINS):
            domid = int(entry) if entry.isdigit() else 0
            if domid and await self.store.read(keys.name_key(domid)) == want:
                return domid
        return None

    async def _labels(self, domid: int) -> dict[str, str]:
        vm = await self.store.read(keys.vm_key(domid))
        if vm is None:
            return {}
        try:
            where = keys.labels_dir(vm.decode("ascii", "replace"))
        except InvalidArgument:  # not libxl's /vm/<uuid>: not a domain vxn made
            return {}
        labels = {}
        for key in await self.store.directory(where):
            raw = await self.store.read(f"{where}/{key}")
            if raw is not None:
                labels[key] = keys.decode_label(raw)
        return labels

    def _info(self, domain: Domain, labels: Mapping[str, str]) -> GuestInfo:
        return GuestInfo(name=domain.name, state=domain.state, backend=self.name, labels=labels)

    async def _open_console(self, domid: int) -> PtyConsole:
        key = keys.console_tty_key(domid)
        try:
            async with asyncio.timeout(CONSOLE_LIMIT), self.store.watch(key) as changed:
                while True:
                    await changed.next()  # the first one comes at once
                    path = keys.console_tty(await self.store.read(key))
                    if path is not None:
                        break
        except TimeoutError:
            raise Unavailable(
                f"domain {domid}: xenconsoled published no console in {CONSOLE_LIMIT:.0f} s; "
                "is xenconsoled running?"
            ) from None
        return PtyConsole(await asyncio.to_thread(_open_pty, path))


def _open_pty(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) not in _PTY_MAJORS:
            raise Unavailable(f"xen console {path}: not a pty")
        tty.setraw(fd)  # xenconsoled makes it raw too: no echo, no \r\n, frames are binary
    except BaseException:
        os.close(fd)
        raise
    return fd


async def _ready(fd: int, *, write: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (
        (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    )
    add(fd, lambda: None if ready.done() else ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


def _running(comm: str) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() == comm:
                    return True
    return False


def _tail(path: Path, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return f.read()
