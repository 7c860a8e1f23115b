"""`itsm-bridge demo`: the whole process against the local sandbox, on an embedded SQLite.

It starts the sandbox servers, loads `config/sandbox.yaml` with their URLs, and drives two
releases of the payments service through ServiceNow, Jira and Jenkins: the first (1.4.0)
goes all the way to closed, the second (1.5.0) fails its smoke test in Jenkins (the sandbox
seed's rule for that version) and is rolled back, its issues back in the Jira backlog. Where
the process waits for a person, the demo plays that person in the system that owns the
decision (in ServiceNow the technical approvers, then the CAB, approve the change the bridge
submitted; the DBA closes its change tasks) and says so; everything else is the bridge at work:
Jenkins builds, deploys, smoke-tests and rolls back. After each release it shows where the
release's Jira issues ended and the one build per job Jenkins ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.errors import ConfigError, OperationFailed
from itsm_bridge.models import ReleaseState, Task, TaskStatus, utcnow
from itsm_bridge.plugins import load_plugins
from itsm_bridge.process import Process
from itsm_bridge.settings import load_settings
from itsm_bridge.store import open_store
from itsm_bridge.views import release_json, render_show
from itsm_bridge_sandbox import Sandbox, load_seed
from itsm_bridge_sandbox.servicenow.change import waiting_for as servicenow_approvers
from itsm_bridge_sandbox.servicenow.schema import CHANGE_STATES as STATE_LABELS

PACKAGED_CONFIG = Path(__file__).with_name("demo-config.yaml")
SOURCE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "sandbox.yaml"
MAX_CYCLES = 400
PAUSE = 0.1  # seconds between cycles while nothing happens
Say = Callable[[str], None]


def demo_config_path() -> Path:
    for candidate in (SOURCE_CONFIG, PACKAGED_CONFIG):
        if candidate.is_file():
            return candidate
    raise ConfigError("the demo configuration (config/sandbox.yaml) is missing")


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class DemoClock:
    """Real time, except that the demo may fast-forward it to a maintenance window."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def jump_to(self, when: datetime) -> None:
        self.offset += max(timedelta(0), when - self())


class Demo:
    def __init__(self, sandbox: Sandbox, workdir: Path, say: Say) -> None:
        self.sandbox = sandbox
        self.say = say
        settings = load_settings(demo_config_path())
        self.host = load_plugins(settings)
        self.store = open_store(settings.database)
        self.clock = DemoClock()
        self.process = Process(self.store, self.host, settings, clock=self.clock)
        self.commands = ReleaseCommands(self.process)
        self.printed: dict[str, int] = {}
        self.done: set[str] = set()  # "<release id>:<task key>" a person has finished

    def drive(self, release_id: str, until: set[ReleaseState]) -> ReleaseState:
        """Advance the release, acting as its people, until it reaches one of `until`."""
        for _ in range(MAX_CYCLES):
            self.process.advance(release_id)
            if not self.print_new_events(release_id):
                time.sleep(PAUSE)  # a job runs in the sandbox's Jenkins: give it time
            with self.store.begin() as tx:
                release = tx.release(release_id)
                steps = {s.number: s for s in tx.steps(release_id)}
                tasks = tx.tasks(release_id)
            assert release is not None
            if release.state in until:
                return release.state
            if release.state == ReleaseState.BLOCKED:
                raise OperationFailed(f"release {release_id} is blocked: {steps[7].detail}")
            if steps[7].status == "waiting":
                self.approve(release_id)
            if (
                release.state == ReleaseState.SCHEDULED
                and release.window_start
                and (release.window_start > self.clock())
            ):
                self.say(
                    f"  [clock] fast-forward to the maintenance window at "
                    f"{release.window_start:%Y-%m-%d %H:%M}Z"
                )
                self.clock.jump_to(release.window_start)
            working = (ReleaseState.IMPLEMENTING, ReleaseState.VERIFYING, ReleaseState.ROLLING_BACK)
            for number in (11, 12, 14):  # people work on tasks once the deployment began
                if steps[number].status == "waiting" and release.state in working:
                    self.finish_manual_task(release_id, number, tasks)
        raise OperationFailed(f"release {release_id} did not reach {until} in {MAX_CYCLES} cycles")

    def approve(self, release_id: str) -> None:
        """Play the approvers: in ServiceNow, one approval level per cycle, once the bridge
        asked for it (the change model moves the change, never the bridge)."""
        with self.store.begin() as tx:
            release = tx.release(release_id)
        assert release is not None
        change = release.record("servicenow", "change_request")
        if change is None:
            self.commands.approve(release_id, note="approved (demo)", actor="cab")
            self.say("  [person] the CAB approves the release: itsm-bridge release approve")
            return
        servicenow = self.sandbox.servicenow
        before = servicenow.record("change_request", change.id)
        who = servicenow_approvers(before)
        if not who:
            return  # the bridge has not asked yet: nothing to approve
        after = servicenow.approve_change(change.id, f"Approved by {who} (demo)", levels=1)
        self.say(
            f"  [person] {who} approve {change.number} in ServiceNow: "
            f"{STATE_LABELS.get(before['state'], before['state'])} -> "
            f"{STATE_LABELS.get(after['state'], after['state'])}"
        )

    def finish_manual_task(self, release_id: str, step: int, tasks: list[Task]) -> None:
        """Play the person who does the next manual task of the waiting step."""

        def in_step(task: Task) -> bool:
            if step == 14:
                return task.key == "rollback"
            return task.key != "rollback" and (task.order < 200) == (step == 11)

        unfinished = [
            t for t in tasks if in_step(t) and t.status not in (TaskStatus.DONE, TaskStatus.FAILED)
        ]
        if not unfinished or unfinished[0].kind != "manual":
            return  # the step waits for a job, not for a person
        task = unfinished[0]
        if f"{release_id}:{task.key}" in self.done:
            return  # finished already; the bridge sees it on its next cycle
        self.done.add(f"{release_id}:{task.key}")
        who = task.group or "the release manager"
        fail, note = False, f"{task.name}: done"
        if task.record is not None and task.record.system == "servicenow":
            code = "unsuccessful" if fail else "successful"
            self.sandbox.servicenow.close_task(task.record.id, close_code=code, notes=note)
            self.say(
                f"  [person] {who} closes {task.record.number} ({task.name}) in ServiceNow: {note}"
            )
        else:
            self.commands.task_done(release_id, task.key, failed=fail, note=note, actor="operator")
            self.say(
                f"  [person] {who}: itsm-bridge release task-done {task.key}"
                f"{' --failed' if fail else ''}: {note}"
            )

    def print_new_events(self, release_id: str) -> int:
        """Print the release's events not printed yet; returns how many there were."""
        with self.store.begin() as tx:
            events = tx.events(release_id)
        new = events[self.printed.get(release_id, 0) :]
        for event in new:
            self.say(f"  {event.at:%H:%M:%S} {event.actor:<12} {event.message}")
        self.printed[release_id] = len(events)
        return len(new)

    def show(self, release_id: str) -> None:
        with self.store.begin() as tx:
            self.say(render_show(release_json(tx, release_id)))
        self.show_jira(release_id)
        self.show_jenkins(release_id)

    def show_jira(self, release_id: str) -> None:
        """Where each of the release's Jira issues ended: status, fixVersions, sprint."""
        with self.store.begin() as tx:
            release = tx.release(release_id)
        assert release is not None
        jira = self.sandbox.jira
        version = jira.version("PAY", release.version) or {}
        released = "released" if version.get("released") else "not released"
        self.say(f"jira version {release.version}: {released}")
        for item in release.scope:
            fields = jira.issue(item.key)["fields"]
            versions = ", ".join(v["name"] for v in fields["fixVersions"])
            sprint = jira.sprint_of(item.key) or "backlog"
            comments = len(jira.comments(item.key))
            self.say(
                f"  {item.key:<7} {item.kind:<6} {fields['status']['name']:<12} "
                f"fixVersions: {versions or '-':<12} {sprint:<10} {comments} comment(s)"
            )

    def show_jenkins(self, release_id: str) -> None:
        """The builds Jenkins ran for the release: one per job, never two."""
        for job in ("payments/build", "payments/deploy", "payments/smoke", "payments/rollback"):
            ours = [
                b
                for b in self.sandbox.jenkins.builds(job)
                if _parameters(b).get("RELEASE_ID") == release_id
            ]
            if ours:
                results = ", ".join(f"#{b['number']} {b.get('result')}" for b in reversed(ours))
                target = _parameters(ours[0]).get("ROLLBACK_TO")
                self.say(
                    f"jenkins {job}: {results}" + (f" (ROLLBACK_TO={target})" if target else "")
                )


def _parameters(build: dict[str, Any]) -> dict[str, str]:
    """A Jenkins build's parameters (its `ParametersAction`) by name."""
    return {
        str(p.get("name")): str(p.get("value"))
        for action in build.get("actions") or []
        if isinstance(action, dict)
        for p in action.get("parameters") or []
    }


def run_demo(keep: bool = False, say: Say = print) -> int:
    """Run the demo; `keep` leaves the database and documents in var/demo."""
    workdir = Path("var/demo") if keep else Path(tempfile.mkdtemp(prefix="itsm-bridge-demo-"))
    if keep and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(load_seed())
    urls = sandbox.start()
    say("sandbox: " + ", ".join(f"{system} {url}" for system, url in urls.items()))
    env = {
        "ITSM_DEMO_DATABASE": f"sqlite:///{workdir.resolve()}/bridge.db",
        "ITSM_DEMO_DATA_DIR": str(workdir.resolve()),
        **{f"ITSM_DEMO_{system.upper()}_URL": url for system, url in urls.items()},
    }
    try:
        with _environment(env):
            demo = Demo(sandbox, workdir, say)
            first = demo.commands.create("payments", "1.4.0", name="Faster refunds", actor="demo")
            say(f"\n== release {first.id}: {first.title} (goes all the way)")
            demo.drive(first.id, {ReleaseState.CLOSED})
            demo.show(first.id)

            second = demo.commands.create("payments", "1.5.0", name="New fee model", actor="demo")
            say(f"\n== release {second.id}: {second.title} (its smoke test fails)")
            demo.drive(second.id, {ReleaseState.CLOSED})
            demo.show(second.id)
    finally:
        sandbox.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"\ndemo finished{'; state kept in ' + str(workdir) if keep else ''}")
    return 0
