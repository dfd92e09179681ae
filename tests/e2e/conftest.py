"""Keeps the slow real-Xen tier out of the fast suite.

VXN_E2E picks what is collected here:
  unset   only test_tier_units.py (fast, hermetic; the fast suite: `pytest`);
  "1"     that and test_xen_tier.py, which boots Xen (scripts/e2e.sh sets this);
  "dom0"  the tests in xen/, inside the Dom0 (set by dom0/agent.py).
Nothing is skipped either way: what does not apply is never collected.
"""

from __future__ import annotations

import os

import pytest

from e2e.report import REPORT_KEY

MODE = os.environ.get("VXN_E2E", "")
# Whole directories are ignored, not just their files: xen/conftest.py imports pyxs,
# which only the Dom0 has.
if MODE == "1":
    collect_ignore_glob = ["xen", "dom0"]
elif MODE == "dom0":
    collect_ignore_glob = ["test_*.py", "dom0"]
else:
    collect_ignore_glob = ["xen", "dom0", "test_xen_tier.py"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xen: runs inside a real Xen Dom0 (tests/e2e/xen)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for title, text in terminalreporter.config.stash.get(REPORT_KEY, []):
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(text)
