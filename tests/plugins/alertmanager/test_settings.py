"""`plugins.alertmanager`: validation, and the ordered severities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from itsm_bridge.errors import ConfigError
from itsm_bridge.plugins import load_plugins
from itsm_bridge.settings import load_settings, settings_from_mapping
from itsm_bridge_alertmanager.settings import Settings
from plugins.alertmanager.conftest import URL, settings
from support import set_example_secrets

EXAMPLE = Path(__file__).parents[3] / "config" / "itsm-bridge.example.yaml"


def test_defaults() -> None:
    config = settings()
    assert config.service_label == "service"
    assert config.severity_label == "severity"
    assert config.severities == ["info", "warning", "critical"]
    assert config.min_severity == "critical"
    assert config.env is None
    assert config.poll_seconds == 60
    assert config.webhook_token is not None
    assert "example-token" not in repr(config)  # a secret


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_severity": "page"}, "min_severity must be one of severities"),
        ({"severities": ["info", "info", "critical"]}, "each value once"),
        ({"severities": []}, "at least 1 item"),
        ({"service_label": "service-name"}, "Prometheus label name"),
        ({"severity_label": "1sev"}, "Prometheus label name"),
        ({"env_label": ""}, "Prometheus label name"),
        ({"url": "alertmanager:9093"}, "Alertmanager's root URL"),
        ({"url": "http://am:9093/?x=1"}, "query"),
        ({"poll_seconds": -1}, "greater than or equal to 0"),
        ({"retries": 0}, "greater than or equal to 1"),
        ({"silence": {"matchers": []}}, "at least 1 item"),
        ({"silence": {"matchers": [{"name": "a-b", "value": "x"}]}}, "Prometheus label name"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**overrides)
    assert message in str(caught.value)


def test_a_bad_section_names_the_key_without_the_secret() -> None:
    bridge = settings_from_mapping(
        {
            "plugins": {
                "enabled": ["alertmanager"],
                "alertmanager": {"url": URL, "webhook_token": "s3cret-token", "min_severity": "x"},
            }
        }
    )
    with pytest.raises(ConfigError) as caught:
        load_plugins(bridge)
    assert "plugins.alertmanager" in str(caught.value)
    assert "min_severity must be one of severities" in str(caught.value)
    assert "s3cret-token" not in str(caught.value)


def test_what_counts_in_an_ordered_list() -> None:
    config = settings(
        severities=["info", "warning", "error", "critical", "page"], min_severity="error"
    )
    assert [s for s in config.severities if config.counts(s)] == ["error", "critical", "page"]
    assert config.counted() == ["error", "critical", "page"]
    assert not config.counts(None)
    assert not config.counts("fatal")  # not in the list


def test_the_standard_level_a_signal_carries() -> None:
    config = settings(
        severities=["low", "warning", "error", "critical", "page"], min_severity="low"
    )
    assert [config.standard(s) for s in config.severities] == [
        "info",  # nothing standard below it
        "warning",
        "warning",  # the nearest standard level below
        "critical",
        "critical",
    ]


def test_the_example_configuration_shows_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_example_secrets(monkeypatch)
    bridge = load_settings(EXAMPLE)
    section = bridge.plugins.section("alertmanager")
    assert set(section) == set(Settings.model_fields)
    assert "alertmanager" in bridge.plugins.enabled
    example = Settings.model_validate(section)
    defaults = settings(url=example.url)
    assert example.model_dump(exclude={"webhook_token"}) == defaults.model_dump(
        exclude={"webhook_token"}
    )  # the example shows the defaults
