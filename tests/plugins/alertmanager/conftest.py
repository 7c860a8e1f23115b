"""Fixtures for the Alertmanager plugin: its settings, and the payloads captured from a real
Alertmanager 0.25 (`samples/`: two webhook notifications, firing then resolved, with the
headers it sent, and the `GET /api/v2/alerts` answer for the same two alerts)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from itsm_bridge_alertmanager.settings import Settings

SAMPLES = Path(__file__).parent / "samples"
URL = "http://alertmanager.example:9093"
TOKEN = "example-token"  # what the captured notifications carry


def sample(name: str) -> Any:
    return copy.deepcopy(json.loads((SAMPLES / name).read_text()))


def settings(**overrides: Any) -> Settings:
    return Settings.model_validate({"url": URL, "webhook_token": TOKEN, **overrides})


def delivery(name: str = "webhook-firing.json") -> tuple[dict[str, str], dict[str, Any]]:
    """(headers, body) of a captured notification."""
    captured = sample(name)
    return captured["headers"], captured["body"]


@pytest.fixture
def config() -> Settings:
    return settings()
