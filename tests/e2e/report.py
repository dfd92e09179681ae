"""What the host-side test hands to the terminal summary (see conftest.py)."""

from __future__ import annotations

import pytest

REPORT_KEY = pytest.StashKey[list[tuple[str, str]]]()
