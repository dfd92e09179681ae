"""What a container record holds, and what it is shown as.

A record (vxn.engine.records) is made here from the image's inspect document and the
create request, turned back into the guest spec and the guest's config for each run,
and shown as a `ps` row or an inspect document. The image config is kept in the
record as JSON, so a later image change or rmi never changes a container.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from vxn.core import lifecycle, protocol
from vxn.core.guestspec import GuestSpec, RunOptions, build_spec, merge_env
from vxn.core.manifest import ImageConfig
from vxn.core.vm import (
    LABEL_CREATED,
    LABEL_ID,
    LABEL_IMAGE,
    LABEL_ORIGIN,
    LABEL_OWNER,
    ORIGIN_VXN,
    Disk,
    GuestConfig,
)
from vxn.engine.guestrun import Timeline
from vxn.engine.records import Record
from vxn.errors import FailedPrecondition

LIVE = (lifecycle.St.RUNNING, lifecycle.St.PAUSED, lifecycle.St.RESTARTING)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    image: str
    options: RunOptions
    name: str | None = None
    remove: bool = False
    memory_mib: int | None = None
    cpus: int | None = None
    backend: str | None = None


def new_record(
    request: CreateRequest,
    image: dict[str, Any],
    config: ImageConfig,
    *,
    cid: str,
    name: str,
    memory_mib: int,
    cpus: int,
    backend: str,
) -> Record:
    """A created container's record; `image` is the image's inspect document and
    `config` its config (image_config)."""
    options = request.options  # with a tty, build_spec adds TERM=xterm as Docker does
    spec = build_spec(config, options, container_id=cid)
    return {
        "id": cid,
        "name": name,
        "image": image.get("Manifest") or image["Id"],
        "image_id": image["Id"],
        "ref": request.image,
        "created": now(),
        "state": lifecycle.St.CREATED.value,
        "exit_code": None,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "options": asdict(options) | {"command": list(options.command)},
        "argv": list(spec.argv),
        "config": _config_json(config),
        "rm": request.remove,
        "memory_mib": memory_mib,
        "cpus": cpus,
        "backend": backend,
        "guest": cid[:12],
        "nonce": None,
        "origin": ORIGIN_VXN,
    }


def guest_spec(record: Record) -> GuestSpec:
    options = dict(record["options"])
    options["command"] = tuple(options["command"])
    options["env"] = tuple(options["env"])
    return build_spec(
        _config_from_json(record["config"]),
        RunOptions(**options),
        container_id=record["id"],
    )


def exec_spec(record: Record, body: dict[str, Any]) -> protocol.ExecSpec:
    """An exec session from an API body; what it leaves out is the container's."""
    base = guest_spec(record)
    return protocol.ExecSpec(
        argv=tuple(body["command"]),
        env=merge_env(base.env, body.get("env") or ()),
        cwd=body.get("workdir") or base.cwd,
        user=str(body["user"]) if body.get("user") is not None else base.user,
        tty=bool(body.get("tty")),
        stdin=bool(body.get("stdin")),
        rows=int(body.get("rows") or 0),
        cols=int(body.get("cols") or 0),
    )


def guest_config(
    record: Record, *, kernel: str, initrd: str, cmdline: str, disks: list[Disk], owner: str
) -> GuestConfig:
    """The guest of a run, labelled as this state dir's (`owner`) and this container's."""
    return GuestConfig(
        name=record["guest"],
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        disks=tuple(disks),
        memory_mib=record["memory_mib"],
        cpus=record["cpus"],
        labels={
            LABEL_ID: record["id"],
            LABEL_IMAGE: record["image"],
            LABEL_ORIGIN: ORIGIN_VXN,
            LABEL_CREATED: record["created"],
            LABEL_OWNER: owner,
        },
    )


def summary(record: Record) -> dict[str, Any]:
    keys = ("id", "name", "image_id", "created", "state", "exit_code", "started_at")
    return {k: record.get(k) for k in keys} | {
        "image": record["ref"],
        "command": " ".join(record["argv"]),
        "finished_at": record.get("finished_at"),
        "backend": record["backend"],
    }


def inspect_document(record: Record) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "nonce"}  # the nonce stays vxnd's


def image_config(doc: dict[str, Any], ref: str) -> ImageConfig:
    if doc.get("Architecture") != "amd64" or doc.get("Os") != "linux":
        raise FailedPrecondition(
            f"image {ref}: it is {doc.get('Os')}/{doc.get('Architecture')}; "
            "the guest kernel runs linux/amd64 images"
        )
    c = doc.get("Config") or {}
    return _config_from_json(
        {
            "entrypoint": c.get("Entrypoint"),
            "cmd": c.get("Cmd"),
            "env": c.get("Env") or [],
            "working_dir": c.get("WorkingDir") or "",
            "user": c.get("User") or "",
        }
    )


def label(record: Record) -> str:
    return f"{record['name']} ({record['id'][:12]})"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def timings(t: Timeline) -> dict[str, float]:
    t.mark("done")
    pairs = {
        "prepare": ("request", "create"),  # vxn, before the hypervisor starts
        "create": ("create", "unpaused"),  # the hypervisor: guest created, started
        "boot": ("unpaused", "hello"),
        "guest": ("unpaused", "exited"),  # boot, command, exit frame
        "teardown": ("exited", "done"),  # vxn and the hypervisor, after the exit
    }
    return {
        k: round(t.span(a, b), 4) for k, (a, b) in pairs.items() if a in t.marks and b in t.marks
    }


def _config_json(config: ImageConfig) -> dict[str, Any]:
    return {
        "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
        "cmd": list(config.cmd) if config.cmd is not None else None,
        "env": list(config.env),
        "working_dir": config.working_dir,
        "user": config.user,
    }


def _config_from_json(c: dict[str, Any]) -> ImageConfig:
    return replace(
        ImageConfig(os="linux", architecture="amd64"),
        entrypoint=tuple(c["entrypoint"]) if c.get("entrypoint") is not None else None,
        cmd=tuple(c["cmd"]) if c.get("cmd") is not None else None,
        env=tuple(c.get("env") or ()),
        working_dir=c.get("working_dir") or "",
        user=c.get("user") or "",
    )
