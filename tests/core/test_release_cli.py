"""The acceptance flows of the release process through the CLI, with default plugins only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from itsm_bridge.cli import main

SERVICE = {
    "ci": "payments-api",
    "stakeholders": ["payments-team@acme.com"],
    "jobs": {
        "build": "payments/build",
        "deploy": "payments/deploy",
        "smoke_test": "payments/smoke",
        "rollback": "payments/rollback",
    },
    "tasks": [
        {
            "name": "Stop database",
            "kind": "manual",
            "group": "Database Administration",
            "before": "deploy",
        },
        {
            "name": "Start database",
            "kind": "manual",
            "group": "Database Administration",
            "after": "deploy",
        },
    ],
}


class Bridge:
    """Runs `itsm-bridge -c <config>` in-process and returns (exit code, stdout)."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], **overrides: Any):
        config: dict[str, Any] = {
            "database": f"sqlite:///{tmp_path}/bridge.db",
            "data_dir": str(tmp_path / "data"),
            "services": {"payments": SERVICE},
            "policy": {"verify_minutes": 0},
        }
        config.update(overrides)
        self.path = tmp_path / "bridge.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(["-c", str(self.path), *args])
        out = self.capsys.readouterr()
        self.last_err = out.err
        return code, out.out

    def ok(self, *args: str) -> str:
        code, out = self(*args)
        assert code == 0, f"{args}: exit {code}: {self.last_err}"
        return out

    def show(self, release_id: str) -> dict[str, Any]:
        return json.loads(self.ok("release", "show", release_id, "--json"))

    def steps(self, release_id: str) -> dict[str, str]:
        return {s["name"]: s["status"] for s in self.show(release_id)["steps"]}


@pytest.fixture
def bridge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Bridge:
    return Bridge(tmp_path, capsys)


def deploy_and_smoke(bridge: Bridge, rid: str) -> None:
    for task in ("stop-database", "deploy", "start-database", "smoke-test"):
        bridge.ok("release", "task-done", rid, task, "--note", f"{task} ok")
        bridge.ok("sync", "--once")


def test_release_goes_to_closed_with_default_plugins_only(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    bridge.ok("sync", "--once")
    assert bridge.show(rid)["state"] == "planned"
    assert bridge.steps(rid)["evaluate"] == "waiting"
    bridge.ok("release", "approve", rid, "--note", "CAB ok")
    bridge.ok("sync", "--once")
    data = bridge.show(rid)
    assert data["state"] == "implementing"
    assert [t["key"] for t in data["tasks"]] == [
        "stop-database",
        "deploy",
        "start-database",
        "smoke-test",
    ]
    assert {t["kind"] for t in data["tasks"]} == {"manual"}
    deploy_and_smoke(bridge, rid)
    data = bridge.show(rid)
    assert data["state"] == "closed", data["steps"]
    for step in data["steps"]:
        assert step["status"] in {"done", "skipped"}, step
        assert step["detail"], step
        assert step["finished_at"]
    states = [e["message"] for e in data["events"] if e["kind"] == "state"]
    assert [s.split(":")[0] for s in states] == [
        "planned -> scheduled",
        "scheduled -> implementing",
        "implementing -> verifying",
        "verifying -> succeeded",
        "succeeded -> closed",
    ]
    assert bridge.steps(rid)["rollback"] == "skipped"
    assert bridge.steps(rid)["early_life_support"] == "skipped"
    assert "# payments 1.0.0" in bridge.ok("release", "notes", rid)
    assert "<h1>" in bridge.ok("release", "notes", rid, "--format", "html")


def test_rollback_ends_rolled_back_then_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = Bridge(tmp_path, capsys, policy={"verify_minutes": 30})
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.1.0").strip()
    bridge.ok("sync", "--once")
    bridge.ok("release", "approve", rid)
    bridge.ok("sync", "--once")
    deploy_and_smoke(bridge, rid)
    assert bridge.show(rid)["state"] == "verifying"
    bridge.ok("release", "rollback", rid, "--reason", "error rate above 5%")
    bridge.ok("sync", "--once")
    data = bridge.show(rid)
    assert data["state"] == "rolling_back"
    assert data["tasks"][-1]["key"] == "rollback"
    assert data["tasks"][-1]["kind"] == "manual"  # no deployment plugin
    bridge.ok("release", "task-done", rid, "rollback")
    bridge.ok("sync", "--once")
    data = bridge.show(rid)
    assert data["state"] == "closed"
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["rollback"]["status"] == "done"
    assert all(steps[n]["status"] == "done" for n in ("notify", "post_mortem", "service_levels"))
    assert steps["early_life_support"]["status"] == "skipped"
    # a person asked for the rollback: the watch that was running is skipped, not failed
    assert steps["detect"]["status"] == "skipped"
    assert steps["detect"]["detail"] == "skipped: rollback requested: error rate above 5%"
    states = [e["message"].split(":")[0] for e in data["events"] if e["kind"] == "state"]
    assert states[-4:] == [
        "verifying -> failed",
        "failed -> rolling_back",
        "rolling_back -> rolled_back",
        "rolled_back -> closed",
    ]
    assert data["failure_reason"] == "rollback requested: error rate above 5%"
    post_mortem = next(r for r in data["records"] if r["kind"] == "post_mortem")
    assert "error rate above 5%" in Path(post_mortem["id"]).read_text()


def test_rollback_before_deployment_is_refused(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    code, _ = bridge("release", "rollback", rid, "--reason", "x")
    assert code == 2
    assert "cancel" in bridge.last_err


def test_cancel_before_deployment(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    bridge.ok("sync", "--once")
    bridge.ok("release", "cancel", rid, "--reason", "superseded by 1.0.1")
    data = bridge.show(rid)
    assert data["state"] == "cancelled"
    assert all(s["status"] in {"done", "skipped"} for s in data["steps"])
    bridge.ok("sync", "--once")
    assert bridge.show(rid)["state"] == "cancelled"


def test_rejection_blocks_and_retry_asks_again(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    bridge.ok("sync", "--once")
    bridge.ok("release", "approve", rid, "--reject", "--note", "no back-out test")
    code, _ = bridge("sync", "--once")
    assert code == 1  # cron notices the blocked release
    lines = bridge.last_err.splitlines()
    assert len(lines) == 1, bridge.last_err
    assert rid in lines[0] and "blocked" in lines[0] and "no back-out test" in lines[0]
    data = bridge.show(rid)
    assert data["state"] == "blocked"
    assert "no back-out test" in {s["name"]: s for s in data["steps"]}["evaluate"]["detail"]

    # approving is never a way to unblock: it points to `release retry`
    code, _ = bridge("release", "approve", rid)
    assert code == 2
    assert f"release retry {rid}" in bridge.last_err
    assert bridge.show(rid)["state"] == "blocked"

    # the retry asks for approval again instead of reading the old rejection
    bridge.ok("release", "retry", rid)
    bridge.ok("sync", "--once")
    data = bridge.show(rid)
    assert data["state"] == "planned"
    assert {s["name"]: s for s in data["steps"]}["evaluate"]["status"] == "waiting"
    bridge.ok("release", "approve", rid, "--note", "back-out tested")
    bridge.ok("sync", "--once")
    assert bridge.show(rid)["state"] == "implementing"


def test_approve_only_where_an_approval_is_awaited(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    code, _ = bridge("release", "approve", rid)  # step 7 has not asked yet
    assert code == 2
    assert "no approval is awaited" in bridge.last_err
    assert "sync --once" in bridge.last_err
    bridge.ok("sync", "--once")
    bridge.ok("release", "approve", rid)
    bridge.ok("sync", "--once")
    assert bridge.show(rid)["state"] == "implementing"
    code, _ = bridge("release", "approve", rid)  # decided and deploying: nothing awaited
    assert code == 2
    assert "implementing" in bridge.last_err

    standard = bridge.ok(
        "release", "create", "--service", "payments", "--version", "1.0.1", "--type", "standard"
    ).strip()
    bridge.ok("sync", "--once")
    assert bridge.steps(standard)["evaluate"] == "done"  # pre-approved
    code, _ = bridge("release", "approve", standard, "--reject")
    assert code == 2
    assert bridge.steps(standard)["evaluate"] == "done"


FREEZE_WINDOWS = {
    "timezone": "Europe/Berlin",
    "maintenance": [
        {"name": "Weekly", "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0", "duration": "4h"}
    ],
    "freezes": [{"name": "Year end", "start": "2026-12-15", "end": "2027-01-05"}],
}


def test_normal_release_inside_a_freeze_waits_for_next_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = Bridge(tmp_path, capsys, windows=FREEZE_WINDOWS)
    rid = bridge.ok(
        "release",
        "create",
        "--service",
        "payments",
        "--version",
        "2.0.0",
        "--not-before",
        "2026-12-20T10:00:00+01:00",
        "--duration",
        "2h",
    ).strip()
    bridge.ok("sync", "--once")
    data = bridge.show(rid)
    # first Saturday after the freeze (ends 2027-01-05 inclusive): 2027-01-09 22:00 CET
    assert data["window_start"] == "2027-01-09T21:00:00Z"
    assert data["window_end"] == "2027-01-09T23:00:00Z"


def test_emergency_release_breaks_the_freeze_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = Bridge(tmp_path, capsys, windows=FREEZE_WINDOWS)
    rid = bridge.ok(
        "release",
        "create",
        "--service",
        "payments",
        "--version",
        "2.0.1",
        "--type",
        "emergency",
        "--reason",
        "CVE-2026-1234 actively exploited",
        "--not-before",
        "2026-12-20T10:00:00+01:00",
    ).strip()
    bridge.ok("sync", "--once")
    data = bridge.show(rid)
    assert data["window_start"] == "2026-12-20T09:00:00Z"
    exception = next(e for e in data["events"] if e["kind"] == "exception")
    assert "Year end" in exception["message"]
    assert "CVE-2026-1234" in exception["message"]
    assert exception["evidence"]["freezes"] == ["Year end"]


def test_emergency_without_reason_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = Bridge(tmp_path, capsys, windows=FREEZE_WINDOWS)
    code, _ = bridge(
        "release", "create", "--service", "payments", "--version", "2.0.1", "--type", "emergency"
    )
    assert code == 2
    assert "--reason" in bridge.last_err
    assert json.loads(bridge.ok("release", "list", "--json")) == []


def test_unknown_service_and_bad_options_exit_2(bridge: Bridge) -> None:
    assert bridge("release", "create", "--service", "nope", "--version", "1")[0] == 2
    assert (
        bridge(
            "release", "create", "--service", "payments", "--version", "1", "--duration", "forever"
        )[0]
        == 2
    )
    assert (
        bridge(
            "release",
            "create",
            "--service",
            "payments",
            "--version",
            "1",
            "--not-before",
            "2026-12-20T10:00:00",
        )[0]
        == 2
    )
    assert bridge("release", "show", "rel-none")[0] == 1


def test_task_done_errors(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    bridge.ok("sync", "--once")
    code, _ = bridge("release", "task-done", rid, "no-such-task")
    assert code == 2
    assert "stop-database" in bridge.last_err


def test_plan_is_a_dry_run(bridge: Bridge, tmp_path: Path) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    import sqlite3

    def dump() -> list[str]:
        with sqlite3.connect(tmp_path / "bridge.db") as conn:
            return list(conn.iterdump())

    before = dump()
    out = bridge.ok("release", "plan", rid)
    assert "create_change(release=" + rid in out
    assert "approval_status(release=" + rid + ") -> default.approval" in out
    assert "RELEASE_ID" in out
    assert dump() == before


def test_list_filters_by_state(bridge: Bridge) -> None:
    first = bridge.ok("release", "create", "--service", "payments", "--version", "1").strip()
    bridge.ok("release", "create", "--service", "payments", "--version", "2")
    bridge.ok("release", "cancel", first, "--reason", "dup")
    cancelled = json.loads(bridge.ok("release", "list", "--state", "cancelled", "--json"))
    assert [r["id"] for r in cancelled] == [first]
    assert "payments" in bridge.ok("release", "list")


def test_db_upgrade_and_wal(bridge: Bridge, tmp_path: Path) -> None:
    assert "up to date (sqlite)" in bridge.ok("db", "upgrade")
    assert "up to date" in bridge.ok("db", "upgrade")  # idempotent
    import sqlite3

    mode = sqlite3.connect(tmp_path / "bridge.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_approve_refused_while_step_7_waits_for_something_else(
    bridge: Bridge, tmp_path: Path
) -> None:
    from itsm_bridge.store import open_store

    rid = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    bridge.ok("sync", "--once")
    store = open_store(f"sqlite:///{tmp_path}/bridge.db")
    with store.begin() as tx:  # step 7 waits to retry a transient failure, nothing asked yet
        (step,) = [s for s in tx.steps(rid) if s.number == 7]
        assert step.status == "waiting"
        step.state = {"retry_at": None, "last_detail": "transient failure (attempt 1)"}
        tx.save_step(rid, step)
    store.close()
    code, _ = bridge("release", "approve", rid)
    assert code == 2
    assert "no approval is awaited" in bridge.last_err


@pytest.mark.parametrize(
    "version",
    ["", "1.0 beta", "1.0\t", "\u00a01.0", "1.0\x07", "1.0\u200b", "1.0\n", "v" * 65],
    ids=["empty", "space", "tab", "nbsp", "bell", "zero-width", "newline", "65-chars"],
)
def test_bad_versions_are_refused(bridge: Bridge, version: str) -> None:
    code, _ = bridge("release", "create", "--service", "payments", "--version", version)
    assert code == 2
    assert "--version" in bridge.last_err
    assert json.loads(bridge.ok("release", "list", "--json")) == []


def test_version_of_64_characters_is_accepted(bridge: Bridge) -> None:
    rid = bridge.ok("release", "create", "--service", "payments", "--version", "v" * 64).strip()
    assert bridge.show(rid)["version"] == "v" * 64


def test_version_pattern_must_match_the_whole_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = {"verify_minutes": 0, "version_pattern": r"\d+\.\d+\.\d+"}
    bridge = Bridge(tmp_path, capsys, policy=policy)
    for version in ("1.2", "1.2.3-rc1", "x1.2.3"):
        code, _ = bridge("release", "create", "--service", "payments", "--version", version)
        assert code == 2, version
        assert "policy.version_pattern" in bridge.last_err
    bridge.ok("release", "create", "--service", "payments", "--version", "1.2.3")
    assert len(json.loads(bridge.ok("release", "list", "--json"))) == 1


def test_second_open_release_of_a_version_is_refused(bridge: Bridge) -> None:
    first = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0").strip()
    code, _ = bridge("release", "create", "--service", "payments", "--version", "1.0.0")
    assert code == 2
    assert first in bridge.last_err
    bridge.ok("sync", "--once")
    bridge.ok("release", "approve", first, "--reject")
    code, _ = bridge("sync", "--once")
    assert bridge.show(first)["state"] == "blocked"  # blocked is still open
    code, _ = bridge("release", "create", "--service", "payments", "--version", "1.0.0")
    assert code == 2
    assert first in bridge.last_err
    bridge.ok("release", "create", "--service", "payments", "--version", "1.0.1")
    bridge.ok("release", "cancel", first, "--reason", "superseded")
    second = bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0")
    assert second.strip() != first
    assert len(json.loads(bridge.ok("release", "list", "--json"))) == 3


def test_clean_sync_exits_0_with_nothing_on_stderr(bridge: Bridge) -> None:
    bridge.ok("release", "create", "--service", "payments", "--version", "1.0.0")
    code, out = bridge("sync", "--once")
    assert code == 0
    assert "advanced 1 release(s)" in out
    assert bridge.last_err == ""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_servicenow(tmp_path: Path) -> Path:
    config = {
        "database": f"sqlite:///{tmp_path}/bridge.db",
        "data_dir": str(tmp_path / "data"),
        "plugins": {
            "enabled": ["servicenow"],
            "servicenow": {
                "url": f"http://127.0.0.1:{_closed_port()}",
                "user": "svc_bridge",
                "password": "pw-never-shown",
                "retries": 1,
            },
        },
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_failing_intake_source_fails_the_cycle_as_cron_sees_it(tmp_path: Path) -> None:
    config = _unreachable_servicenow(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "itsm_bridge.cli", "-c", str(config), "sync", "--once"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("intake from servicenow failed:")
    assert "Traceback" not in done.stderr
    assert "pw-never-shown" not in done.stderr + done.stdout
    assert "intake: 0 new backlog item(s)" in done.stdout
