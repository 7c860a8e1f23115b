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

`sync`, `approval` and `findings` live in `change_state` and `change_review`.
"""

from __future__ import annotations

import re
from typing import Any

from itsm_bridge.default_plugins.tasks import DEPLOY_ORDER, SMOKE_ORDER
from itsm_bridge.errors import NeedsHuman
from itsm_bridge.http import HTTPRequestError
from itsm_bridge.models import ChangeRef, Release, ReleaseNotes, ReleaseType
from itsm_bridge.settings import BridgeSettings, ServiceSettings
from itsm_bridge_servicenow import cmdb
from itsm_bridge_servicenow.change_review import approval, findings
from itsm_bridge_servicenow.change_state import (
    LABELS,
    NEW,
    SYSTEM,
    TABLE,
    escape,
    sync,
)
from itsm_bridge_servicenow.client import Record, ServiceNowClient, sn_datetime

__all__ = ["approval", "find_or_create", "findings", "sync"]

CORRELATION_DISPLAY = "itsm-bridge"
TEXT_LIMIT = 4000
FOUND_FIELDS = ["sys_id", "number", "state"]
SYS_ID = re.compile(r"^[0-9a-f]{32}$")


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
    """The sys_id of the record of `table` named `name`; NeedsHuman when there is none."""
    rows = client.query(table, f"name={escape(name)}", ["sys_id"], limit=1)
    if not rows:
        raise NeedsHuman(
            f"{what} names {name!r}, which does not exist in ServiceNow "
            f"({table}): create it there or fix the name in the configuration"
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
        "implementation_plan": implementation_plan(service),
        "test_plan": test_plan(service),
        "risk": str(config.risk),
        "impact": str(config.impact),
        "category": config.category,
    }
    backout = backout_plan(service)
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


def ordered_tasks(service: ServiceSettings) -> list[str]:
    """The service's task templates around the implicit Deploy and Smoke test, in order."""
    steps: list[tuple[int, str]] = [
        (DEPLOY_ORDER, _job_line("Deploy", service.jobs.deploy)),
        (SMOKE_ORDER, _job_line("Smoke test", service.jobs.smoke_test)),
    ]
    for index, template in enumerate(service.tasks, start=1):  # as default_plugins/tasks.py
        anchor = template.before or template.after or "deploy"
        base = DEPLOY_ORDER if anchor == "deploy" else SMOKE_ORDER
        order = base - 50 + index if template.before else base + index
        how = f"job {template.job}" if template.job else template.kind
        group = f", {template.group}" if template.group else ""
        steps.append((order, f"{template.name} ({how}{group})"))
    return [text for _, text in sorted(steps, key=lambda step: step[0])]


def _job_line(name: str, job: str | None) -> str:
    return f"{name} (job {job})" if job else f"{name} (manual)"


def implementation_plan(service: ServiceSettings) -> str:
    """The release tasks, numbered in the order they run."""
    lines = [f"{n}. {text}" for n, text in enumerate(ordered_tasks(service), start=1)]
    return clip("\n".join(lines))


def backout_plan(service: ServiceSettings) -> str:
    """The rollback job and steps; empty without a rollback job (a finding then blocks)."""
    job = service.jobs.rollback
    if not job:
        return ""
    return clip(
        f"1. Run the rollback job {job} with ROLLBACK_TO = the last good version "
        "(itsm-bridge starts it on a failure signal or `itsm-bridge release rollback`).\n"
        "2. Verify the service with the smoke test"
        + (f" (job {service.jobs.smoke_test})" if service.jobs.smoke_test else "")
        + ".\n3. The backlog items return to the backlog; the change closes as unsuccessful."
    )


def test_plan(service: ServiceSettings) -> str:
    """The smoke test after deployment; results arrive as work notes."""
    smoke = service.jobs.smoke_test
    first = (
        f"Smoke test job {smoke} runs after the deployment"
        if smoke
        else ("A manual smoke test follows the deployment")
    )
    return (
        f"{first}; the build's test results and the smoke test result are added as work "
        "notes. Failure signals are watched for the verification period."
    )


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
