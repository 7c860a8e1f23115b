"""`plugins.notify`: the example file's section, and each mistake refused with the key and
the fix (never the secret that came with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from itsm_bridge.errors import ConfigError
from itsm_bridge.plugins import load_plugins
from itsm_bridge_notify import Settings

EXAMPLE = Path(__file__).parents[3] / "config" / "itsm-bridge.example.yaml"


def test_the_example_section_is_valid_with_every_default() -> None:
    section = yaml.safe_load(EXAMPLE.read_text())["plugins"]["notify"]
    config = Settings.model_validate(section)
    defaults = Settings.model_validate({"smtp_url": "smtp://x", "sender": "a@b.test"})
    for key in section:  # the example shows each default as it is
        if key not in ("smtp_url", "sender"):
            assert getattr(config, key) == getattr(defaults, key), key
    assert set(section) == set(Settings.model_fields)  # and every key
    assert config.smtp_parts == ("smtp", "mail.acme.com", 587)


def test_default_ports() -> None:
    assert Settings(smtp_url="smtp://mx.test", sender="a@b.test").smtp_parts[2] == 25
    assert Settings(smtp_url="smtps://mx.test", sender="a@b.test").smtp_parts[2] == 465


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ({}, "configure at least one channel"),
        ({"smtp_url": "smtp://mx.test"}, "sender: required with smtp_url"),
        ({"smtp_url": "http://mx.test", "sender": "a@b.test"}, "must be smtp:// or smtps://"),
        (
            {"smtp_url": "smtp://bridge:hunter2secret@mx.test", "sender": "a@b.test"},
            "must not carry credentials; set plugins.notify.user and password",
        ),
        ({"smtp_url": "smtp://mx.test/x?y=1", "sender": "a@b.test"}, "a scheme, a host and a port"),
        ({"smtp_url": "smtp://mx.test:port", "sender": "a@b.test"}, "invalid port"),
        ({"smtp_url": "smtp://mx.test", "sender": "releases"}, "sender: Value error, must be"),
        (
            {"smtp_url": "smtp://mx.test", "sender": "a@b.test", "to": ["x y@b.test"]},
            "plugins.notify.to: Value error, must be an e-mail address",
        ),
        (
            {"smtp_url": "smtp://mx.test", "sender": "a@b.test", "user": "bridge"},
            "user and password: set both",
        ),
        (
            {"slack": {"webhook_url": "https://h.test/x"}, "user": "u", "password": "p"},
            "only used with smtp_url",
        ),
        ({"slack": {"webhook_url": "http://hooks.slack.test/s/e/c/r/e/t"}}, "https:// URL"),
        ({"teams": {}}, "plugins.notify.teams.webhook_url: required key is missing"),
        ({"slack": {"webhook_url": "https://h.test/x"}, "retries": 0}, "plugins.notify.retries"),
        (
            {"smtp_url": "smtp://mx.test", "sender": "a@b.test", "tls_ca_file": "/nope.pem"},
            "is not a readable file",
        ),
        ({"smtp_url": "smtp://mx.test", "sender": "a@b.test", "smtp": 1}, "smtp: unknown key"),
        (
            {"smtp_url": "smtp://mx.test", "sender": "a@b.test", "starttls": "never"},
            "plugins.notify.starttls",
        ),
    ],
)
def test_mistakes_are_refused(notify: dict[str, Any], message: str, kit: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_plugins(kit.bridge(notify))
    text = str(caught.value)
    assert message in text
    assert "hunter2secret" not in text and "s/e/c/r/e/t" not in text
