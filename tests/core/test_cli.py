from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from itsm_bridge import __version__
from itsm_bridge.cli import main
from support import EXAMPLE_SECRETS, set_example_secrets

EXAMPLE = str(Path(__file__).parents[2] / "config" / "itsm-bridge.example.yaml")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_check_config_example(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_example_secrets(monkeypatch)
    assert main(["-c", EXAMPLE, "check-config"]) == 0
    out = capsys.readouterr()
    assert "is valid" in out.out
    assert "servicenow" in out.out
    for secret in EXAMPLE_SECRETS.values():
        assert secret not in out.out + out.err


def test_check_config_hides_database_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("database: postgresql+psycopg://bridge:pa55word@db/bridge\n")
    assert main(["-c", str(config), "check-config"]) == 0
    out = capsys.readouterr().out
    assert "pa55word" not in out
    assert "bridge:***@db" in out


def test_missing_env_variable_exits_2_and_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_example_secrets(monkeypatch)
    monkeypatch.delenv("BRIDGE_API_TOKEN", raising=False)
    assert main(["-c", EXAMPLE, "check-config"]) == 2
    assert "BRIDGE_API_TOKEN" in capsys.readouterr().err


def test_unknown_key_exits_2_with_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("policy:\n  verify_minutes: 5\n  verfy: 1\n")
    assert main(["-c", str(config), "check-config"]) == 2
    assert "policy.verfy" in capsys.readouterr().err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert main([]) == 2


def test_plugins_json_lists_hooks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    assert main(["-c", str(config), "plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = {p["name"]: p for p in listing}
    assert "render_release_notes" in names["default.notes"]["hooks"]
    assert {"name", "version", "module", "hooks"} <= set(names["default.notes"])


def test_console_script_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    set_example_secrets(monkeypatch)
    done = subprocess.run(
        [sys.executable, "-m", "itsm_bridge.cli", "-c", EXAMPLE, "check-config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
