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


# The variables config/itsm-bridge.example.yaml refers to, with recognisable values.
EXAMPLE_SECRETS = {
    "BRIDGE_API_TOKEN": "very-secret-token",
    "SNOW_PASSWORD": "very-secret-snow-password",
    "SNOW_WEBHOOK_TOKEN": "very-secret-webhook-token",
    "JIRA_TOKEN": "very-secret-jira-token",
    "JIRA_WEBHOOK_SECRET": "very-secret-jira-webhook-secret",
    "JENKINS_TOKEN": "very-secret-jenkins-token",
    "JENKINS_WEBHOOK_TOKEN": "very-secret-jenkins-webhook-token",
    "AM_WEBHOOK_TOKEN": "very-secret-alertmanager-webhook-token",
}


def set_example_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(name, value)


class ManualClock:
    """Seconds since the epoch, as `time.time` gives them, moved only by `tick`."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds
