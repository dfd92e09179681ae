"""The host side of the real-Xen tier: boot Xen + Dom0, run tests/e2e/xen inside it.

Collected only with VXN_E2E=1 (scripts/e2e.sh). VXN_E2E_KEEP=1 reuses a Dom0
left running by the previous call; VXN_E2E_TESTS picks the inner test files.
"""

from __future__ import annotations

import json
import os

import pytest

from e2e import junit, tier
from e2e.report import REPORT_KEY


@pytest.fixture(scope="module")
def xen_run(request: pytest.FixtureRequest) -> tier.TierRun:
    tests = os.environ.get("VXN_E2E_TESTS", "").split() or tier.DEFAULT_TESTS
    keep = os.environ.get("VXN_E2E_KEEP") == "1"
    run = tier.run_kept(tests) if keep else tier.run_once(tests)
    report = request.config.stash.setdefault(REPORT_KEY, [])
    report.append(("Xen Dom0 tests (inside the Dom0)", junit.summary(run.cases)))
    report.append(
        (
            "Xen tier timings (s) and versions",
            json.dumps(run.times) + "\n" + json.dumps(run.manifest),
        ),
    )
    return run


def test_inner_xen_tests_pass(xen_run: tier.TierRun) -> None:
    bad = junit.problems(xen_run.cases)
    assert not bad, (
        "inside the Dom0:\n"
        + "\n".join(bad)
        + "\n--- inner pytest output (tail) ---\n"
        + "\n".join(xen_run.log.splitlines()[-60:])
    )
    assert xen_run.rc == 0, f"inner pytest exited {xen_run.rc}\n{xen_run.log[-3000:]}"
