"""The scripting side of the Jenkins sandbox: what tests and the demo call directly."""

from __future__ import annotations

import threading
import time
from typing import Any

from itsm_bridge_sandbox.jenkins import render
from itsm_bridge_sandbox.jenkins.model import (
    RESULTS,
    Endpoint,
    JenkinsModel,
    Job,
    Outcome,
    ParamDef,
    TestSpec,
)
from itsm_bridge_sandbox.jenkins.notifications import Delivery, NotificationSender

_KEEP: Any = object()


class ScriptingMixin:
    """Helpers of `JenkinsSandbox`; each takes the lock and advances time first."""

    model: JenkinsModel
    lock: threading.RLock
    sender: NotificationSender

    def root_url(self) -> str:  # pragma: no cover - provided by the server
        raise NotImplementedError

    # -- jobs and outcomes ---------------------------------------------------------------
    def add_job(
        self,
        name: str,
        parameters: list[Any] | tuple[Any, ...] = (),
        *,
        kind: str = "pipeline",
        result: str = "SUCCESS",
        duration: float = 0.5,
        tests: dict[str, int] | None = None,
        queue_delay: float = 0.2,
        description: str | None = None,
        artifacts: list[str] | tuple[str, ...] = (),
    ) -> None:
        """Create a job (folders from the path) with its default outcome."""
        outcome = Outcome(
            result, duration, TestSpec.from_value(tests), queue_delay, artifacts=tuple(artifacts)
        )
        with self.lock:
            self.model.add_job(
                name,
                kind=kind,
                parameters=[ParamDef.from_value(p) for p in parameters],
                outcome=outcome,
                description=description,
            )

    def _outcome(
        self, job: Job, result: str, duration: Any, tests: Any, queue_delay: Any
    ) -> Outcome:
        base = job.outcome
        return Outcome(
            result,
            base.duration if duration is _KEEP else float(duration),
            base.tests if tests is _KEEP else TestSpec.from_value(tests),
            base.queue_delay if queue_delay is _KEEP else float(queue_delay),
            base.log,
            base.artifacts,
        )

    def script(
        self,
        job: str,
        result: str = "SUCCESS",
        duration: float = _KEEP,
        tests: dict[str, int] | None = _KEEP,
        queue_delay: float = _KEEP,
    ) -> None:
        """Set what every future build of `job` does. Arguments left out keep their value."""
        with self.lock:
            target = self.model.job(job)
            target.outcome = self._outcome(target, result, duration, tests, queue_delay)

    def script_next(
        self,
        job: str,
        result: str = "SUCCESS",
        duration: float = _KEEP,
        tests: dict[str, int] | None = _KEEP,
        queue_delay: float = _KEEP,
    ) -> None:
        """Script only the next build requested (FIFO: each call scripts one more build)."""
        with self.lock:
            target = self.model.job(job)
            target.next_outcomes.append(self._outcome(target, result, duration, tests, queue_delay))

    def fail_next_build(self, job: str, failed_tests: int = 1) -> None:
        """The next build ends FAILURE; if the job records tests, `failed_tests` of them fail."""
        with self.lock:
            target = self.model.job(job)
            spec = target.outcome.tests
            tests: Any = _KEEP
            if spec is not None:
                moved = min(failed_tests, spec.passed)
                tests = {
                    "passed": spec.passed - moved,
                    "failed": spec.failed + failed_tests,
                    "skipped": spec.skipped,
                }
            target.next_outcomes.append(self._outcome(target, "FAILURE", _KEEP, tests, _KEEP))

    # -- builds ----------------------------------------------------------------------------
    def advance(self) -> None:
        """Apply the passage of time now (the server also does it on every request)."""
        with self.lock:
            self.model.advance()

    def build(self, job: str, number: int) -> dict[str, Any]:
        """A build as `GET /job/.../<number>/api/json` shows it (KeyError when unknown)."""
        with self.lock:
            self.model.advance()
            target = self.model.job(job)
            if number not in target.builds:
                raise KeyError(f"{job} has no build #{number}")
            return render.build_json(target.builds[number], self.root_url())

    def builds(self, job: str) -> list[dict[str, Any]]:
        """Every build of `job`, newest first, in full."""
        with self.lock:
            self.model.advance()
            target = self.model.job(job)
            return [
                render.build_json(target.builds[n], self.root_url())
                for n in sorted(target.builds, reverse=True)
            ]

    def queue_item(self, item_id: int) -> dict[str, Any]:
        """A queue item as `GET /queue/item/<id>/api/json` shows it."""
        with self.lock:
            self.model.advance()
            return render.queue_item_json(
                self.model.queue[item_id], self.root_url(), self.model.clock()
            )

    def finish(self, job: str, number: int, result: str = "SUCCESS") -> None:
        """Force a running build to complete now with `result`."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}")
        with self.lock:
            self.model.advance()
            build = self.model.job(job).builds[number]
            if result == "ABORTED":
                self.model.abort(build, "sandbox")
            else:
                self.model.complete(build, result, self.model.clock())
            self.model.flush()

    def wait_for_build(
        self, job: str, number: int | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Block until build `number` (default: the last one) exists and is complete."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                self.model.advance()
                target = self.model.job(job)
                wanted = (
                    number
                    if number is not None
                    else (max(target.builds) if target.builds else None)
                )
                build = target.builds.get(wanted) if wanted is not None else None
                if build is not None and not build.building:
                    return render.build_json(build, self.root_url())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job} #{wanted} did not complete in {timeout}s")
            time.sleep(0.01)

    # -- notifications ---------------------------------------------------------------------
    def set_notification_url(
        self,
        url: str | None,
        job: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        event: str = "all",
        log: int = 0,
        notes: str = "",
    ) -> None:
        """Send Notification plugin payloads to `url` (None: stop), for one job or all."""
        endpoints = [] if url is None else [Endpoint(url, event, log, notes, dict(headers or {}))]
        with self.lock:
            if job is None:
                self.model.endpoints = endpoints
            else:
                self.model.job(job).endpoints = endpoints

    @property
    def deliveries(self) -> list[Delivery]:
        """Every notification POST attempted so far, in order."""
        return list(self.sender.deliveries)

    def wait_for_notifications(self, timeout: float = 5.0) -> bool:
        """Block until every phase so far was delivered (or failed)."""
        self.advance()
        return self.sender.wait_idle(timeout)
