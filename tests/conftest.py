"""Suite-wide rules: in CI (CI=true) a skipped test fails the run."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"CI=true: {len(skipped)} test(s) skipped; CI allows no skips", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
