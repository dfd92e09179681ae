"""A container's lifecycle as a table `(state, op) -> state`, pure (docs/CONTAINERS.md 1).

`stop`, `kill`, `exec` and `attach` leave the state as it is: they are requests to a
running guest, whose `exit` is what moves it on. `exit` is a run's end as its
supervisor saw it; `fail` is a run that is over with no start to follow: a start that
failed before any run began, or a guest that vanished while no vxnd watched (even in
the middle of a restart). A restart goes running -> restarting (the old run's exit
keeps it there) -> running. An op missing from the table is illegal in that state,
and the error names the container, the op, the state and what to do instead.

vxn.engine.containerstate moves a record only through `transition`.
"""

from __future__ import annotations

import enum

from vxn.errors import FailedPrecondition


class St(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    REMOVING = "removing"


OPS = (
    *("start", "exit", "fail", "stop", "kill", "pause", "unpause", "restart", "remove", "adopt"),
    *("exec", "attach"),
)

_C, _R, _P, _RS, _E, _RM = St
TABLE: dict[tuple[St, str], St] = {
    (_C, "start"): _R,
    (_C, "fail"): _E,  # its first start failed
    (_C, "stop"): _C,
    (_C, "restart"): _RS,
    (_C, "remove"): _RM,
    (_C, "attach"): _C,  # `vxn run`: attached before the start, so nothing is missed
    (_R, "start"): _R,
    (_R, "exit"): _E,
    (_R, "fail"): _E,  # its guest vanished while no vxnd watched
    (_R, "stop"): _R,
    (_R, "kill"): _R,
    (_R, "pause"): _P,
    (_R, "restart"): _RS,
    (_R, "remove"): _RM,  # with force: the guest is destroyed first
    (_R, "exec"): _R,
    (_R, "attach"): _R,
    (_R, "adopt"): _R,
    (_P, "exit"): _E,
    (_P, "fail"): _E,
    (_P, "stop"): _P,
    (_P, "kill"): _P,
    (_P, "unpause"): _R,
    (_P, "remove"): _RM,
    (_P, "adopt"): _P,
    (_RS, "start"): _R,
    (_RS, "exit"): _RS,  # the old run ending, while restarting
    (_RS, "fail"): _E,  # the new run could not start
    (_RS, "stop"): _RS,
    (_RS, "kill"): _RS,
    (_RS, "remove"): _RM,
    (_RS, "adopt"): _R,
    (_E, "start"): _R,
    (_E, "fail"): _E,  # a new start failed
    (_E, "stop"): _E,  # as Docker: stopping a stopped container is a no-op
    (_E, "restart"): _RS,
    (_E, "remove"): _RM,
    (_RM, "exit"): _RM,  # rm -f: the run ends while it is removed
}

_HINTS = {
    _C: "start it first",
    _E: "start it first",
    _P: "unpause it first",
    _R: "stop it first",
    _RS: "wait for it to restart",
    _RM: "it is being removed",
}


def transition(state: str, op: str, container: str) -> St:
    """The state after `op`; `container` names it in the error (`web (3f2a1b2c3d4e)`)."""
    if op not in OPS:
        raise ValueError(f"lifecycle: unknown op {op!r}")
    current = St(state)
    after = TABLE.get((current, op))
    if after is None:
        raise FailedPrecondition(
            f"container {container}: cannot {op}: it is {current}; {_HINTS[current]}"
        )
    return after


def allowed(state: str, op: str) -> bool:
    return (St(state), op) in TABLE
