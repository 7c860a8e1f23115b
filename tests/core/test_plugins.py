from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from itsm_bridge.errors import ConfigError
from itsm_bridge.plugins import DEFAULT_PLUGINS, load_plugins
from itsm_bridge.settings import settings_from_mapping

THIRD_PARTY = """
from pydantic import BaseModel, ConfigDict
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Approval

class AcmeApprovals:
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        approver: str

    def __init__(self, config, settings):
        self.approver = config.approver

    @hookimpl
    def approval_status(self, release):
        return Approval(status="approved", by=self.approver)
"""

MISSPELLED = """
from itsm_bridge.hookspecs import hookimpl

@hookimpl
def aproval_status(release):
    return None
"""


BROKEN = """
raise ImportError("needs libfoo")
"""


@pytest.fixture
def installed_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install three third-party distributions the way pip would: a module and a dist-info."""
    for dist, module, source, target in [
        ("acme_approvals", "acme_approvals", THIRD_PARTY, "acme_approvals:AcmeApprovals"),
        ("typo_plugin", "typo_plugin", MISSPELLED, "typo_plugin"),
        ("broken_plugin", "broken_plugin", BROKEN, "broken_plugin"),
    ]:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(
            f"[itsm_bridge]\n{module.split('_')[0]} = {target}\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("acme_approvals", "typo_plugin", "broken_plugin"):
        sys.modules.pop(name, None)


def test_defaults_load_without_any_enabled_plugin() -> None:
    host = load_plugins(settings_from_mapping({}))
    infos = host.get_plugins()
    assert [i.module for i in infos] == list(DEFAULT_PLUGINS)
    assert all(i.default for i in infos)
    by_name = {i.name: i for i in infos}
    assert by_name["default.calendar"].hooks == ["freeze_periods", "maintenance_windows"]


def test_third_party_plugin_through_entry_point(installed_plugins: Path) -> None:
    settings = settings_from_mapping(
        {"plugins": {"enabled": ["acme"], "acme": {"approver": "cab@acme.com"}}}
    )
    host = load_plugins(settings)
    info = {i.name: i for i in host.get_plugins()}["acme"]
    assert info.version == "1.2.3"
    assert info.hooks == ["approval_status"]
    assert not info.default
    # the third-party plugin is called before the trylast default
    from itsm_bridge.models import Release

    decision = host.hook.approval_status(release=Release(id="r1", service="s", version="1"))
    assert decision.by == "cab@acme.com"


def test_plugin_settings_are_validated_with_its_model(installed_plugins: Path) -> None:
    settings = settings_from_mapping(
        {"plugins": {"enabled": ["acme"], "acme": {"approver": "x", "aprover": "y"}}}
    )
    with pytest.raises(ConfigError, match=r"plugins\.acme\.aprover: unknown key"):
        load_plugins(settings)


def test_installed_but_not_enabled_is_not_loaded(installed_plugins: Path) -> None:
    host = load_plugins(settings_from_mapping({"plugins": {"enabled": []}}))
    assert "acme" not in {i.name for i in host.get_plugins()}


def test_unknown_plugin_lists_the_available_ones(installed_plugins: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_plugins(settings_from_mapping({"plugins": {"enabled": ["jiraa"]}}))
    assert "'jiraa'" in str(err.value)
    assert "acme" in str(err.value)


def test_section_of_unknown_plugin_is_an_error(installed_plugins: Path) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.nothere"):
        load_plugins(settings_from_mapping({"plugins": {"nothere": {"a": 1}}}))


def test_check_pending_catches_misspelled_hook(installed_plugins: Path) -> None:
    with pytest.raises(ConfigError, match="aproval_status"):
        load_plugins(settings_from_mapping({"plugins": {"enabled": ["typo"]}}))


def test_tracing_writes_hook_calls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ITSM_BRIDGE_TRACE", "1")
    host = load_plugins(settings_from_mapping({}))
    from itsm_bridge.models import Release

    with caplog.at_level("DEBUG", logger="itsm_bridge.plugins"):
        host.hook.approval_status(release=Release(id="r1", service="s", version="1"))
    assert "approval_status" in caplog.text


def test_unknown_key_in_a_plugin_section_names_it() -> None:
    section = {"url": "https://acme.service-now.com", "user": "u", "password": "p"}
    for extra, where in (
        ({"bogus": 1}, "plugins.servicenow.bogus"),
        ({"intake": {"bogus": 1}}, "plugins.servicenow.intake.bogus"),
    ):
        settings = settings_from_mapping(
            {"plugins": {"enabled": ["servicenow"], "servicenow": {**section, **extra}}}
        )
        with pytest.raises(ConfigError) as err:
            load_plugins(settings)
        assert f"{where}: unknown key" in str(err.value)
    load_plugins(  # the same section without the stray key is valid
        settings_from_mapping({"plugins": {"enabled": ["servicenow"], "servicenow": section}})
    )


def test_listing_without_configuration_shows_every_installed_plugin(
    installed_plugins: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from itsm_bridge.cli import main

    monkeypatch.chdir(installed_plugins)  # no configuration file here
    assert main(["plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["acme"]["hooks"] == ["approval_status"]  # read from the class, not built
    assert listing["acme"]["version"] == "1.2.3"
    assert listing["acme"]["enabled"] is None
    assert listing["broken"]["hooks"] == []
    assert "needs libfoo" in listing["broken"]["error"]
    assert {n for n in listing if n.startswith("default.")} == {
        "default." + m.rsplit(".", 1)[-1] for m in DEFAULT_PLUGINS
    }
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "acme 1.2.3 (plugin, installed, acme_approvals:AcmeApprovals)" in out
    assert "cannot be loaded: ImportError: needs libfoo" in out
