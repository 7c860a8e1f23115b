"""Acceptance of the Alertmanager plugin (issue 12) with a real Alertmanager (the Debian package
`prometheus-alertmanager`, which .ci/run installs): the test starts it on a free loopback
port with a temporary `--storage.path`, clustering off (`--cluster.listen-address=`), every
alert its own group (`group_by: ['...']`), `group_wait` 100 ms, and a webhook receiver with
the bearer token pointing at `itsm-bridge run` (a subprocess, against the sandbox).

- alerts posted to Alertmanager for another service, at warning level, or started before
  the deployment reach the bridge and change nothing; a resolved notification neither
  (delivered as Alertmanager sends it: Alertmanager itself never notifies a resolution of an
  alert it did not notify firing);
- a critical alert for the deployed service puts the release into rollback, with exactly one
  Jenkins rollback build (counted in the sandbox);
- webhooks without or with a wrong token (401), malformed JSON (400) or without required
  fields (422) store nothing; the same notification twice is stored and processed once;
- the poller's query is accepted by the real API and finds what fires; the connection check
  reads the real status; a deployment silence silences the configured noise of the service
  and never a critical alert, and is expired when the release leaves implementing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from integration.daemon_support import (
    Bridge,
    free_port,
    jenkins_builds,
    wait_until,
    write_config,
)
from itsm_bridge.models import Event, Release
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.store import schema as t
from itsm_bridge_alertmanager import AlertmanagerPlugin, silences
from itsm_bridge_alertmanager.client import AlertmanagerClient
from itsm_bridge_alertmanager.poller import Poller
from itsm_bridge_alertmanager.settings import Settings
from itsm_bridge_sandbox import Sandbox
from support import require_service

pytestmark = pytest.mark.integration
HOOK_TOKEN = "am-hook-token-2468"
SAMPLES = Path(__file__).parents[1] / "plugins" / "alertmanager" / "samples"
BINARIES = ("prometheus-alertmanager", "alertmanager")
ROUTE_EXAMPLE = Path(__file__).parents[2] / "config" / "alertmanager-route.example.yaml"


class Alertmanager:
    """One Alertmanager process; its log goes next to its configuration."""

    def __init__(self, directory: Path, webhook_url: str) -> None:
        binary = next((found for b in BINARIES if (found := shutil.which(b))), None)
        require_service(binary is not None, "the prometheus-alertmanager binary")
        assert binary is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "alertmanager.yml"
        config.write_text(yaml.safe_dump(route_config(webhook_url)))
        self.log_path = directory / "alertmanager.log"
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.path={directory / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log)
        wait_until(self.ready, timeout=20, what=lambda: self.log_path.read_text()[-2000:])

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"alertmanager exited:\n{self.log_path.read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def post(self, *alerts: dict[str, Any]) -> None:
        response = requests.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=5)
        assert response.status_code == 200, response.text

    def notifications(self) -> tuple[int, int]:
        """(webhook notifications sent, failed) from Alertmanager's own metrics."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text

        def total(name: str) -> int:
            pattern = rf'^{name}{{[^}}]*integration="webhook"[^}}]*}} (\S+)$'
            return sum(int(float(v)) for v in re.findall(pattern, text, re.M))

        return total("alertmanager_notifications_total"), total(
            "alertmanager_notifications_failed_total"
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def route_config(webhook_url: str) -> dict[str, Any]:
    """config/alertmanager-route.example.yaml's route and receiver under a root route to a
    receiver that sends nothing, with the test's URL, token and timings."""
    example = yaml.safe_load(ROUTE_EXAMPLE.read_text())
    (route,) = example["route"]["routes"]
    route.update(group_wait="100ms", group_interval="1s")
    (receiver,) = example["receivers"]
    (hook,) = receiver["webhook_configs"]
    hook["url"] = webhook_url
    hook["http_config"]["authorization"].pop("credentials_file")
    hook["http_config"]["authorization"]["credentials"] = HOOK_TOKEN
    return {
        "route": {"receiver": "nobody", "routes": [route]},
        "receivers": [{"name": "nobody"}, receiver],
    }


def alert(name: str, at: datetime, **labels: str) -> dict[str, Any]:
    merged = {"alertname": name, "service": "payments", "severity": "critical", "env": "prod"}
    return {
        "labels": {**merged, **labels},
        "annotations": {"summary": f"{name} on {merged | labels}"[:80]},
        "startsAt": at.isoformat().replace("+00:00", "Z"),
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
    }


def inbox_keys(database: str) -> dict[str, bool]:
    """The dedupe keys of the inbox's Alertmanager events, each with whether the worker
    processed it (the bridge's other plugins, e.g. Jira's intake poller, store their own)."""
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.inbox.c.dedupe_key, t.inbox.c.processed_at).where(
                t.inbox.c.source == "alertmanager"
            )
        ).all()
    engine.dispose()
    return {key: processed is not None for key, processed in rows}


@pytest.fixture
def alertmanager(tmp_path: Path, port: int) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path, f"http://127.0.0.1:{port}/webhooks/alertmanager")
    yield manager
    manager.stop()


@pytest.fixture
def bridge(
    tmp_path: Path, port: int, sandbox: Sandbox, alertmanager: Alertmanager
) -> Iterator[Bridge]:
    database = f"sqlite:///{tmp_path}/bridge.db"
    config = write_config(tmp_path / "bridge.yaml", database, port, sandbox)
    document = yaml.safe_load(config.read_text())
    document["plugins"]["enabled"].append("alertmanager")
    document["plugins"]["alertmanager"] = {
        "url": alertmanager.url,
        "webhook_token": HOOK_TOKEN,
        "poll_seconds": 0,  # the webhook is the path under test; the poller is tested below
    }
    document["policy"]["verify_minutes"] = 30  # the release waits in verification
    config.write_text(yaml.safe_dump(document))
    daemon = Bridge(config, port).start()
    daemon.database = database  # type: ignore[attr-defined]
    yield daemon
    daemon.kill()


def post_hook(bridge: Bridge, body: Any, token: str | None = HOOK_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{bridge.base}/webhooks/alertmanager", data=data, headers=headers, timeout=10
    )


def test_an_alert_for_the_deployed_service_rolls_it_back_and_the_others_do_not(
    bridge: Bridge, sandbox: Sandbox, alertmanager: Alertmanager
) -> None:
    database: str = bridge.database  # type: ignore[attr-defined]
    before = datetime.now(UTC) - timedelta(seconds=30)
    rid = bridge.create("2.0.0")
    shown: dict[str, Any] = {}

    def verifying() -> bool:
        shown.update(bridge.show(rid))
        return shown["state"] == "verifying"

    wait_until(verifying, 60, every=0.2, what=lambda: f"{shown}\n{bridge.log()[-3000:]}")
    now = datetime.now(UTC)
    alertmanager.post(
        alert("LedgerDown", now, service="ledger"),  # another service
        alert("PaymentsSlow", now, severity="warning"),  # below min_severity
        alert("PaymentsFlaky", before),  # started before the deployment
    )
    wait_until(lambda: alertmanager.notifications()[0] >= 3, 20, every=0.1)
    assert alertmanager.notifications()[1] == 0
    keys = inbox_keys(database)
    assert sorted(k.split(":")[1] for k in keys if k.startswith("alertmanager:")) == sorted(
        [_fingerprint(alertmanager, "LedgerDown"), _fingerprint(alertmanager, "PaymentsFlaky")]
    )  # the warning was accepted and not stored
    resolved = json.loads((SAMPLES / "webhook-resolved.json").read_text())["body"]
    resolved["alerts"] = [dict(resolved["alerts"][0], startsAt=_stamp(now))]
    assert post_hook(bridge, resolved).status_code == 202
    wait_until(lambda: all(inbox_keys(database).values()), 10)
    assert bridge.show(rid)["state"] == "verifying"
    assert "payments/rollback" not in jenkins_builds(sandbox, rid)

    alertmanager.post(alert("PaymentsErrors", datetime.now(UTC)))
    failed: dict[str, Any] = {}

    def rolling_back() -> bool:
        failed.update(bridge.show(rid))
        return failed["state"] in ("rolling_back", "rolled_back", "closed")

    wait_until(rolling_back, 30, every=0.1, what=lambda: f"{failed}\n{bridge.log()[-3000:]}")
    assert failed["failure_reason"].startswith("alertmanager: PaymentsErrors: ")
    wait_until(lambda: "payments/rollback" in jenkins_builds(sandbox, rid), 10)
    final = bridge.wait_done(rid)
    assert final["state"] in ("rolled_back", "closed")
    assert jenkins_builds(sandbox, rid)["payments/rollback"] == 1


def test_bad_webhooks_store_nothing_and_a_repeat_is_processed_once(bridge: Bridge) -> None:
    database: str = bridge.database  # type: ignore[attr-defined]
    body = json.loads((SAMPLES / "webhook-firing.json").read_text())["body"]
    assert post_hook(bridge, body, token=None).status_code == 401
    assert post_hook(bridge, body, token="wrong-token").status_code == 401
    assert post_hook(bridge, b'{"alerts": [').status_code == 400
    missing = dict(body, alerts=[{k: v for k, v in body["alerts"][0].items() if k != "labels"}])
    answer = post_hook(bridge, missing)
    assert answer.status_code == 422
    assert "alerts.0.labels" in answer.json()["reason"]
    assert inbox_keys(database) == {}
    answers = [post_hook(bridge, body) for _ in range(2)]
    assert [(a.status_code, a.json()["reason"]) for a in answers] == [
        (202, "1 event(s) stored, 0 already known"),
        (202, "0 event(s) stored, 1 already known"),
    ]
    wait_until(lambda: all(inbox_keys(database).values()), 10)
    assert list(inbox_keys(database)) == [
        "alertmanager:1d31034106d44412:2026-11-28T05:27:57.100Z:firing"
    ]


def test_connection_and_deployment_silences_against_the_real_api(tmp_path: Path) -> None:
    manager = Alertmanager(tmp_path, "http://127.0.0.1:9/unused")
    try:
        config = Settings(
            url=manager.url,
            service_map={"pay.api": "payments"},
            silence={"matchers": [{"name": "alertname", "value": "Target.*", "is_regex": True}]},
        )
        client = AlertmanagerClient(config.url)
        (check,) = AlertmanagerPlugin(config, settings_from_mapping({})).check_connection()
        assert check.ok, check.detail
        assert check.detail.startswith("Alertmanager 0.")
        release = Release(id="rel-20261128-0000abcd", service="payments", version="1.4.0")
        now = datetime.now(UTC)
        manager.post(
            alert("TargetDown", now, service="pay.api", severity="warning"),  # noise
            alert("TargetDown", now, service="pay.api"),  # critical: counts, never silenced
            alert("TargetDown", now, service="ledger", severity="warning"),  # another service
        )
        silences.on_change(client, config, release, state_event("scheduled", "implementing"))
        silences.on_change(client, config, release, state_event("scheduled", "implementing"))
        assert len(silences.live_silences(client, release)) == 1  # a repeat creates none

        def silenced() -> list[tuple[str, str]]:
            found = client.get("/alerts", "alerts", params={"silenced": "true"})
            return sorted(
                (a["labels"]["service"], a["labels"]["severity"])
                for a in found
                if a["status"]["silencedBy"]
            )

        wait_until(lambda: silenced() == [("pay.api", "warning")], 10, what=silenced)
        silences.on_change(client, config, release, state_event("implementing", "verifying"))
        assert silences.live_silences(client, release) == []
        wait_until(lambda: silenced() == [], 10, what=silenced)
    finally:
        manager.stop()


def state_event(old: str, new: str) -> Event:
    evidence = {"from": old, "to": new}
    return Event(actor="itsm-bridge", kind="state", message=f"{old} -> {new}", evidence=evidence)


def test_the_pollers_query_against_the_real_api(tmp_path: Path) -> None:
    manager = Alertmanager(tmp_path, "http://127.0.0.1:9/unused")
    try:
        now = datetime.now(UTC).replace(microsecond=123456)
        manager.post(
            alert("Counted", now, service="pay.ments", env='prod "eu"'),
            alert("Warning", now, service="pay.ments", severity="warning", env='prod "eu"'),
            alert("OtherEnv", now, service="pay.ments"),
            alert("NoService", now, service=""),
        )
        config = Settings(url=manager.url, env='prod "eu"', service_map={"pay.ments": "payments"})
        events, _ = Poller(AlertmanagerClient(config.url), config)(None)
        assert [e["payload"]["evidence"]["alertname"] for e in events] == ["Counted"]
        (event,) = events
        assert event["payload"]["service"] == "payments"
        assert event["dedupe_key"].endswith(f":{now:%Y-%m-%dT%H:%M:%S}.123Z:firing")
    finally:
        manager.stop()


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _fingerprint(alertmanager: Alertmanager, name: str) -> str:
    found = requests.get(
        f"{alertmanager.url}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=5
    ).json()
    return str(found[0]["fingerprint"])


def test_the_route_example_is_valid(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    require_service(amtool is not None, "amtool (prometheus-alertmanager)")
    assert amtool is not None
    config = yaml.safe_load(ROUTE_EXAMPLE.read_text())
    config["route"]["receiver"] = "default"
    config["receivers"].insert(0, {"name": "default"})
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
