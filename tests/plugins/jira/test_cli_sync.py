"""The Jira plugin driven through the CLI alone (`release create`, `sync --once`), against
the sandbox: the release reads its scope from its Jira version, and an issue added to the
version afterwards reaches the release through the `jira` poller at the next sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml

from itsm_bridge.cli import main
from itsm_bridge_sandbox.jira import JiraSandbox

pytestmark = pytest.mark.integration
NOT_BEFORE = "2030-01-07T22:00:00+00:00"  # far off: the release stays before deployment


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    capsys.readouterr()
    code = main(["-c", str(config), *args])
    out = capsys.readouterr()
    assert code == 0, out.err + out.out
    return out.out


def write_config(tmp_path: Path, jira: JiraSandbox) -> Path:
    section = {"url": jira.url, "user": "sandbox", "token": "sandbox", "project": "PAY"}
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{tmp_path}/bridge.db",
                "data_dir": str(tmp_path),
                "plugins": {"enabled": ["jira"], "jira": section},
                "services": {"payments": {"ci": "payments-api"}},
                "policy": {"poll_seconds": 0, "require_backout_plan": False},
            }
        )
    )
    return config


def test_sync_once_polls_jira_and_the_release_reads_its_scope_again(
    jira: JiraSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jira.set_timezone("America/Los_Angeles")
    config = write_config(tmp_path, jira)
    create = ["release", "create", "--service", "payments", "--version", "1.5.0"]
    release_id = json.loads(run(capsys, config, *create, "--not-before", NOT_BEFORE, "--json"))[
        "id"
    ]
    run(capsys, config, "sync", "--once")
    notes = run(capsys, config, "release", "notes", release_id)
    assert all(key in notes for key in ("PAY-12", "PAY-13", "PAY-14", "PAY-15"))
    assert "PAY-8" not in notes

    requests.put(
        f"{jira.url}/rest/api/2/issue/PAY-8",
        json={"update": {"fixVersions": [{"add": {"name": "1.5.0"}}]}},
        auth=("sandbox", "sandbox"),
        timeout=5,
    ).raise_for_status()
    run(capsys, config, "sync", "--once")

    assert "PAY-8" in run(capsys, config, "release", "notes", release_id)
    shown = json.loads(run(capsys, config, "release", "show", release_id, "--json"))
    assert any("the backlog changed (PAY-8)" in e["message"] for e in shown["events"])
