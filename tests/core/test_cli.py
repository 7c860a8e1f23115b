from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import exc as sa_exc

from itsm_bridge import __version__
from itsm_bridge.cli import main
from itsm_bridge.errors import NeedsHuman, TransientError
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


REPO = Path(__file__).parents[2]


def _help_texts() -> dict[str, str]:
    """The --help text of the command and of every sub-command, by command line."""
    import argparse

    from itsm_bridge.cli import build_parser

    texts: dict[str, str] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        texts[name] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(build_parser(), "itsm-bridge")
    return texts


def test_help_names_only_files_in_the_repository() -> None:
    texts = _help_texts()
    assert len(texts) > 15
    for command, text in texts.items():
        flat = " ".join(text.split())
        for path in re.findall(r"[\w./-]+\.(?:ya?ml|md|toml|py|json)\b", flat):
            if path == "config/itsm-bridge.yaml":  # the default: not shipped, made by a copy
                assert "copy of config/itsm-bridge.example.yaml" in flat, command
                continue
            assert (REPO / path).is_file(), f"`{command} --help` names {path}, not in the repo"


def test_every_option_and_argument_is_explained() -> None:
    from itsm_bridge.cli import build_parser

    parsers = [build_parser()]
    seen = 0
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                parsers += list(action.choices.values())
                for name, text in (
                    (a.dest, a.help) for a in getattr(action, "_choices_actions", [])
                ):
                    assert text, f"sub-command {name} has no help"
                continue
            seen += 1
            assert action.help, f"{parser.prog}: {action.option_strings or action.dest}"
    assert seen > 40


def test_plugins_without_a_configuration_lists_what_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/itsm-bridge.yaml here, no ITSM_BRIDGE_CONFIG
    assert main(["plugins"]) == 0
    out = capsys.readouterr()
    assert "no configuration file" in out.err
    assert "servicenow 0.1.0 (plugin, installed, itsm_bridge_servicenow" in out.out
    assert "default.notes" in out.out
    assert main(["plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["servicenow"]["enabled"] is None
    assert {"create_change", "check_connection"} <= set(listing["servicenow"]["hooks"])
    assert listing["default.notes"]["enabled"] is True
    assert listing["default.notes"]["default"] is True


def test_plugins_with_a_configuration_says_which_are_enabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    assert main(["-c", str(config), "plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["servicenow"]["enabled"] is False
    assert "create_change" in listing["servicenow"]["hooks"]
    assert main(["-c", str(config), "plugins"]) == 0
    assert "(plugin, not enabled" in capsys.readouterr().out
    config.write_text(
        "plugins:\n  enabled: [servicenow]\n  servicenow:\n"
        "    {url: 'https://acme.service-now.com', user: u, password: p}\n"
    )
    assert main(["-c", str(config), "plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["servicenow"]["enabled"] is True


def test_plugins_with_a_missing_explicit_configuration_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(tmp_path / "absent.yaml"), "plugins"]) == 2
    assert "cannot read configuration file" in capsys.readouterr().err


def test_unknown_key_in_a_plugin_section_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "plugins:\n  enabled: [servicenow]\n  servicenow:\n"
        "    {url: 'https://acme.service-now.com', user: u, password: p, bogus: 1}\n"
    )
    assert main(["-c", str(config), "check-config"]) == 2
    assert "plugins.servicenow.bogus: unknown key" in capsys.readouterr().err


def test_bad_version_pattern_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("policy:\n  version_pattern: '(\\d+'\n")
    assert main(["-c", str(config), "check-config"]) == 2
    assert "policy.version_pattern" in capsys.readouterr().err


def test_minimal_configuration_of_the_readme_works_without_server_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### A minimal configuration", 1)[1]
    text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(text)
    assert "server" not in data
    monkeypatch.chdir(tmp_path)  # its sqlite path is relative to the working directory
    monkeypatch.setenv("SNOW_PASSWORD", "pw")
    config = tmp_path / "bridge.yaml"
    config.write_text(text)
    assert main(["-c", str(config), "check-config"]) == 0, capsys.readouterr().err
    assert main(["-c", str(config), "release", "list"]) == 0
    database = data["database"].removeprefix("sqlite:///")
    assert (tmp_path / database).is_file()


# -- failures: one line naming the cause and the fix, a traceback only with -v ---------------


def _failing(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make `check-config` raise `error`."""

    def boom(args: object) -> int:
        raise error

    monkeypatch.setattr("itsm_bridge.cli.cmd_check_config", boom)


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (NeedsHuman("GET change_request: HTTP 401: User Not Authenticated"), 1, "401"),
        (TransientError("GET change_request: HTTP 503"), 1, "again later"),
        (requests.ConnectionError("connection refused"), 1, "network"),
        (requests.exceptions.InvalidURL("no host"), 2, "plugins.<name>.url"),
        (
            sa_exc.OperationalError(
                "INSERT", {}, Exception("attempt to write a readonly database")
            ),
            1,
            "readonly database",
        ),
        (PermissionError(13, "Permission denied", "/var/lib/x"), 1, "/var/lib/x"),
    ],
    ids=["needs-human", "transient", "network", "bad-url", "database", "os"],
)
def test_expected_failures_are_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    error: BaseException,
    code: int,
    words: str,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    _failing(monkeypatch, error)
    assert main(["-c", str(config), "check-config"]) == code
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert words in err
    assert "Traceback" not in err
    assert main(["-v", "-c", str(config), "check-config"]) == code
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_failure_shows_the_traceback_and_says_it_is_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    _failing(monkeypatch, KeyError("steps"))
    assert main(["-c", str(config), "check-config"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("error: unexpected KeyError")
    assert "bug" in err.splitlines()[-1]


def test_database_in_a_path_that_cannot_be_created_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    config = tmp_path / "c.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/afile/db/bridge.db\n")
    assert main(["-c", str(config), "release", "list"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()]
    assert f"{tmp_path}/afile/db/bridge.db" in err
    assert "Not a directory" in err
    assert "Traceback" not in err


def test_database_that_cannot_be_opened_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}\n")  # a directory, not a file
    assert main(["-c", str(config), "sync", "--once"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert f"cannot open database {tmp_path}: unable to open database file" in err


def test_unreachable_postgresql_is_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("database: postgresql+psycopg://bridge:pa55word@127.0.0.1:1/bridge\n")
    assert main(["-c", str(config), "release", "list"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "bridge:***@127.0.0.1:1/bridge" in err
    assert "refused" in err
    assert "pa55word" not in err


def test_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("database: sqlite:///state/bridge.db\n")
    assert main(["-c", str(config), "db", "upgrade"]) == 0
    assert (tmp_path / "state" / "bridge.db").is_file()
    (tmp_path / "other").write_text("a file where the directory should be")
    config.write_text("database: sqlite:///other/bridge.db\n")
    capsys.readouterr()
    assert main(["-c", str(config), "db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/other/bridge.db (relative to the working directory)" in err


def test_verbose_adds_the_traceback_as_cron_would_run_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}\n")
    command = [sys.executable, "-m", "itsm_bridge.cli", "-c", str(config), "sync", "--once"]
    quiet = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert quiet.returncode == 1
    assert quiet.stderr.startswith("failed: cannot open database")
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    command.insert(3, "-v")
    loud = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr
    assert loud.stderr.splitlines()[-1] == quiet.stderr.strip()


def test_unwritable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writable = tmp_path / "rw.yaml"
    writable.write_text(f"database: sqlite:///{tmp_path}/bridge.db\nservices: {{payments: {{}}}}\n")
    assert (
        main(["-c", str(writable), "release", "create", "--service", "payments", "--version", "1"])
        == 0
    )
    read_only = tmp_path / "ro.yaml"  # the same file, opened read-only (root ignores chmod)
    read_only.write_text(
        f'database: "sqlite:///file:{tmp_path}/bridge.db?mode=ro&uri=true"\n'
        "services: {payments: {}}\n"
    )
    capsys.readouterr()
    assert main(["-c", str(read_only), "sync", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"failed: cannot write to database {tmp_path}/bridge.db: attempt to write a readonly "
        "database; check that the directory exists and this user may write there, or set "
        "`database` in the configuration"
    ]
    assert (
        main(["-c", str(read_only), "release", "create", "--service", "payments", "--version", "2"])
        == 1
    )
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "attempt to write a readonly database" in err
    assert "Traceback" not in err
