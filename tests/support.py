"""Helpers shared by tests (importable as `support`)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_service(available: bool, what: str) -> None:
    """Skip when a service is missing on a laptop; fail in CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true but is not available")
    pytest.skip(f"{what} is not available")
