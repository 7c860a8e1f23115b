"""The ServiceNow plugin driven through the CLI alone (`sync --once`), against the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from itsm_bridge.cli import main
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox


@pytest.fixture
def snow() -> Iterator[ServiceNowSandbox]:
    server = ServiceNowSandbox(load_seed()["servicenow"])
    server.start()
    yield server
    server.stop()


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> str:
    capsys.readouterr()
    code = main(["-c", str(config), *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_release_through_servicenow_with_the_cli_only(
    snow: ServiceNowSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no maintenance window for this test: the release may deploy at once
    schedule = snow.record("cmn_schedule_maintenance", "Payments weekly maintenance")
    deleted = requests.delete(
        f"{snow.url}/api/now/table/cmn_schedule_maintenance/{schedule['sys_id']}",
        auth=("sandbox", "sandbox"),
        timeout=10,
    )
    assert deleted.status_code == 204
    config = tmp_path / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{tmp_path}/bridge.db",
                "data_dir": str(tmp_path),
                "plugins": {
                    "enabled": ["servicenow"],
                    "servicenow": {
                        "url": snow.url,
                        "user": "sandbox",
                        "password": "sandbox",
                        "assignment_group": "Change Management",
                    },
                },
                "services": {
                    "payments": {
                        "ci": "payments-api",
                        "jobs": {
                            "deploy": "payments/deploy",
                            "smoke_test": "payments/smoke",
                            "rollback": "payments/rollback",
                        },
                        "tasks": [
                            {
                                "name": "Stop database",
                                "group": "Database Administration",
                                "before": "deploy",
                            }
                        ],
                    }
                },
                "policy": {"verify_minutes": 0, "poll_seconds": 0},
            }
        )
    )
    rid = run(
        capsys,
        config,
        "release",
        "create",
        "--service",
        "payments",
        "--version",
        "1.4.0",
        "--name",
        "Faster refunds",
    ).strip()
    run(capsys, config, "sync", "--once")

    def show() -> dict[str, Any]:
        return json.loads(run(capsys, config, "release", "show", rid, "--json"))

    data = show()
    change = next(r for r in data["records"] if r["kind"] == "change_request")
    assert change["number"].startswith("CHG")
    record = snow.record("change_request", change["id"])
    assert record["correlation_id"] == rid
    assert record["short_description"] == "payments 1.4.0: Faster refunds"
    assert data["steps"][6]["status"] == "waiting"  # step 7: the CAB has not approved yet
    snow.approve_change(change["id"], "CAB: go")
    run(capsys, config, "sync", "--once")
    data = show()
    assert data["state"] == "implementing"
    ctasks = {t["key"]: t["record"] for t in data["tasks"]}
    assert all(r and r["number"].startswith("CTASK") for r in ctasks.values())
    for key in ("stop-database", "deploy", "smoke-test"):
        snow.close_task(ctasks[key]["id"], notes=f"{key} done")
        run(capsys, config, "sync", "--once")
    data = show()
    assert data["state"] == "closed", data["steps"]
    text = run(capsys, config, "release", "show", rid)
    assert change["number"] in text
    assert all(r["number"] in text for r in ctasks.values())
    closed = snow.record("change_request", change["id"])
    assert closed["state"] == "3"
    assert closed["close_code"] == "successful"
