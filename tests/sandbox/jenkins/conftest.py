"""Fixtures shared by the Jenkins sandbox tests: a clock the tests move by hand."""

from __future__ import annotations

import pytest

from support import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
