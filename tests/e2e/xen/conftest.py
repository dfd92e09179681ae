"""Fixtures for tests that run inside the Dom0 (VXN_E2E=dom0, see ../conftest.py)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # pyxs 0.4.1 reads /proc/xen/capabilities at import without closing it
    # (ENVIRONMENT.md 1, pitfall 5); the suite runs with filterwarnings=error.
    warnings.simplefilter("ignore", ResourceWarning)
    import pyxs  # type: ignore[import-untyped]  # noqa: F401

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.xen)


@pytest.fixture(scope="session")
def job() -> dict[str, Any]:
    """The job the host submitted: its HEAD, file list and digest, pytest args."""
    data: dict[str, Any] = json.loads(Path(os.environ["VXN_E2E_JOB"]).read_text())
    return data
