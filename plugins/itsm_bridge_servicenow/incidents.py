"""Step 13: incidents as failure signals, and (optionally) an incident for a failed release.

Shapes (incident table, base system):
- `caused_by` ("Caused by Change") references `change_request`; `cmdb_ci` is the affected CI
  and `business_service` the affected service; `opened_at` is a UTC date-time for the
  integration user (see client.py).
- `priority` is derived from `impact` x `urgency` by the priority lookup rules; the
  documented sample rules ("Define priority lookup rules", ServiceNowDocs
  `markdown/it-service-management/incident-management/def-prio-lookup-rules.md`) give
  1 - Critical, 2 - High, 3 - Moderate, 4 - Low (and 5 - Planning on the choice list);
  impact/urgency 1 high, 2 medium, 3 low (`servicenow.itsm` Ansible collection,
  `module_utils/incident.py`).
- Encoded queries: `^OR` binds only to the condition just before it and the one after it,
  `^NQ` starts a new query ("Encoded Queries", ServiceNow SDK guide,
  https://servicenow.github.io/sdk/guides/encoded-query-guide). So
  `opened_at>=T^caused_by=C^ORcmdb_ciINx,y^ORbusiness_serviceINs` reads
  `opened_at>=T AND (caused_by=C OR cmdb_ci IN (x,y) OR business_service IN (s))`: one query.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from itsm_bridge.models import Event, Release, Signal
from itsm_bridge_servicenow.change_tasks import Groups, change_sys_id
from itsm_bridge_servicenow.client import ServiceNowClient, parse_sn_datetime, sn_datetime
from itsm_bridge_servicenow.encoded import by_name_or_sys_id, escape

if TYPE_CHECKING:
    from itsm_bridge.settings import BridgeSettings
    from itsm_bridge_servicenow import Settings

SYSTEM = "servicenow"
TABLE = "incident"
SIGNAL_FIELDS = (
    "sys_id",
    "number",
    "short_description",
    "priority",
    "opened_at",
    "cmdb_ci",
    "business_service",
    "caused_by",
    "correlation_display",
)
#: Incident for a failed release: impact 2 (medium), urgency 1 (high) → priority 2 - High.
FAILURE_IMPACT, FAILURE_URGENCY = 2, 1
MAX_DESCRIPTION = 4000


def severity(priority: str) -> Literal["critical", "warning", "info"]:
    """Signal severity from incident priority: 1-2 critical, 3 warning, 4-5 (or none) info."""
    if priority in ("1", "2"):
        return "critical"
    if priority == "3":
        return "warning"
    return "info"


def _ci_ids(release: Release) -> tuple[list[str], list[str]]:
    """sys_ids of the release's affected CIs and impacted services known to ServiceNow."""
    impact = release.impact
    if impact is None:
        return [], []
    cis = [ci.id for ci in impact.cis if ci.system == SYSTEM and ci.id]
    services = [ci.id for ci in impact.services if ci.system == SYSTEM and ci.id]
    return cis, services


def signal_query(release: Release, since: datetime) -> str | None:
    """The encoded query of incidents that point at the release, or None when nothing can."""
    change_id = change_sys_id(release)
    cis, services = _ci_ids(release)
    everything = list(dict.fromkeys(cis + services))
    terms = []
    if change_id:
        terms.append(f"caused_by={escape(change_id)}")
    if everything:
        listed = ",".join(escape(i) for i in everything)
        terms.append(f"cmdb_ciIN{listed}")
    if services:
        terms.append(f"business_serviceIN{','.join(escape(i) for i in services)}")
    if not terms:
        return None
    return f"opened_at>={sn_datetime(since)}^" + "^OR".join(terms) + "^ORDERBYopened_at"


def signals(
    client: ServiceNowClient, config: Settings, release: Release, since: datetime
) -> list[Signal]:
    """Incidents caused by the release's change, or raised on one of its affected CIs or
    services, opened at or after `since` (one query, narrow fields)."""
    query = signal_query(release, since)
    if query is None:
        return []
    found = []
    for row in client.query(TABLE, query, SIGNAL_FIELDS):
        if str(row.get("correlation_display") or "") == "itsm-bridge":
            continue  # an incident the bridge opened itself tells nothing new
        opened = parse_sn_datetime(str(row.get("opened_at") or ""))
        if opened is None:  # opened_at is always set on a real instance
            continue
        number = str(row.get("number") or row["sys_id"])
        priority = str(row.get("priority") or "")
        found.append(
            Signal(
                source=SYSTEM,
                key=number,
                severity=severity(priority),
                summary=f"{number}: {row.get('short_description') or ''}".rstrip(": "),
                at=opened,
                service=release.service,
                evidence={
                    "number": number,
                    "sys_id": str(row["sys_id"]),
                    "priority": priority,
                    "cmdb_ci": str(row.get("cmdb_ci") or ""),
                    "caused_by": str(row.get("caused_by") or ""),
                },
            )
        )
    return found


def _service_ci(client: ServiceNowClient, bridge: BridgeSettings, release: Release) -> str | None:
    """The sys_id of the service's CI (`services.<name>.ci`, a name or a sys_id), when the
    CMDB has it."""
    service = bridge.services.get(release.service)
    if service is None or not service.ci:
        return None
    query = by_name_or_sys_id(service.ci)
    rows = client.query("cmdb_ci", query, ("sys_id", "name"), limit=1)
    return str(rows[0]["sys_id"]) if rows else None


def _description(release: Release, event: Event) -> str:
    evidence = json.dumps(event.evidence, sort_keys=True, default=str, indent=1)
    text = (
        f"Release {release.id} ({release.title}) failed at {sn_datetime(event.at)} UTC.\n"
        f"{event.message}\n\nEvidence:\n{evidence}"
    )
    return text[:MAX_DESCRIPTION]


def open_for_failure(
    client: ServiceNowClient,
    config: Settings,
    bridge: BridgeSettings,
    release: Release,
    event: Event,
) -> None:
    """Open one incident for a failed release (found again by `correlation_id`).

    `<release id>:failure` is looked up first, so a retry after a lost answer creates no
    second incident. The incident is caused by the change, raised on the service's CI and
    assigned to `incident_assignment_group` (else `assignment_group`).
    """
    title = f"Release failed: {release.title}"
    open_incident(client, config, bridge, release, event, f"{release.id}:failure", title)


def open_for_signal(
    client: ServiceNowClient,
    config: Settings,
    bridge: BridgeSettings,
    release: Release,
    event: Event,
) -> None:
    """Open one incident for a signal during early life support (`<release id>:signal:<key>`:
    an alert that fires while a major release is watched, when no rollback follows)."""
    key = str(event.evidence.get("key") or event.message)
    title = f"During early life support of {release.title}: {event.message}"
    open_incident(client, config, bridge, release, event, f"{release.id}:signal:{key}"[:100], title)


def open_incident(
    client: ServiceNowClient,
    config: Settings,
    bridge: BridgeSettings,
    release: Release,
    event: Event,
    correlation: str,
    title: str,
) -> None:
    """One incident per `correlation` (looked up first), caused by the release's change."""
    if client.query(TABLE, f"correlation_id={escape(correlation)}", ("sys_id",), limit=1):
        return
    body: dict[str, Any] = {
        "short_description": title[:160],
        "description": _description(release, event),
        "impact": FAILURE_IMPACT,
        "urgency": FAILURE_URGENCY,
        "correlation_id": correlation,
        "correlation_display": "itsm-bridge",
    }
    change_id = change_sys_id(release)
    if change_id:
        body["caused_by"] = change_id
    ci = _service_ci(client, bridge, release)
    if ci:
        body["cmdb_ci"] = ci
    group = config.incident_assignment_group or config.assignment_group
    if group:
        setting = (
            "plugins.servicenow.incident_assignment_group"
            if config.incident_assignment_group
            else "plugins.servicenow.assignment_group"
        )
        body["assignment_group"] = Groups(client, setting).sys_id(group)
    client.create(TABLE, body)
