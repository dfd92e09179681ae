"""Which guests are vxnd's, and what a starting vxnd does with them (STYLE.md 2: a pure
planner; ContainerService.reconcile executes its steps).

A guest is this vxnd's only when its `origin` label is vxn and its `owner` label is
this state dir's identity: guests of vxn-oci-runtime, of another state dir or of no
vxn at all are never touched. A previous vxnd of this state dir may have died; then
its guests of live containers are adopted, its other guests destroyed, its live
containers without a guest recorded as exited, and its unfinished removals finished.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from vxn.adapters.hypervisor import GuestInfo
from vxn.core import lifecycle
from vxn.core.vm import LABEL_ID, LABEL_ORIGIN, LABEL_OWNER, ORIGIN_VXN, State
from vxn.engine.containerdoc import LIVE
from vxn.engine.records import Record

Op = Literal["destroy", "adopt", "vanished", "finish_removal"]


@dataclass(frozen=True, slots=True)
class Step:
    op: Op
    backend: str
    target: str  # the guest's name to destroy; else the container's id


def owned(labels: Mapping[str, str], owner: str) -> bool:
    """Whether a guest with these labels was made by a vxnd of this state dir."""
    return labels.get(LABEL_ORIGIN) == ORIGIN_VXN and labels.get(LABEL_OWNER) == owner


def of_container(info: GuestInfo, record: Record, owner: str) -> bool:
    """Whether `info` is a guest of this container (so vxnd may destroy it)."""
    return (
        info.state != State.GONE
        and owned(info.labels, owner)
        and info.labels.get(LABEL_ID) == record["id"]
    )


def plan(
    records: Mapping[str, Record],
    listed: Mapping[str, Sequence[GuestInfo]],
    owner: str,
    supervised: Collection[str],
) -> list[Step]:
    """The steps that match `records` with the guests of every backend that answered
    (`listed`, by backend name); `supervised` containers are watched already."""
    steps: list[Step] = []
    adopted: set[str] = set()
    for backend, guests in listed.items():
        for info in guests:
            if not owned(info.labels, owner):
                continue
            cid = info.labels.get(LABEL_ID, "")
            record = records.get(cid)
            if record is None or record["state"] not in LIVE or record["guest"] != info.name:
                steps.append(Step("destroy", backend, info.name))  # its container is gone
            else:
                adopted.add(cid)
                steps.append(Step("adopt", backend, cid))
    for cid, record in records.items():
        if record["backend"] not in listed:
            continue  # its backend is down: its guest waits for a later vxnd
        if record["state"] in LIVE and cid not in supervised and cid not in adopted:
            steps.append(Step("vanished", record["backend"], cid))
        elif record["state"] == lifecycle.St.REMOVING:
            steps.append(Step("finish_removal", record["backend"], cid))  # a vxnd died in rm
    return steps
