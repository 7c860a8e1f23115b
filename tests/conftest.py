"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest

from db import database_url, postgres_server  # noqa: F401 - shared fixtures


@pytest.fixture(autouse=True)
def _clean_bridge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own ITSM_BRIDGE_* variables."""
    for name in list(os.environ):
        if name.upper().startswith("ITSM_BRIDGE_"):
            monkeypatch.delenv(name)
