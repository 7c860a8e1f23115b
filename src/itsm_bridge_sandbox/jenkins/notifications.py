"""The Notification plugin (`com.tikal.hudson.plugins.notification`), as the sandbox sends it.

Payload: `Format.JSON` serialises `JobState` with Gson's LOWER_CASE_WITH_UNDERSCORES naming
and Gson's default of leaving out null fields, so `status` is absent until the build has a
result and `test_summary` is absent when the build recorded no tests::

    {"name": "build", "display_name": "build", "url": "job/payments/job/build/",
     "build": {"full_url": "<root>job/payments/job/build/7/", "number": 7, "queue_id": 12,
               "timestamp": 1700000000000, "duration": 0, "phase": "STARTED",
               "status": "SUCCESS", "url": "job/payments/job/build/7/",
               "scm": {"changes": [], "culprits": []},
               "parameters": {"RELEASE_ID": "42", ...}, "log": "", "notes": "",
               "test_summary": {"total": 44, "failed": 0, "passed": 42, "skipped": 2,
                                "failed_tests": []},
               "artifacts": {}}}

Sources: notification-plugin `Phase.buildJobState`, `model/JobState.java` (name, displayName,
url, build), `model/BuildState.java` (fullUrl, number, queueId, timestamp, duration, phase,
status, url, scm, parameters, log, notes, testSummary, artifacts), `model/TestState.java`,
`model/ScmState.java`. `name` is the job's short name and `url` is relative (`Job.getUrl()`).
Timing: `JobListener.onStarted` sends QUEUED (timestamp: when it entered the queue) and STARTED
together, `onCompleted` COMPLETED, `onFinalized` FINALIZED; a cancelled queue item sends
nothing. `Protocol.HTTP` POSTs with `Content-Type: application/json;charset=UTF-8` and, when
the URL carries user info (`http://user:secret@host/...`), `Authorization: Basic`; a 307 is
followed. The endpoint `event` filter (all, started, completed, finalized, failed) and `log`
lines are honoured. Extra `headers` per endpoint (e.g. a bearer token) are a sandbox extension.

Deliveries run on one background thread in the order the phases happened, so every build's
phases arrive in order. Failures are logged and recorded, never raised.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from itsm_bridge_sandbox.jenkins.model import Build, Endpoint, PhaseEvent
from itsm_bridge_sandbox.jenkins.render import item_path, ms
from itsm_bridge_sandbox.jenkins.testreport import console_text

log = logging.getLogger(__name__)


def wants(endpoint: Endpoint, phase: str, result: str | None) -> bool:
    """`Phase.isRun`: 'all' always; other filters need a result (so never QUEUED/STARTED)."""
    event = endpoint.event or "all"
    if event == "all":
        return True
    if result is None or event == "manual":
        return False
    if event == "failed":
        return phase == "FINALIZED" and result == "FAILURE"
    return event == phase.lower()


def payload(event: PhaseEvent, root: str, endpoint: Endpoint, user: str) -> dict[str, Any]:
    """The `JobState` JSON for one phase of one build, as of now."""
    build: Build = event.build
    job = build.job
    url = f"{item_path(job.full_name)}{build.number}/"
    state: dict[str, Any] = {
        "full_url": f"{root}{url}",
        "number": build.number,
        "queue_id": build.queue_id,
        "timestamp": ms(event.at),
        "duration": 0,
        "phase": event.phase,
    }
    if event.phase in ("COMPLETED", "FINALIZED") and build.finished is not None:
        # Run.getDuration() is 0 until the run completes; the result is null until then.
        state["duration"] = ms(build.finished - build.started)
        state["status"] = build.result
    state["url"] = url
    state["scm"] = {"changes": [], "culprits": []}
    if job.parameters:
        state["parameters"] = dict(build.params)
    lines = console_text(build, user).splitlines() if endpoint.log else []
    if endpoint.log > 0:
        lines = lines[-endpoint.log :]
    state["log"] = "".join(line + "\n" for line in lines)
    state["notes"] = endpoint.notes
    report = build.test_report
    if report is not None and event.phase in ("COMPLETED", "FINALIZED"):
        state["test_summary"] = {
            "total": report["passCount"] + report["failCount"] + report["skipCount"],
            "failed": report["failCount"],
            "passed": report["passCount"],
            "skipped": report["skipCount"],
            "failed_tests": [
                f"{c['className']}.{c['name']}"
                for s in report["suites"]
                for c in s["cases"]
                if c["status"] in ("FAILED", "REGRESSION")
            ],
        }
    state["artifacts"] = {}
    return {
        "name": job.name,
        "display_name": job.name,
        "url": item_path(job.full_name),
        "build": state,
    }


@dataclass
class Delivery:
    """One attempted POST (tests and the demo can inspect `JenkinsSandbox.deliveries`)."""

    url: str
    body: dict[str, Any]
    status: int | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)


class NotificationSender:
    """Posts payloads from a single daemon thread, in order."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[tuple[Endpoint, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jenkins-notify", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def submit(self, endpoint: Endpoint, body: dict[str, Any]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((endpoint, body))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every submitted payload was attempted."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            endpoint, body = entry
            try:
                self.deliveries.append(send(endpoint, body))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


def send(endpoint: Endpoint, body: dict[str, Any]) -> Delivery:
    """POST one payload, with the endpoint's retries; never raises."""
    parts = urlsplit(endpoint.url)
    headers = {"Content-Type": "application/json;charset=UTF-8"}
    url = endpoint.url
    if parts.username is not None:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    headers.update(endpoint.headers)
    data = json.dumps(body).encode("utf-8")
    delivery = Delivery(endpoint.url, body)
    for _attempt in range(endpoint.retries + 1):
        try:
            response = requests.post(
                url, data=data, headers=headers, timeout=endpoint.timeout, allow_redirects=False
            )
            if response.status_code == 307 and "Location" in response.headers:
                response = requests.post(
                    response.headers["Location"],
                    data=data,
                    headers=headers,
                    timeout=endpoint.timeout,
                )
            delivery.status, delivery.error = response.status_code, None
            return delivery  # the plugin treats any HTTP answer as delivered
        except requests.RequestException as exc:
            delivery.error = str(exc)
            log.warning("jenkins sandbox: notification to %s failed: %s", endpoint.url, exc)
    return delivery
