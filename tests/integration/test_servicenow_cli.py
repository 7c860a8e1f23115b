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


def write_config(tmp_path: Path, snow: ServiceNowSandbox, service: dict[str, Any]) -> Path:
    """A ServiceNow-only configuration (no job runner: every task is manual)."""
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
                "services": {"payments": service},
                "policy": {"verify_minutes": 0, "poll_seconds": 0},
            }
        )
    )
    return config


DBA = "Database Administration"
FOUR_MANUAL_TASKS = {
    "ci": "payments-api",
    "jobs": {"rollback": "payments/rollback"},  # named, but no plugin runs jobs
    "tasks": [
        {"name": "Stop database", "group": DBA, "before": "deploy"},
        {"name": "Start database", "group": DBA, "after": "deploy"},
    ],
}


def test_release_through_servicenow_with_the_cli_only(
    snow: ServiceNowSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance of the hardening: a ServiceNow-only release driven by `sync --once`
    closes, its change walked by its approvers, no change_task left open, and at most 15
    work notes on the change."""
    # no maintenance window for this test: the release may deploy at once
    schedule = snow.record("cmn_schedule_maintenance", "Payments weekly maintenance")
    deleted = requests.delete(
        f"{snow.url}/api/now/table/cmn_schedule_maintenance/{schedule['sys_id']}",
        auth=("sandbox", "sandbox"),
        timeout=10,
    )
    assert deleted.status_code == 204
    config = write_config(tmp_path, snow, FOUR_MANUAL_TASKS)
    args = ("--service", "payments", "--version", "1.4.0", "--name", "Faster refunds")
    rid = run(capsys, config, "release", "create", *args).strip()
    run(capsys, config, "sync", "--once")

    def show() -> dict[str, Any]:
        return json.loads(run(capsys, config, "release", "show", rid, "--json"))

    data = show()
    change = next(r for r in data["records"] if r["kind"] == "change_request")
    assert change["number"].startswith("CHG")
    record = snow.record("change_request", change["id"])
    assert record["correlation_id"] == rid
    assert record["short_description"] == "payments 1.4.0: Faster refunds"
    assert record["state"] == "-4"  # the bridge asked for approval: Assess
    assert record["approval"] == "requested"
    assert data["steps"][6]["status"] == "waiting"  # step 7: approvers have not decided
    snow.approve_change(change["id"], "CAB: go")  # technical review, then the CAB
    assert snow.record("change_request", change["id"])["state"] == "-2"  # Scheduled
    run(capsys, config, "sync", "--once")
    data = show()
    assert data["state"] == "implementing"
    ctasks = {t["key"]: t["record"] for t in data["tasks"]}
    assert list(ctasks) == ["stop-database", "deploy", "start-database", "smoke-test"]
    assert [t["kind"] for t in data["tasks"]] == ["manual"] * 4
    assert all(r and r["number"].startswith("CTASK") for r in ctasks.values())
    for key in ctasks:
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
    # the change was walked by its approvers: the bridge never wrote Authorize or Scheduled
    written = [
        r.json().get("state")
        for r in snow.requests_to("PATCH", f"/api/now/table/change_request/{change['id']}")
    ]
    assert [s for s in written if s] == ["-4", "-1", "0", "3"]
    # no open task on the closed change
    ours = [r for r in snow.store.rows_of("change_task") if r["change_request"] == change["id"]]
    assert len(ours) == 4 and {r["active"] for r in ours} == {"false"}
    # a change manager reads at most 15 notes (the figure is in the closing note)
    notes = snow.journal(change["id"], "work_notes", table="change_request")
    assert 0 < len(notes) <= 15, len(notes)
    print(f"work notes on {change['number']}: {len(notes)}")  # shown with pytest -s
    assert f"work notes written by itsm-bridge on this change: {len(notes)}" in notes[-1]["value"]
    # ServiceNow only, no job runner: the plans name no job, only manual tasks and groups
    assert closed["implementation_plan"].splitlines() == [
        "1. Stop database (manual, Database Administration)",
        "2. Deploy (manual, Change Management)",
        "3. Start database (manual, Database Administration)",
        "4. Smoke test (manual, Change Management)",
    ]
    assert "job" not in closed["backout_plan"] + closed["test_plan"]
    assert "Roll back by hand" in closed["backout_plan"]


def test_a_cancelled_release_leaves_no_open_change_task(
    snow: ServiceNowSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, snow, {"ci": "payments-api", "jobs": {"rollback": "p/rb"}})
    args = ("release", "create", "--service", "payments", "--version", "1.5.0")
    rid = run(capsys, config, *args).strip()
    run(capsys, config, "sync", "--once")  # change and tasks exist; approval is awaited
    data = json.loads(run(capsys, config, "release", "show", rid, "--json"))
    change = next(r for r in data["records"] if r["kind"] == "change_request")
    assert all(t["record"] for t in data["tasks"])
    run(capsys, config, "release", "cancel", rid, "--reason", "superseded by 1.5.1")
    run(capsys, config, "sync", "--once")  # delivers the events of the command

    ours = [r for r in snow.store.rows_of("change_task") if r["change_request"] == change["id"]]
    assert len(ours) == 2 and {r["state"] for r in ours} == {"4"}  # Canceled
    assert len(snow.requests_to("PATCH", "/api/now/table/change_task/")) == 2
    run(capsys, config, "sync", "--once")
    assert len(snow.requests_to("PATCH", "/api/now/table/change_task/")) == 2  # nothing more
