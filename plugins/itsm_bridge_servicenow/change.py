"""Step 6: the release's change_request, found by its release id before it is ever created.

Fields (change_request field list, ServiceNowDocs `api-reference/rest-apis/change-management-
api.md`): `correlation_id` ("Globally unique ID (GUID) of a matching change request record in a
third-party system", max 100) and `correlation_display` (max 100) tie the change to the release;
`description`, `implementation_plan`, `backout_plan`, `test_plan` and `justification` hold at
most 4,000 characters; `start_date`/`end_date` are the planned dates, sent as UTC
`YYYY-MM-DD HH:MM:SS`; `risk`, `impact` and `category` come from the plugin settings.

Standard changes with `standard_template` set use the real mechanism, the Change Management
API: `POST /api/sn_chg_rest/change/standard/{standard_change_template_id}` where the id is a
`std_change_record_producer` sys_id (a name is looked up there). The template supplies
description and the implementation, back-out and test plans ("Fields that cannot be modified
and are ignored ... Description, Backout plan, Test plan, Implementation plan"), so only the
correlation, dates, CI and group are sent; the result's fields come as
`{"value", "display_value"}` objects, as one object or a one-element list. Setting
`std_change_producer_version` through the Table API would not apply the template.

The plans say only what is true: `implementation_plan`, `backout_plan` and `test_plan` name
a job only when a plugin will run it (`release.jobs`, set by the core before step 6);
otherwise the task is manual and the plan names it and its group. The tasks are ordered by the
default task plugin's own planning (`TemplateTasks.plan_tasks`), not by a copy of it.

`sync`, `approval` and `findings` live in `change_state` and `change_review`.
"""

from __future__ import annotations

from typing import Any

from itsm_bridge.default_plugins.tasks import DEPLOY_ORDER, SMOKE_ORDER, TemplateTasks
from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import (
    BuildInfo,
    ChangeRef,
    Finding,
    Impact,
    Release,
    ReleaseNotes,
    ReleaseType,
    TaskSpec,
)
from itsm_bridge.settings import BridgeSettings, ServiceSettings
from itsm_bridge_servicenow import cmdb
from itsm_bridge_servicenow.change_review import approval, findings
from itsm_bridge_servicenow.change_state import (
    LABELS,
    NEW,
    SYSTEM,
    TABLE,
    change_record,
    read_change,
    sync,
)
from itsm_bridge_servicenow.client import Record, ServiceNowClient, sn_datetime
from itsm_bridge_servicenow.encoded import SYS_ID, by_name_or_sys_id, escape

__all__ = ["approval", "evaluate", "find_or_create", "findings", "sync"]

CORRELATION_DISPLAY = "itsm-bridge"
TEXT_LIMIT = 4000
FOUND_FIELDS = ["sys_id", "number", "state"]


def find_or_create(
    client: ServiceNowClient,
    config: Any,
    bridge: BridgeSettings,
    release: Release,
    notes: ReleaseNotes | None,
) -> ChangeRef:
    """The release's change: found by `correlation_id`, else created; affected CIs linked."""
    row = find(client, release.id)
    if row is None:
        payload = change_payload(client, config, bridge, release, notes)
        if release.type == ReleaseType.STANDARD and config.standard_template:
            row = _create_standard(client, config.standard_template, payload)
        else:
            row = client.create(TABLE, payload, FOUND_FIELDS)
    sys_id = str(row["sys_id"])
    cmdb.link_impact(client, sys_id, release.impact)  # on both paths: repairs a crash between
    state = str(row.get("state") or NEW)
    return ChangeRef(
        system=SYSTEM,
        kind=TABLE,
        id=sys_id,
        number=str(row.get("number") or "") or None,
        url=f"{client.base_url}/nav_to.do?uri=change_request.do?sys_id={sys_id}",
        state=LABELS.get(state, state),
    )


def find(client: ServiceNowClient, release_id: str) -> Record | None:
    """The oldest change carrying the release id, if any."""
    query = f"correlation_id={escape(release_id)}^ORDERBYsys_created_on"
    rows = client.query(TABLE, query, FOUND_FIELDS, limit=1)
    return rows[0] if rows else None


def lookup(client: ServiceNowClient, table: str, name: str, what: str) -> str:
    """The sys_id of the record of `table` that `name` names, by sys_id (32 hex digits) or
    by name; NeedsHuman when there is none, or several records have that name."""
    rows = client.query(table, by_name_or_sys_id(name), ["sys_id"], limit=2)
    if any(row.get("sys_id") == name for row in rows):
        return name
    if not rows:
        raise NeedsHuman(
            f"{what} names {name!r}, which does not exist in ServiceNow "
            f"({table}): create it there or fix the name in the configuration"
        )
    if len(rows) > 1:
        raise NeedsHuman(
            f"{what} names {name!r}, and several {table} records have that name: "
            "set it to the sys_id of the right one"
        )
    return str(rows[0]["sys_id"])


def change_payload(
    client: ServiceNowClient,
    config: Any,
    bridge: BridgeSettings,
    release: Release,
    notes: ReleaseNotes | None,
) -> Record:
    """The fields of a new change_request for the release."""
    service = bridge.services.get(release.service) or ServiceSettings()
    payload: Record = {
        "correlation_id": release.id,
        "correlation_display": CORRELATION_DISPLAY,
        "short_description": release.title[:160],
        "description": description(release, notes),
        "type": release.type.value,
        "implementation_plan": implementation_plan(bridge, release, config.assignment_group),
        "test_plan": test_plan(release, config.assignment_group),
        "risk": str(config.risk),
        "impact": str(config.impact),
        "category": config.category,
    }
    backout = backout_plan(bridge, service, release, config.assignment_group)
    if backout:
        payload["backout_plan"] = backout
    if release.type == ReleaseType.EMERGENCY:
        payload["justification"] = clip(f"Emergency change: {release.reason or 'no reason'}")
    if release.window_start is not None and release.window_end is not None:
        payload["start_date"] = sn_datetime(release.window_start)
        payload["end_date"] = sn_datetime(release.window_end)
    if service.ci:
        key = f"services.{release.service}.ci"
        payload["cmdb_ci"] = lookup(client, "cmdb_ci", service.ci, key)
    if config.assignment_group:
        what = "plugins.servicenow.assignment_group"
        payload["assignment_group"] = lookup(
            client, "sys_user_group", config.assignment_group, what
        )
    return payload


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text` cut at a line end to fit `limit` characters, saying that it was cut."""
    if len(text) <= limit:
        return text
    note = "\n[truncated: see the full release notes in itsm-bridge]"
    head = text[: limit - len(note)]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + note


def description(release: Release, notes: ReleaseNotes | None) -> str:
    """The release notes summary, or a short text when the notes are not rendered yet."""
    if notes is not None and notes.markdown.strip():
        return clip(notes.markdown.strip())
    text = f"Release {release.version} of {release.service}"
    text += f": {release.name}." if release.name else "."
    if release.reason:
        text += f"\nReason: {release.reason}"
    return text + f"\nCreated by itsm-bridge for release {release.id}."


def planned_tasks(bridge: BridgeSettings, release: Release) -> list[TaskSpec]:
    """The release's tasks as configured: the implicit deploy and smoke test, and the
    service's task templates placed around them by the default task plugin (step 9)."""
    implicit = [
        TaskSpec(key="deploy", name="Deploy", order=DEPLOY_ORDER, purpose="deploy"),
        TaskSpec(key="smoke-test", name="Smoke test", order=SMOKE_ORDER, purpose="smoke_test"),
    ]
    templates = TemplateTasks(None, bridge).plan_tasks(release=release, impact=Impact())
    return sorted(implicit + templates, key=lambda spec: (spec.order, spec.key))


def job_of(release: Release, spec: TaskSpec) -> str | None:
    """The job a plugin will run for the task; None when the task is manual.

    `release.jobs` holds a job only for the purposes a plugin runs; a template task's own job
    runs only when there is a job runner at all (`release.jobs` not empty).
    """
    if spec.purpose in ("deploy", "smoke_test", "rollback"):
        return release.jobs.get(spec.purpose)
    return spec.job if spec.job and release.jobs else None


def task_line(release: Release, spec: TaskSpec, group: str | None) -> str:
    """One task of the plan: its job, or that it is manual and which group does it."""
    job = job_of(release, spec)
    if job:
        return f"{spec.name} (job {job})"
    owner = spec.group or group
    return f"{spec.name} (manual, {owner})" if owner else f"{spec.name} (manual)"


def implementation_plan(bridge: BridgeSettings, release: Release, group: str | None) -> str:
    """The release tasks, numbered in the order they run."""
    tasks = planned_tasks(bridge, release)
    lines = [f"{n}. {task_line(release, spec, group)}" for n, spec in enumerate(tasks, 1)]
    return clip("\n".join(lines))


def backout_plan(
    bridge: BridgeSettings, service: ServiceSettings, release: Release, group: str | None
) -> str:
    """How the release is rolled back: the rollback job when a plugin runs it, else by hand;
    empty when no rollback is configured and the policy requires one (a finding blocks)."""
    job = release.jobs.get("rollback")
    when = "when the release fails (a failure signal) or on `itsm-bridge release rollback`"
    if job:
        first = (
            f"1. itsm-bridge runs the rollback job {job} with ROLLBACK_TO = the last good "
            f'version {when}; it is tracked as the change task "Roll back".'
        )
    elif service.jobs.rollback or not bridge.policy.require_backout_plan:
        who = f" for {group}" if group else ""
        first = (
            f"1. Roll back by hand to the last good version: {when}, itsm-bridge opens the "
            f'change task "Roll back"{who}; close it when the rollback is done.'
        )
    else:
        return ""
    return clip(first + "\n2. The change closes as unsuccessful, with the reason.")


def test_plan(release: Release, group: str | None) -> str:
    """The smoke test after deployment, the build's tests, and the failure watch."""
    smoke = release.jobs.get("smoke_test")
    if smoke:
        lines = [f"Smoke test job {smoke} runs after the deployment."]
    else:
        who = f" for {group}" if group else ""
        lines = [f'A manual smoke test follows the deployment (change task "Smoke test"{who}).']
    built = release.build
    if built is not None:
        lines.append(f"Build {built.label} ({built.state.value}): {_test_counts(built)}.")
    elif release.jobs.get("build"):
        job = release.jobs["build"]
        lines.append(f"The test results of the build (job {job}) are checked before approval.")
    lines.append("Failure signals are watched for the verification period.")
    return clip(" ".join(lines))


def _test_counts(build: BuildInfo) -> str:
    if build.tests is None:
        return "no test report"
    t = build.tests
    return f"tests {t.passed} passed, {t.failed} failed, {t.skipped} skipped"


def evaluate(
    client: ServiceNowClient, config: Any, bridge: BridgeSettings, release: Release
) -> list[Finding]:
    """Step 7: the test plan brought up to date with the build's results (one PATCH, only
    when it differs), then the findings (`change_review.findings`)."""
    record = change_record(release)
    if record is not None and release.build is not None:
        row = read_change(client, record.id, ["test_plan"])
        wanted = test_plan(release, config.assignment_group)
        if str(row.get("test_plan") or "") != wanted:
            client.update(TABLE, record.id, {"test_plan": wanted}, ("sys_id",))
    return findings(client, config, bridge, release)


def _create_standard(client: ServiceNowClient, template: str, payload: Record) -> Record:
    """A standard change from its template (Change Management API); one attempt only."""
    template_id = template
    if not SYS_ID.match(template):
        what = "plugins.servicenow.standard_template"
        template_id = lookup(client, "std_change_record_producer", template, what)
    body = {
        key: value
        for key, value in payload.items()
        if key not in ("description", "implementation_plan", "backout_plan", "test_plan", "type")
    }
    path = f"/api/sn_chg_rest/change/standard/{template_id}"
    try:
        result = client.api("POST", path, "POST standard change", retry=False, json=body)
    except HTTPRequestError as exc:
        if exc.status not in (400, 404):
            raise
        raise NeedsHuman(
            f"{exc}: the instance has no Change Management API or no standard change template "
            f"{template!r}; fix plugins.servicenow.standard_template or unset it to create "
            "standard changes through the Table API"
        ) from None
    if isinstance(result, list):
        result = result[0] if result else {}
    row = {name: _plain(result.get(name)) for name in FOUND_FIELDS}
    if not row["sys_id"]:
        raise NeedsHuman(f"POST {path} answered without a sys_id: {str(result)[:200]}")
    return row


def _plain(value: Any) -> str:
    """A Change Management API field (`{"value", "display_value"}`) as its value."""
    if isinstance(value, dict):
        return str(value.get("value") or "")
    return str(value or "")
