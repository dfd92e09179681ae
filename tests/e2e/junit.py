"""Reads the JUnit XML that pytest wrote inside the Dom0."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    nodeid: str
    outcome: str  # passed | failed | error | skipped
    seconds: float
    message: str = ""
    details: str = ""


def _nodeid(tc: ET.Element) -> str:
    cls, name = tc.get("classname", ""), tc.get("name", "")
    return f"{cls}::{name}" if cls else name


def parse(xml: bytes) -> list[Case]:
    """One Case per <testcase>; an error (e.g. in teardown) outranks a failure or pass."""
    root = ET.fromstring(xml)
    cases = []
    for tc in root.iter("testcase"):
        outcome, message, details = "passed", "", ""
        for tag in ("skipped", "failure", "error"):  # later ones win
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message, details = el.get("message", ""), (el.text or "").strip()
        cases.append(Case(_nodeid(tc), outcome, float(tc.get("time", 0)), message, details))
    return cases


def problems(cases: list[Case]) -> list[str]:
    """Why this result must fail the host test: any non-pass, or nothing ran at all."""
    if not cases:
        return ["no test ran inside the Dom0"]
    return [f"{c.outcome.upper()} {c.nodeid}: {c.message}" for c in cases if c.outcome != "passed"]


def summary(cases: list[Case]) -> str:
    lines = [f"{c.outcome.upper():7} {c.seconds:6.1f}s  {c.nodeid}" for c in cases]
    return "\n".join(lines) or "(no tests)"


def from_console(text: str, jid: str) -> bytes:
    """The XML that dom0/agent.py sent as `VXN-JUNIT-B64 id=<jid> <chunk>` lines."""
    chunks = re.findall(rf"^VXN-JUNIT-B64 id={re.escape(jid)} (\S+)$", text, re.M)
    return base64.b64decode("".join(chunks))
