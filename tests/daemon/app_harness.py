"""The daemon's HTTP app on a real store and the default plugins, plus a test webhook plugin;
driven through FastAPI's TestClient (imported by the tests as `daemon.app_harness`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.cycle import run_cycle
from itsm_bridge.daemon.app import create_app
from itsm_bridge.daemon.context import DaemonContext
from itsm_bridge.daemon.metrics import Metrics
from itsm_bridge.errors import WebhookRejected
from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import open_store
from itsm_bridge.store import schema as t

TOKEN = "api-token-0123456789"
HOOK_TOKEN = "hook-token-9876543210"
MANUAL = [
    {"name": "Stop database", "kind": "manual", "before": "deploy"},
    {"name": "Start database", "kind": "manual", "after": "deploy"},
]
SERVICE = {
    "jobs": {"build": "b", "deploy": "d", "smoke_test": "s", "rollback": "r"},
    "tasks": MANUAL,
}
TASKS = ("stop-database", "deploy", "start-database", "smoke-test")


def asyncio_loop_running() -> bool:
    """Whether the calling thread runs an event loop (blocking work there stalls every
    request)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class CiWebhooks:
    """A plugin with one webhook, `ci`: Bearer HOOK_TOKEN, a JSON object with `build`."""

    @hookimpl
    def register_webhooks(self, register: Any) -> None:
        register("ci", self.handle)

    def handle(
        self, headers: dict[str, str], body: bytes, query: dict[str, str]
    ) -> list[dict[str, Any]]:
        self.seen = (headers, body, query)
        self.on_event_loop = asyncio_loop_running()
        if headers.get("authorization") != f"Bearer {HOOK_TOKEN}":
            raise WebhookRejected(401, "missing or wrong token")
        try:
            document = json.loads(body)
        except ValueError:
            raise WebhookRejected(400, "the body is not JSON") from None
        if isinstance(document, dict) and document.get("crash"):
            raise RuntimeError("the handler broke")
        if not isinstance(document, dict) or not isinstance(document.get("build"), int):
            raise WebhookRejected(422, "no build number")
        return [
            {
                "source": "ci",
                "kind": "job",
                "dedupe_key": f"ci:{document['build']}",
                "payload": document,
            }
        ]


class AppHarness:
    def __init__(self, tmp_path: Path, *, token: str | None = TOKEN, **config: Any) -> None:
        server = {"token": token} if token is not None else {}
        server.update(config.pop("server", {}))
        self.settings = settings_from_mapping(
            {
                "database": config.pop("database", f"sqlite:///{tmp_path}/bridge.db"),
                "data_dir": str(tmp_path / "data"),
                "server": server,
                "services": {"payments": SERVICE},
                "policy": {"verify_minutes": 0, **config.pop("policy", {})},
                **config,
            }
        )
        self.store = open_store(self.settings.database)
        self.host = load_plugins(self.settings)
        self.hooks = CiWebhooks()
        self.host.register(self.hooks, "ci-hooks", version="0", module="tests")
        self.process = Process(self.store, self.host, self.settings)
        self.commands = ReleaseCommands(self.process)
        self.metrics = Metrics(self.store)
        self.wakes = 0
        self.reasons: list[str] = []
        self.ctx = DaemonContext(
            settings=self.settings,
            store=self.store,
            host=self.host,
            process=self.process,
            commands=self.commands,
            metrics=self.metrics,
            wake=self._wake,
            not_ready=lambda: list(self.reasons),
        )
        self.app = create_app(self.ctx)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def _wake(self) -> None:
        self.wakes += 1

    # -- helpers -----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return self.client.request(method, f"/api/v1{path}", headers=headers, **kwargs)

    def create(self, version: str = "1.0.0", **fields: Any) -> str:
        response = self.api(
            "POST", "/releases", json={"service": "payments", "version": version, **fields}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def cycle(self) -> None:
        report = run_cycle(self.process)
        assert not report.failures, report.failures

    def show(self, release_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/releases/{release_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def implementing(self, version: str = "1.0.0", **fields: Any) -> str:
        """A release approved and deploying (its manual tasks pending)."""
        rid = self.create(version, **fields)
        self.cycle()
        assert self.api("POST", f"/releases/{rid}/approve").status_code == 202
        self.cycle()
        assert self.show(rid)["state"] == "implementing"
        return rid

    def deploy(self, rid: str) -> None:
        for task in TASKS:
            response = self.api("POST", f"/releases/{rid}/task-done", json={"task": task})
            assert response.status_code == 202, response.text
            self.cycle()

    def inbox_rows(self) -> int:
        with self.store.begin() as tx:
            return int(
                tx.conn.execute(sa.select(sa.func.count()).select_from(t.inbox)).scalar_one()
            )
