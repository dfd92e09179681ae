"""A fake Xen host for the unit tier: an `xl` executable, xenconsoled's ptys, the guests.

`FakeXen.binary` is a small script that sends its argv over a unix socket to this
object, which answers as xl would for the verbs vxn uses (`create [-p]`, `unpause`,
`pause`, `shutdown`, `destroy`, `list [NAME]`, `domid`, `info`): the same output
formats, the same exit codes, errors on stderr. A create parses the config vxn
rendered, checks its files and Xen's free memory, and writes what libxl writes in
the fake xenstored (`/local/domain/<id>/{name,domid,vm}`, `/vm/<uuid>/`, the guest's
writable `data/`); then, as xenconsoled, it opens a pty and publishes its slave at
`console/tty`. The test plays the guest on the pty's master (`Domain.master`) and
powers it off with `poweroff`; a destroy or a poweroff fires `@releaseDomain`.

    async with FakeXenstored(tmp / "xs") as xs, FakeXen(tmp, xs) as xen:
        Xl(xen.binary) ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vxn.core import xenstore_keys as keys
from vxn.testing.fake_xenstored import FakeXenstored

TOTAL_MIB = 4096
DOM0_MIB = 1024
_LIST = "{:<40} {:>5} {:>5} {:>5}     {:<6} {:>8.1f}"
_LINE = re.compile(r'^(\w+)\s*=\s*(?:"([^"]*)"|(\d+))\s*$')
_DISK = re.compile(r'^\s*"([^"]*)",\s*$')
_SHIM = """\
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({socket!r})
s.sendall(json.dumps(sys.argv[1:]).encode())
s.shutdown(socket.SHUT_WR)
reply = json.loads(b"".join(iter(lambda: s.recv(65536), b"")))
sys.stdout.write(reply["out"])
sys.stderr.write(reply["err"])
sys.exit(reply["rc"])
"""


@dataclass
class Domain:
    name: str
    domid: int
    uuid: str
    memory_mib: int
    config: dict[str, object]
    flags: str = "--p---"
    master: int = -1  # the console pty's master: the guest's end of hvc0


@dataclass
class _Reply:
    out: str = ""
    err: str = ""
    rc: int = 0


class XlError(Exception):
    """xl's complaint, printed on stderr with exit status 1."""


@dataclass
class FakeXen:
    root: Path
    xenstored: FakeXenstored
    total_mib: int = TOTAL_MIB
    domains: dict[int, Domain] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    created: asyncio.Event = field(default_factory=asyncio.Event)  # set by each create
    create_delay: float = 0.0  # seconds each create takes
    most_creating: int = 0  # the most creates in flight at once
    _creating: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: asyncio.Server | None = None

    @property
    def binary(self) -> str:
        return str(self.root / "xl")

    @property
    def free_mib(self) -> int:
        return self.total_mib - DOM0_MIB - sum(d.memory_mib for d in self.domains.values())

    async def __aenter__(self) -> FakeXen:
        sock = self.root / "xl.sock"
        self._server = await asyncio.start_unix_server(self._serve, str(sock))
        _write_shim(Path(self.binary), sock)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for domain in list(self.domains.values()):
            self._remove(domain)

    # The guest's side, for tests.
    def domain(self, name: str) -> Domain:
        found = [d for d in self.domains.values() if d.name == name]
        if not found:
            raise KeyError(name)
        return found[0]

    def poweroff(self, name: str, witness: bytes | None = None) -> None:
        """The guest powers off (kept: on_poweroff="preserve"), having written `witness`
        to its data/vxn-exit-code, as vxn's helper does."""
        domain = self.domain(name)
        if witness is not None:
            self._write(keys.exit_code_key(domain.domid), witness, [f"b{domain.domid}"])
        domain.flags = "---s--"
        self._close_console(domain)
        self.xenstored.release_domain()

    # xl.
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            argv = json.loads(await reader.read())
            self.calls.append(argv)
            if argv[:1] == ["create"]:
                self._creating += 1
                self.most_creating = max(self.most_creating, self._creating)
                await asyncio.sleep(self.create_delay)
                self._creating -= 1
            try:
                reply = self._xl(argv)
            except XlError as e:
                reply = _Reply(err=f"{e}\n", rc=1)
            writer.write(json.dumps(reply.__dict__).encode())
            await writer.drain()
        finally:
            writer.close()

    def _xl(self, argv: list[str]) -> _Reply:
        verb, args = (argv[0], argv[1:]) if argv else ("", [])
        if verb == "info":
            return _Reply(self._info())
        if verb == "list":
            if args:
                return _Reply(self._list([self._find(args[0])]))
            return _Reply(self._list(sorted(self.domains.values(), key=_id), dom0=True))
        if verb == "create":
            paused = args[:1] == ["-p"]
            self._create(Path(args[-1]), paused=paused)
            return _Reply()
        if verb in ("unpause", "pause", "shutdown", "destroy", "domid") and len(args) == 1:
            domain = self._find(args[0])
            if verb == "domid":
                return _Reply(f"{domain.domid}\n")
            if verb == "destroy":
                self._remove(domain)
                self.xenstored.release_domain()
            elif verb == "shutdown":
                domain.flags = "---s--"
                self.xenstored.release_domain()
            else:
                domain.flags = "--p---" if verb == "pause" else "-b----"
            return _Reply()
        raise XlError(f"xl: unknown or malformed command {' '.join(argv)!r}")

    def _info(self) -> str:
        return (
            "host                   : fake\n"
            f"total_memory           : {self.total_mib}\n"
            f"free_memory            : {self.free_mib}\n"
            "xen_major              : 4\n"
            "xen_version            : 4.17.0-fake\n"
        )

    def _list(self, domains: list[Domain], *, dom0: bool = False) -> str:
        lines = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"]
        if dom0:
            lines.append(_LIST.format("Domain-0", 0, DOM0_MIB, 1, "r-----", 10.0))
        lines += [_LIST.format(d.name, d.domid, d.memory_mib, 1, d.flags, 0.0) for d in domains]
        return "\n".join(lines) + "\n"

    def _find(self, name: str) -> Domain:
        try:
            return self.domain(name)
        except KeyError:
            raise XlError(f"{name} is an invalid domain identifier (rc=-6)") from None

    def _create(self, path: Path, *, paused: bool) -> None:
        config = parse(path.read_text())
        name, memory = str(config["name"]), int(str(config.get("memory", 128)))
        if any(d.name == name for d in self.domains.values()):
            raise XlError(f"libxl: error: domain with name {name} already exists")
        for what in ("kernel", "ramdisk"):
            if not Path(str(config[what])).is_file():
                raise XlError(f"libxl: error: cannot read the {what} {config[what]}")
        for spec in config.get("disk", []):  # type: ignore[attr-defined]
            target = str(spec).rpartition("target=")[2]
            if not Path(target).exists():
                raise XlError(f"libxl: error: disk {target}: no such file")
        if memory > self.free_mib:
            raise XlError(f"libxl: error: failed to free memory for the domain ({memory} MiB)")
        domid = next(self._ids)
        vm = str(config.get("uuid") or f"00000000-0000-4000-8000-{domid:012d}")
        domain = Domain(name, domid, vm, memory, config, "--p---" if paused else "-b----")
        self.domains[domid] = domain
        self.created.set()
        guest_reads = ["n0", f"r{domid}"]
        base = keys.domain(domid)
        self._write(base, b"", guest_reads)
        self._write(f"{base}/name", name.encode(), guest_reads)
        self._write(f"{base}/domid", str(domid).encode(), guest_reads)
        self._write(f"{base}/vm", keys.vm_path(vm).encode(), guest_reads)
        self._write(f"{base}/data", b"", [f"n{domid}"])
        self._write(keys.vm_path(vm), b"", guest_reads)
        self._write(f"{keys.vm_path(vm)}/name", name.encode(), guest_reads)
        master, slave = os.openpty()  # xenconsoled's; the backend opens the slave by name
        domain.master = master
        self._write(keys.console_tty_key(domid), os.ttyname(slave).encode(), [f"n{domid}"])
        os.close(slave)

    def _remove(self, domain: Domain) -> None:
        self.domains.pop(domain.domid, None)
        self._close_console(domain)
        self.xenstored.remove(keys.domain(domain.domid))
        self.xenstored.remove(keys.vm_path(domain.uuid))

    def _close_console(self, domain: Domain) -> None:
        if domain.master >= 0:
            with contextlib.suppress(OSError):
                os.close(domain.master)
            domain.master = -1

    def _write(self, path: str, value: bytes, perms: list[str]) -> None:
        self.xenstored.put(path, value, perms)


def parse(text: str) -> dict[str, object]:
    """The subset of xl's config syntax vxn renders: `key = "s"`, `key = N`, and
    `disk = [` lines of `"spec",` `]`. Anything else is xl's parse error."""
    config: dict[str, object] = {}
    lines = iter(text.splitlines())
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if re.fullmatch(r"(\w+) = \[", line):
            items = []
            for item in lines:
                if item == "]":
                    break
                m = _DISK.match(item)
                if m is None:
                    raise XlError(f"config: line {number}: syntax error in a list")
                items.append(m[1])
            config[line.split()[0]] = items
            continue
        m = _LINE.match(line)
        if m is None:
            raise XlError(f"config: line {number}: syntax error")
        config[m[1]] = m[2] if m[2] is not None else int(m[3])
    if "name" not in config or "kernel" not in config or "ramdisk" not in config:
        raise XlError("config: name, kernel and ramdisk are required")
    return config


def _write_shim(script: Path, sock: Path) -> None:
    script.write_text(f"#!{sys.executable} -I\n" + _SHIM.format(socket=str(sock)))
    script.chmod(0o755)


def _id(domain: Domain) -> int:
    return domain.domid
