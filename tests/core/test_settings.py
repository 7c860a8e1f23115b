from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from itsm_bridge.errors import ConfigError
from itsm_bridge.settings import load_settings, settings_from_mapping
from support import set_example_secrets

EXAMPLE = Path(__file__).parents[2] / "config" / "itsm-bridge.example.yaml"


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    set_example_secrets(monkeypatch)
    monkeypatch.setenv("BRIDGE_API_TOKEN", "t0ken-value")
    settings = load_settings(EXAMPLE)
    assert settings.server.token is not None
    assert settings.server.token.get_secret_value() == "t0ken-value"
    assert "t0ken-value" not in repr(settings)
    assert settings.services["payments"].jobs.deploy == "payments/deploy"
    assert settings.windows.maintenance[0].length.total_seconds() == 4 * 3600
    assert str(settings.windows.freezes[0].end) == "2027-01-05"


def test_defaults_when_file_is_empty(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.database.startswith("sqlite:///")
    assert settings.plugins.enabled == []
    assert settings.policy.verify_minutes == 30


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"databse": "sqlite://"}, "databse: unknown key"),
        ({"server": {"listen": "1.2.3.4:80", "tokn": "x"}}, "server.tokn: unknown key"),
        ({"policy": {"verify_minutes": "soon"}}, "policy.verify_minutes"),
        ({"policy": {"verify_minutes": -1}}, "policy.verify_minutes"),
        ({"server": {"listen": "8765"}}, "server.listen"),
        ({"windows": {"timezone": "Mars/Olympus"}}, "windows.timezone"),
        (
            {"windows": {"maintenance": [{"name": "W", "rrule": "FREQ=DAILY", "duration": "4x"}]}},
            "windows.maintenance.0.duration",
        ),
        ({"windows": {"maintenance": [{"name": "W", "duration": "4h"}]}}, "rrule: required"),
        (
            {"services": {"pay": {"tasks": [{"name": "T", "kind": "manual", "job": "x"}]}}},
            "services.pay.tasks.0",
        ),
        ({"services": {"pay": {"jobs": {"deploi": "x"}}}}, "services.pay.jobs.deploi"),
        (
            {"windows": {"maintenance": [{"name": "W", "rrule": "FREQ=NEVER", "duration": "1h"}]}},
            "maintenance[0].rrule",
        ),
        (
            {"windows": {"freezes": [{"name": "F", "start": "2026-12-15", "end": "2026-12-01"}]}},
            "windows.freezes.0",
        ),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, data))
    assert key in str(err.value)


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 3"):
        load_settings(write(tmp_path, "a: 1\nb: [\n"))


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ITSM_BRIDGE_CONFIG"):
        load_settings(tmp_path / "absent.yaml")


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"policy": {"els_days": 3}})
    monkeypatch.setenv("ITSM_BRIDGE_CONFIG", str(path))
    assert load_settings().policy.els_days == 3


def test_env_reference_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_URL", "sqlite:///x.db")
    assert settings_from_mapping({"database": {"$env": "DB_URL"}}).database == "sqlite:///x.db"


def test_missing_env_reference_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"server": {"token": {"$env": "NOPE_TOKEN"}}})
    assert "NOPE_TOKEN" in str(err.value)
    assert "server.token" in str(err.value)


def test_file_reference_resolved_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("file-secret\n")
    settings = settings_from_mapping({"server": {"token": {"$file": str(secret)}}})
    assert settings.server.token is not None
    assert settings.server.token.get_secret_value() == "file-secret"


def test_missing_file_reference_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read secret file"):
        settings_from_mapping({"server": {"token": {"$file": str(tmp_path / "none")}}})


def test_reference_with_two_keys_is_an_error() -> None:
    with pytest.raises(ConfigError, match="exactly one key"):
        settings_from_mapping({"database": {"$env": "A", "other": 1}})


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        {"policy": {"verify_minutes": 30}, "services": {"payments": {"ci": "payments-api"}}},
    )
    monkeypatch.setenv("ITSM_BRIDGE_POLICY__VERIFY_MINUTES", "5")
    monkeypatch.setenv("ITSM_BRIDGE_SERVICES__PAYMENTS__CI", "payments-v2")
    settings = load_settings(path)
    assert settings.policy.verify_minutes == 5
    assert settings.services["payments"].ci == "payments-v2"


def test_environment_override_reaches_plugin_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITSM_BRIDGE_PLUGINS__JIRA__PROJECT", "PAY")
    settings = load_settings(write(tmp_path, {"plugins": {"jira": {"url": "http://j"}}}))
    assert settings.plugins.section("jira") == {"url": "http://j", "project": "PAY"}


def test_unknown_environment_override_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITSM_BRIDGE_POLICY__VERIFY_MINUTS", "5")
    with pytest.raises(ConfigError, match=r"policy\.verify_minuts"):
        load_settings(write(tmp_path, {}))
    monkeypatch.delenv("ITSM_BRIDGE_POLICY__VERIFY_MINUTS")
    monkeypatch.setenv("ITSM_BRIDGE_NOTHING", "1")
    with pytest.raises(ConfigError, match="ITSM_BRIDGE_NOTHING"):
        load_settings(write(tmp_path, {}))


SECRET = "hunter2-Secret"


@pytest.mark.parametrize(
    ("section", "key", "where"),
    [
        ("server", "listen", "server.listen"),
        ("policy", "verify_minutes", "policy.verify_minutes"),
        ("policy", "failure_severity", "policy.failure_severity"),
        ("policy", "default_duration", "policy.default_duration"),
        ("windows", "timezone", "windows.timezone"),
    ],
)
def test_secret_in_the_invalid_field_is_not_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str, key: str, where: str
) -> None:
    # The secret *is* the invalid value: a message that echoed the value would leak it.
    monkeypatch.setenv("TOKEN", SECRET)
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, {section: {key: {"$env": "TOKEN"}}}))
    assert where in str(err.value)
    assert SECRET.lower() not in str(err.value).lower()


@pytest.mark.parametrize(
    ("maintenance", "where"),
    [
        ({"name": "W", "rrule": f"FREQ=DAILY;UNTIL={SECRET}", "duration": "1h"}, "rrule"),
        ({"name": "W", "rrule": "FREQ=DAILY", "duration": SECRET}, "duration"),
    ],
)
def test_secret_in_a_window_is_not_in_the_error(
    monkeypatch: pytest.MonkeyPatch, maintenance: dict[str, str], where: str
) -> None:
    # dateutil quotes the offending part of an RRULE, upper-cased: masked as well
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"windows": {"maintenance": [maintenance]}})
    assert where in str(err.value)
    assert SECRET.lower() not in str(err.value).lower()


def test_secret_in_an_invalid_version_pattern_is_not_in_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKEN", SECRET + "(")
    with pytest.raises(ConfigError) as err:
        settings_from_mapping({"policy": {"version_pattern": {"$env": "TOKEN"}}})
    assert "policy.version_pattern: " in str(err.value)
    assert "not a valid regular expression" in str(err.value)
    assert SECRET.lower() not in str(err.value).lower()


def test_secret_in_an_invalid_environment_override_is_not_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ITSM_BRIDGE_SERVER__LISTEN", SECRET)
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, {}))
    assert "server.listen" in str(err.value)
    assert SECRET.lower() not in str(err.value).lower()


def test_secret_in_a_plugin_field_is_not_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from itsm_bridge.plugins import load_plugins

    monkeypatch.setenv("TOKEN", SECRET)
    section = {"url": "https://acme.service-now.com", "user": "u", "password": "p"}
    for key in ("timeout_seconds", "risk", "url"):
        settings = settings_from_mapping(
            {
                "plugins": {
                    "enabled": ["servicenow"],
                    "servicenow": {**section, key: {"$env": "TOKEN"}},
                }
            }
        )
        with pytest.raises(ConfigError) as err:
            load_plugins(settings)
        assert f"plugins.servicenow.{key}" in str(err.value)
        assert SECRET.lower() not in str(err.value).lower()


def test_version_pattern_is_compiled_at_load() -> None:
    settings = settings_from_mapping({"policy": {"version_pattern": r"\d+\.\d+\.\d+"}})
    assert settings.policy.version_pattern == r"\d+\.\d+\.\d+"
    assert settings_from_mapping({}).policy.version_pattern is None
    with pytest.raises(ConfigError, match=r"policy\.version_pattern: .*regular expression"):
        settings_from_mapping({"policy": {"version_pattern": "[0-9"}})
