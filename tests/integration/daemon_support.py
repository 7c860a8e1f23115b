"""`itsm-bridge run` as a subprocess against the sandbox, for the daemon's acceptance tests
(imported as `integration.daemon_support`).

The sandbox runs in the test process (so the tests count its request logs); its seed has no
maintenance or blackout schedule (a release may deploy at once) and its Jenkins notifies
every daemon under test (the Notification plugin's FINALIZED phase at `/webhooks/jenkins`).
Releases are standard changes (pre-approved, no person in the loop) of the payments service
with its four Jenkins jobs and no manual task.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from itsm_bridge_sandbox import Sandbox, load_seed

TOKEN = "daemon-api-token-0123"
JENKINS_HOOK = "jenkins-hook-token-4567"
JOBS = {
    "build": "payments/build",
    "deploy": "payments/deploy",
    "smoke_test": "payments/smoke",
    "rollback": "payments/rollback",
}
DONE = ("closed", "blocked", "failed", "rolled_back", "cancelled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sandbox_for(*ports: int) -> Sandbox:
    """The default seed without schedules; Jenkins notifies the daemons on `ports`."""
    seed = load_seed()
    records = seed["servicenow"]["records"]
    for table in ("cmn_schedule_maintenance", "cmn_schedule_blackout", "cmn_schedule_span"):
        records.pop(table, None)
    jenkins = seed["jenkins"]
    jenkins["quiet_period"] = 0.05
    for job in jenkins["jobs"]:  # as short as the behaviour allows
        job["duration"] = 0.2
    seed["jenkins"]["notifications"] = [
        {"url": f"http://127.0.0.1:{port}/webhooks/jenkins?token={JENKINS_HOOK}",
         "event": "finalized"}
        for port in ports
    ]  # fmt: skip
    sandbox = Sandbox(seed)
    sandbox.start()
    return sandbox


def write_config(
    path: Path,
    database: str,
    port: int,
    sandbox: Sandbox,
    servicenow: dict[str, Any] | None = None,
    poll_seconds: int = 2,
    **server: Any,
) -> Path:
    urls = sandbox.urls
    path.write_text(
        yaml.safe_dump(
            {
                "database": database,
                "data_dir": str(path.parent),
                "server": {
                    "listen": f"127.0.0.1:{port}",
                    "token": TOKEN,
                    "lease_seconds": 3,
                    "shutdown_seconds": 3,
                    **server,
                },
                "plugins": {
                    "enabled": ["servicenow", "jira", "jenkins"],
                    "servicenow": {
                        "url": urls["servicenow"],
                        "user": "sandbox",
                        "password": "sandbox",
                        "assignment_group": "Change Management",
                        **(servicenow or {}),
                    },
                    "jira": {
                        "url": urls["jira"],
                        "user": "sandbox",
                        "token": "sandbox",
                        "project": "PAY",
                        "webhook_secret": "jira-hook-secret",
                    },
                    "jenkins": {
                        "url": urls["jenkins"],
                        "user": "sandbox",
                        "token": "sandbox",
                        "webhook_token": JENKINS_HOOK,
                    },
                },
                "services": {"payments": {"ci": "payments-api", "jobs": JOBS}},
                # Jenkins' webhooks wake a release when a job ends: polling is the safety net
                "policy": {"verify_minutes": 0, "poll_seconds": poll_seconds},
            }
        )
    )
    return path


class Bridge:
    """One `itsm-bridge run` subprocess; its log goes to a file next to its config."""

    def __init__(self, config: Path, port: int, name: str = "bridge") -> None:
        self.config = config
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = config.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def start(self, *args: str) -> Bridge:
        command = [sys.executable, "-m", "itsm_bridge.cli", "-c", str(self.config), "run", *args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log, env=dict(os.environ))
        wait_until(self.healthy, timeout=20, what=f"{self.base}/healthz\n{self.log()[-3000:]}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def create(self, version: str, **fields: Any) -> str:
        body = {"service": "payments", "version": version, "type": "standard", **fields}
        response = self.session.post(f"{self.base}/api/v1/releases", json=body, timeout=30)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def show(self, rid: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base}/api/v1/releases/{rid}", timeout=30)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def wait_done(self, rid: str, timeout: float = 60) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.show(rid))
            return found["state"] in DONE

        wait_until(done, timeout, every=0.2, what=lambda: f"{rid}: {found}\n{self.log()[-3000:]}")
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Send `sig`; (exit code, seconds until the process ended)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    every: float = 0.05,
    what: str | Callable[[], str] = "",
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"not true within {timeout} s: {detail}")
        time.sleep(every)


def jenkins_builds(sandbox: Sandbox, rid: str) -> dict[str, int]:
    """Builds Jenkins ran for the release, by job."""
    counts = {}
    for job in JOBS.values():
        ours = [b for b in sandbox.jenkins.builds(job) if _parameter(b, "RELEASE_ID") == rid]
        if ours:
            counts[job] = len(ours)
    return counts


def _parameter(build: dict[str, Any], name: str) -> str | None:
    for action in build.get("actions") or []:
        if isinstance(action, dict):
            for p in action.get("parameters") or []:
                if p.get("name") == name:
                    return str(p.get("value"))
    return None


def servicenow_creates(sandbox: Sandbox, rid: str) -> dict[str, int]:
    """Records the bridge created in ServiceNow for the release: changes and change tasks
    (by their correlation ids), counted in the sandbox's tables."""
    rows = sandbox.servicenow.store
    changes = [r for r in rows.rows_of("change_request") if r.get("correlation_id") == rid]
    tasks = [
        r
        for r in rows.rows_of("change_task")
        if str(r.get("correlation_id") or "").startswith(f"{rid}:")
    ]
    keys = [str(r["correlation_id"]) for r in tasks]
    return {"change_request": len(changes), "change_task": len(tasks), "tasks": len(set(keys))}


def assert_no_duplicates(sandbox: Sandbox, rid: str, scope: list[str] | None = None) -> None:
    """One change, one change task per task, one build per job, one comment of each text
    per issue of the release's scope."""
    created = servicenow_creates(sandbox, rid)
    assert created["change_request"] == 1, created
    assert created["change_task"] == created["tasks"] > 0, created
    assert jenkins_builds(sandbox, rid) == {
        "payments/build": 1,
        "payments/deploy": 1,
        "payments/smoke": 1,
    }
    for key in scope or []:
        comments = sandbox.jira.comments(key)
        assert len(comments) == len(set(comments)), (key, comments)
