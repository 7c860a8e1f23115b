"""`itsm-bridge demo`: the whole process against the local sandbox, on an embedded SQLite.

It starts the sandbox servers, loads `config/sandbox.yaml` with their URLs, and drives two
releases of the payments service: the first goes all the way to closed, the second is rolled
back after deployment. Where the process waits for a person, the demo plays that person in
the system that owns the decision (in ServiceNow the technical approvers, then the CAB,
approve the change the bridge submitted; the DBA closes the change tasks) and says so;
everything else is the bridge at work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

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
MAX_CYCLES = 200
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
        self.fail_smoke_test: set[str] = set()

    def drive(self, release_id: str, until: set[ReleaseState]) -> ReleaseState:
        """Advance the release, acting as its people, until it reaches one of `until`."""
        for _ in range(MAX_CYCLES):
            self.process.advance(release_id)
            self.print_new_events(release_id)
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

        waiting = [
            t for t in tasks if in_step(t) and t.kind == "manual" and t.status == TaskStatus.PENDING
        ]
        if not waiting:
            return
        task = waiting[0]
        who = task.group or "the release manager"
        fail = task.key == "smoke-test" and release_id in self.fail_smoke_test
        if fail:
            who, note = "the tester", "HTTP 500 on POST /refunds"
        else:
            note = f"{task.name}: done"
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

    def print_new_events(self, release_id: str) -> None:
        with self.store.begin() as tx:
            events = tx.events(release_id)
        for event in events[self.printed.get(release_id, 0) :]:
            self.say(f"  {event.at:%H:%M:%S} {event.actor:<12} {event.message}")
        self.printed[release_id] = len(events)

    def show(self, release_id: str) -> None:
        with self.store.begin() as tx:
            self.say(render_show(release_json(tx, release_id)))


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
            demo.fail_smoke_test.add(second.id)
            demo.drive(second.id, {ReleaseState.CLOSED})
            demo.show(second.id)
    finally:
        sandbox.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"\ndemo finished{'; state kept in ' + str(workdir) if keep else ''}")
    return 0
