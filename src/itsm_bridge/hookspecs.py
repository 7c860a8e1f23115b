"""The hook specifications of the release process: the contract between core and plugins.

One banner per phase of the process (intake, build, plan, change, deploy, verify, recover,
close), then the hooks that keep records in step and the daemon hooks. Every hook documents
its arguments, what it returns, when the core calls it, and what a failure means.

Failure, for every hook: a plugin that raises `itsm_bridge.errors.TransientError` (or a
network error) makes the core retry the step later with backoff; any other exception marks
the step failed with the message and waits for a human (`release show` says which plugin).
Hooks are called by `itsm_bridge.process` only, one release at a time, and each must be
idempotent: the core may call it again after a crash, so look before you create.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from itsm_bridge.models import (
        Approval,
        BacklogItem,
        ChangeRef,
        ConnectionCheck,
        Delivery,
        Event,
        ExternalRecord,
        Finding,
        Freeze,
        Impact,
        JobRef,
        JobStatus,
        Notice,
        PostMortemReport,
        Release,
        ReleaseNotes,
        Signal,
        Task,
        TaskSpec,
        Window,
        WorkItem,
    )

PROJECT = "itsm_bridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ------------------------------------------------------------------------------------------
# Intake (steps 1-3)
# ------------------------------------------------------------------------------------------


@hookspec
def collect_work_items(since: datetime | None) -> list[WorkItem]:
    """Return demands and problems that are ready to become backlog work.

    :param since: the poller's persisted cursor (UTC), or None on the first run; plugins
        should return records updated at or after it (the core keeps an overlap window and
        drops duplicates by ``WorkItem.source_key``).
    :returns: the work items this plugin's system holds (step 1: approved demands; step 2:
        problems whose fix needs a code change). Broadcast: every plugin's lists are joined.

    Called by the intake poller. A failure skips this plugin for this cycle only.
    """


@hookspec(firstresult=True)
def add_to_backlog(item: WorkItem) -> BacklogItem | None:
    """Create (or find) the backlog issue of a work item.

    :param item: a demand or problem returned by ``collect_work_items``.
    :returns: the backlog item, found again by ``item.source_key`` if it already exists.
        Stops at first non-None result: the backlog system owns the answer.

    Called for every new work item (step 3). Must look the source key up before creating.
    """


@hookspec
def work_item_added(item: WorkItem, backlog_item: BacklogItem) -> None:
    """Tell the source system that its record now has a backlog issue.

    :param item: the demand or problem.
    :param backlog_item: the issue ``add_to_backlog`` returned.
    :returns: nothing. Broadcast.

    Called once after ``add_to_backlog`` succeeded (e.g. a work note with the issue key).
    """


@hookspec(firstresult=True)
def release_scope(release: Release) -> list[BacklogItem] | None:
    """Return the backlog items the release delivers.

    :param release: the release.
    :returns: the items (e.g. the issues whose fixVersion is the release's version), or
        None when this plugin does not own the backlog. Stops at first non-None result.

    Called at step 3 and again before release notes are rendered.
    """


# ------------------------------------------------------------------------------------------
# Build (step 4) and every job after it (steps 11, 12, 14)
# ------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def start_job(
    release: Release,
    purpose: str,
    params: dict[str, str],
    first_attempt: bool,
    superseded: list[JobRef],
) -> JobRef | None:
    """Start (or find already started) the job for one purpose of a release.

    :param release: the release.
    :param purpose: ``build``, ``deploy``, ``smoke_test``, ``rollback`` or a task's job name.
    :param params: the parameters the core adds (``RELEASE_ID``, ``SERVICE``, ``VERSION``,
        ``CHANGE``, ``ROLLBACK_TO``, ``TASK``). The plugin must pass them on and use
        ``RELEASE_ID`` (and ``TASK``) to find a job it already started.
    :param first_attempt: True when the core's committed state proves no start was ever
        sent for this job: the task was created by the run of the process now calling, which
        has not asked any plugin to start it before. The plugin may then trigger without
        looking for an earlier job. False whenever an earlier attempt may have reached the CI
        server (a retry, a restart, the build of step 4): look first.
    :param superseded: jobs an earlier run of this step started for the same purpose and a
        person chose to run again (`release retry` after a failed build): never return one
        of them as the job already started; start a new one. Usually empty.
    :returns: a reference to the queued or running job, or None when this plugin has no job
        for that purpose. Stops at first non-None result. When every plugin returns None the
        core turns the work into a manual task.

    Called when the step for that purpose is due.
    """


@hookspec(firstresult=True)
def job_status(job: JobRef) -> JobStatus | None:
    """Return the state of a job this plugin started.

    :param job: the reference ``start_job`` returned (the core stores it).
    :returns: the status (queued, running, or finished with its result and test counts), or
        None when the job belongs to another plugin. Stops at first non-None result.

    Called on every sync cycle while a job runs, and when a job webhook arrives.
    """


# ------------------------------------------------------------------------------------------
# Plan (steps 5, 8, 9, 10)
# ------------------------------------------------------------------------------------------


@hookspec
def maintenance_windows(release: Release, start: datetime, end: datetime) -> list[Window]:
    """Return the maintenance windows that apply to a release between two instants.

    :param release: the release (its service and affected CIs decide which calendars apply).
    :param start: beginning of the horizon (UTC).
    :param end: end of the horizon (UTC).
    :returns: windows overlapping [start, end). Broadcast: the core merges all of them.

    Called at step 5 when the release date is chosen, and again before deployment starts.
    """


@hookspec
def freeze_periods(release: Release, start: datetime, end: datetime) -> list[Freeze]:
    """Return the change freezes (blackouts) that apply to a release between two instants.

    :param release: the release.
    :param start: beginning of the horizon (UTC).
    :param end: end of the horizon (UTC).
    :returns: freezes overlapping [start, end). Broadcast: the core avoids all of them
        (an emergency release may break one, with its reason recorded).

    Called at step 5 together with ``maintenance_windows``.
    """


@hookspec
def identify_impact(release: Release) -> Impact | None:
    """Return the configuration items and services a release affects.

    :param release: the release.
    :returns: the affected CIs and impacted services known to this plugin's CMDB, or None.
        Broadcast: the core merges every answer and records it.

    Called at step 8.
    """


@hookspec
def plan_tasks(release: Release, impact: Impact) -> list[TaskSpec]:
    """Return the tasks a release needs besides deploy and smoke test.

    :param release: the release.
    :param impact: the merged result of ``identify_impact``.
    :returns: task specifications (e.g. "Stop database" for the DBA group, ordered before
        the deploy). Broadcast: the core joins them, dropping duplicate keys.

    Called at step 9.
    """


@hookspec(firstresult=True)
def create_tasks(release: Release, tasks: list[TaskSpec]) -> list[ExternalRecord] | None:
    """Create (or find) the records of the release's tasks in the system that assigns them.

    :param release: the release (its change record is among ``release.records``).
    :param tasks: every task of the release, in order, including deploy and smoke test.
    :returns: one record per task, each with ``key`` set to the task key, or None when this
        plugin does not own task assignment. Stops at first non-None result.

    Called at step 9, after the change exists. Must look up each task's key before creating.
    """


@hookspec(firstresult=True)
def render_release_notes(release: Release, items: list[BacklogItem]) -> ReleaseNotes | None:
    """Render the release notes from the backlog items.

    :param release: the release.
    :param items: the items of ``release_scope``.
    :returns: the notes (Markdown and HTML). Stops at first non-None result; the default
        plugin renders a Markdown template.

    Called at step 10.
    """


@hookspec
def publish_release_notes(release: Release, notes: ReleaseNotes) -> list[ExternalRecord]:
    """Publish the release notes where readers look for them.

    :param release: the release.
    :param notes: what ``render_release_notes`` returned.
    :returns: the records written (pages, comments), possibly empty. Broadcast.

    Called at step 10, once per release (idempotent on re-run).
    """


# ------------------------------------------------------------------------------------------
# Change (steps 6, 7)
# ------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def create_change(release: Release, notes: ReleaseNotes | None) -> ChangeRef | None:
    """Create (or find) the change record of a release in the ITSM system of record.

    :param release: the release (window, type, reason and service CI included).
    :param notes: the release notes, when already rendered, for the description.
    :returns: the change reference, found by the release id (``correlation_id``) when it
        exists already, or None when this plugin is not the system of record.
        Stops at first non-None result.

    Called at step 6. Must look up the release id before creating, so a retry after a lost
    response never makes a second change.
    """


@hookspec
def evaluate_change(release: Release) -> list[Finding]:
    """Evaluate a release's change for compliance (tests, back-out plan, conflicts).

    :param release: the release.
    :returns: findings; any with severity ``blocker`` moves the release to ``blocked``.
        Broadcast: every plugin's findings are joined.

    Called at step 7, after the change exists and the window is chosen.
    """


@hookspec(firstresult=True)
def approval_status(release: Release) -> Approval | None:
    """Return the approval decision for the release's change.

    :param release: the release (``release.approval`` holds a manual decision, if any).
    :returns: pending, approved or rejected (with who and why), or None when this plugin does
        not own approval. Stops at first non-None result; the default plugin reads the manual
        approval given with ``itsm-bridge release approve``.

    Called at step 7 on every cycle until approved or rejected.
    """


# ------------------------------------------------------------------------------------------
# Deploy (step 11)
# ------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def task_status(release: Release, task: Task) -> Task | None:
    """Return the current state of a manual task from its record.

    :param release: the release.
    :param task: the task, with the record ``create_tasks`` returned.
    :returns: the task with its status updated (done when its record is closed), or None
        when the task's record belongs to another plugin. Stops at first non-None result.

    Called on every cycle while a manual task waits.
    """


@hookspec
def task_finished(release: Release, task: Task) -> None:
    """Reflect a finished task (done or failed) in its record.

    :param release: the release.
    :param task: the task, status done or failed.
    :returns: nothing. Broadcast (e.g. close the change task with a note).

    Called once per task when it finishes.
    """


# ------------------------------------------------------------------------------------------
# Verify (steps 12, 13, 18)
# ------------------------------------------------------------------------------------------


@hookspec
def detect_failure(release: Release, since: datetime) -> list[Signal]:
    """Return evidence that a deployed release is failing.

    :param release: the release (``deploy_started_at`` is when deployment began).
    :param since: report signals that started at or after this instant (UTC).
    :returns: signals (firing alerts, incidents caused by the change); empty when healthy.
        Broadcast. A signal marks the release failed; the core dedupes by ``Signal.key``.

    Called on every cycle while the release is verifying or in early life support.
    """


# ------------------------------------------------------------------------------------------
# Recover (step 14)
# ------------------------------------------------------------------------------------------


@hookspec
def return_to_backlog(release: Release, items: list[BacklogItem], reason: str) -> None:
    """Return a failed release's items to the backlog.

    :param release: the release.
    :param items: the items of ``release_scope``.
    :param reason: why the release was rolled back.
    :returns: nothing. Broadcast (e.g. comment, transition, remove fixVersion, leave sprint).

    Called at step 14 once the rollback job has finished.
    """


# ------------------------------------------------------------------------------------------
# Close (steps 15-17)
# ------------------------------------------------------------------------------------------


@hookspec
def notify_stakeholders(release: Release, notice: Notice) -> list[Delivery]:
    """Tell the service's stakeholders what happened to a release.

    :param release: the release.
    :param notice: what to tell: its kind (succeeded, rolled_back, els_started,
        els_incident, els_ended, post_mortem), subject, plain-text and HTML bodies, the
        recipients (the service's stakeholders), the notes, the evidence and attachments.
    :returns: one ``Delivery`` per channel the plugin sent on (ok or not, with the attempts
        made). Broadcast: every channel is told. A plugin retries a passing fault itself and
        reports a delivery that still failed as ``ok=False`` instead of raising: a failed
        notification never fails a release; the core records every delivery.

    Called at step 15 (succeeded or rolled back), when early life support starts, reports an
    incident and ends (step 18), and for the post-mortem meeting (step 16).
    """


@hookspec
def post_mortem(release: Release, report: PostMortemReport) -> list[ExternalRecord]:
    """Write the post-mortem of a release.

    :param release: the release (rolled back, or succeeded when
        ``policy.post_mortem.after_success`` is set).
    :param report: its timeline (the whole audit trail, oldest first), its steps with their
        times, the failure's evidence, the version it was rolled back to, and the follow-ups.
    :returns: the records written (documents). Broadcast.

    Called at step 16. The core then creates the follow-ups through ``add_to_backlog`` and
    sends the meeting invitation through ``notify_stakeholders``.
    """


@hookspec
def update_service_levels(release: Release) -> list[str]:
    """Update service-level records with what the release changed.

    :param release: the release.
    :returns: what was written, one short line per record and fields (e.g.
        ``"cmdb_ci_service payments-api: version"``); empty when nothing had to change, so the
        core says "nothing to update" instead of claiming an update. Broadcast.

    Called at step 17.
    """


# ------------------------------------------------------------------------------------------
# Keeping records in step, and the daemon
# ------------------------------------------------------------------------------------------


@hookspec
def release_changed(release: Release, event: Event) -> None:
    """Mirror a release's progress in the plugin's records.

    :param release: the release, after the change.
    :param event: what happened (kind, message, evidence).
    :returns: nothing. Broadcast (e.g. move the change's state, add a work note).

    Called after every step outcome and state transition has been committed, at least once
    and in order per release (an outbox). ``event.kind`` is one of:

    - ``created``: the release was created;
    - ``state``: a release state transition; evidence ``from``, ``to``;
    - ``step``: a step's outcome changed (evidence ``step``, ``status``); most are progress
      chatter (running, waiting): a plugin that writes for people should note only
      ``status`` failed;
    - ``tasks``: the release tasks exist (step 9; evidence ``tasks``: ``[{key, name, kind,
      group, record}]``), and again when the rollback task is added (step 14);
    - ``task``: a task finished; evidence ``task`` (key), ``name``, ``status`` (done or
      failed), ``note``;
    - ``approval``: approval is requested (evidence ``status`` pending: a plugin that owns
      approval asks for it now, e.g. moves the change to Assess; the core reads
      ``approval_status`` only after this event was delivered, also after ``release retry``)
      or decided (``approved`` or ``rejected``, with ``by`` and ``comment``);
    - ``build``: the build package the change deploys (step 7, when a CI plugin built it);
      evidence ``job``, ``number``, ``url``, ``tests`` (passed, failed, skipped, or None
      without a report), ``artifacts``;
    - ``findings``: the evaluation of step 7; evidence ``findings``: ``[{severity, source,
      message}]``;
    - ``scope``: the release's backlog items changed after its change was created (step 3
      read again); evidence ``added``, ``removed`` (item keys);
    - ``failure``: the release failed; evidence: the signals, the task, or who asked;
    - ``exception``: an emergency change broke a freeze or left the windows;
    - ``cancelled``, ``retry``: a person cancelled the release or retried it;
    - ``support``: a person ended early life support early (``release end-support``);
    - ``signal``: a failure signal during early life support that did not roll the release
      back (evidence ``key`` and the signal's evidence), e.g. to open an incident;
    - ``notified``: stakeholders were told (evidence ``notice``, ``deliveries``);
    - ``post_mortem``: the post-mortem was written (evidence ``documents``: URLs,
      ``follow_ups``: backlog keys);
    - ``service_levels``: service-level records were updated (evidence ``written``,
      ``prescribed``);
    - ``sync_failed``: the core gave up telling plugins about an earlier event.
    """


@hookspec
def check_connection() -> list[ConnectionCheck]:
    """Reach the plugin's system once with the configured credentials.

    :returns: one ``ConnectionCheck`` per system the plugin talks to: ``ok`` true when an
        authenticated read succeeded; otherwise ``status`` (e.g. 401) or the network error in
        ``detail``, never a secret. Broadcast.

    Called by ``itsm-bridge check-config --connect``; never during a release.
    """


@hookspec
def register_webhooks(register: Callable[..., None]) -> None:
    """Contribute inbound webhook handlers to the daemon.

    :param register: ``register(name, handler)``: the daemon serves ``POST /webhooks/<name>``
        and calls ``handler(headers, body, query) -> list[dict]`` (the request's headers,
        raw body and URL query parameters) to authenticate and parse a delivery into inbox
        events (raise ``WebhookRejected`` with 401/400/422 otherwise; an empty list accepts
        a delivery that needs nothing stored).
    :returns: nothing.

    Called once when the daemon starts. An inbox event is a dict: ``source`` (the plugin),
    ``kind``, ``dedupe_key`` (the same delivery twice is stored once), ``payload`` (JSON) and,
    when the plugin can tell, ``release_id``. The core stores it before the sender gets its
    answer, then acts on it by kind: ``work_item`` (payload: a ``WorkItem``) enters intake;
    ``scope`` (the backlog changed; payload ``key`` and ``versions``, the issue's
    fixVersions) makes every release not yet deploying whose version is among ``versions``,
    or whose scope holds ``key``, read its scope and notes again; ``signal`` (payload a
    ``Signal``, e.g. an alert: ``service``, ``at``, ``evidence["status"]`` firing or resolved)
    is recorded with every watched release it concerns (``itsm_bridge.signals``), which
    weighs it at once; any other kind wakes
    ``release_id`` (or, without it, every release in progress) so its waiting steps ask
    their plugins at once (a job finished, a task closed, an alert fired).
    """


@hookspec
def register_pollers(register: Callable[..., None]) -> None:
    """Contribute pollers to the daemon's scheduler.

    :param register: ``register(name, interval_seconds, poll)`` where
        ``poll(cursor: str | None) -> tuple[list[dict], str | None]`` returns inbox events
        (the dicts of ``register_webhooks``) and the next cursor. The core stores the events
        and the cursor in one transaction: a poll that raises keeps the old cursor.
    :returns: nothing.

    Called once when the daemon (or ``sync --once``, which runs every poller once) starts.
    """


def hook_names() -> list[str]:
    """Every hook defined here, in file order."""
    return [name for name, value in globals().items() if hasattr(value, f"{PROJECT}_spec")]
