"""Step 17: record what the release changed on the service's CMDB record.

`plugins.servicenow.service_levels` maps fields of `table` to templates, e.g.
`{version: "{version}", comments: "Released {version} ({release_id}) at {closed_at} UTC",
u_availability_target: "{availability}"}`: besides those placeholders, every key of what the
release prescribes (`Release.service_levels`: the service's `service_levels`, overridden by
`release create --service-level KEY=VALUE`).

The record: in `cmdb_ci_service` (the default) or any other CI table, the row named after the
service's CI (`services.<name>.ci`), else after the bridge's service name; in
`service_offering`, the offerings whose `parent` is that service ("A service offering derives
from a service, refining the parent service", ServiceNowDocs `markdown/it-service-management/
service-portfolio-management/SPM2-service-offerings.md`).

Idempotent: the current values are read (narrow fields) and only fields that differ are sent,
in one PATCH per record; nothing is written when all are equal, and `update` returns what it
wrote (so the core says "service levels updated" only when a field was written).
`{closed_at}` is the time of the call, so a value that differs only by that time stamp counts
as equal (a re-run of the same release writes nothing).
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import Release, utcnow
from itsm_bridge_servicenow.client import ServiceNowClient, sn_datetime
from itsm_bridge_servicenow.encoded import SYS_ID, escape

if TYPE_CHECKING:
    from itsm_bridge.settings import BridgeSettings
    from itsm_bridge_servicenow import Settings

OFFERING_TABLE = "service_offering"
PLACEHOLDERS = ("version", "service", "release_id", "closed_at")
DATETIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
SETTING = "plugins.servicenow.service_levels.fields"


def render(field: str, template: str, values: dict[str, str]) -> tuple[str, re.Pattern[str]]:
    """The value of one field and the pattern of "the same value at another `closed_at`"."""
    formatter = string.Formatter()
    text, pattern = [], []
    try:
        for literal, name, spec, conversion in formatter.parse(template):
            text.append(literal)
            pattern.append(re.escape(literal))
            if name is None:
                continue
            if name not in values or conversion:
                raise KeyError(name)
            value = formatter.format_field(values[name], spec or "")
            text.append(value)
            pattern.append(DATETIME if name == "closed_at" else re.escape(value))
    except (KeyError, ValueError) as exc:
        raise NeedsHuman(
            f"{SETTING}.{field}: bad template {template!r} ({exc}); use "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            + " or a key of the release's service levels (services.<name>.service_levels, "
            "release create --service-level)"
        ) from None
    return "".join(text), re.compile("".join(pattern), re.DOTALL)


def _names(bridge: BridgeSettings, release: Release) -> list[str]:
    service = bridge.services.get(release.service)
    names = [service.ci if service and service.ci else "", release.service]
    return [n for n in dict.fromkeys(names) if n]


def named(names: list[str], reference: str = "") -> str:
    """The records (or, with `reference`, the records whose `reference` is a record) named
    by any of `names`; a name that is a sys_id matches that record. `^OR` terms: an `IN`
    list cannot hold a name with a comma."""
    by_id, by_name = (reference, f"{reference}.name") if reference else ("sys_id", "name")
    terms = []
    for name in names:
        if SYS_ID.match(name):
            terms.append(f"{by_id}={name}")
        else:
            terms.append(f"{by_name}={escape(name)}")
    return "^OR".join(terms)


def find_records(
    client: ServiceNowClient, table: str, names: list[str], fields: list[str]
) -> list[dict[str, Any]]:
    """The records to update: offerings of the service, or the one record named after it."""
    wanted = ["sys_id", "name", *fields]
    if table == OFFERING_TABLE:
        return client.query(table, f"{named(names, 'parent')}^ORDERBYname", wanted)
    rows = client.query(table, named(names), wanted)
    rank = {name: i for i, name in enumerate(names)}

    def position(row: dict[str, Any]) -> int:
        found = [rank[k] for k in (str(row.get("sys_id")), str(row.get("name"))) if k in rank]
        return min(found, default=len(names))

    rows.sort(key=position)
    return rows[:1]


def changes(
    row: dict[str, Any], wanted: dict[str, tuple[str, re.Pattern[str]]], table: str
) -> dict[str, str]:
    """The fields of `row` whose current value differs from what the release prescribes."""
    out = {}
    for field, (value, same) in wanted.items():
        if field not in row:
            raise NeedsHuman(
                f"{SETTING}.{field}: {table} has no field {field!r} (check the field name)"
            )
        current = str(row.get(field) or "")
        if current != value and not same.fullmatch(current):
            out[field] = value
    return out


def update(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings, release: Release
) -> list[str]:
    """Set the configured fields of the service's record from the release.

    Returns what was written, one line per record: "<table> <name>: field, field"; [] when
    no field is configured, every field already holds the prescribed value, or the release
    was rolled back (the service still runs the version before it: nothing it prescribed
    came true).
    """
    templates = config.service_levels.fields
    if not templates or release.failure_reason:
        return []
    values = {
        **release.service_levels,  # what the release prescribes: {availability}, ...
        "version": release.version,
        "service": release.service,
        "release_id": release.id,
        "closed_at": sn_datetime(utcnow()),
    }
    wanted = {field: render(field, t, values) for field, t in templates.items()}
    table = config.service_levels.table
    names = _names(bridge, release)
    rows = find_records(client, table, names, list(wanted))
    if not rows:
        raise NeedsHuman(
            f"no {table} record for service {release.service} (looked for "
            f"{' or '.join(names)}): set services.{release.service}.ci to the name of its "
            f"record, or plugins.servicenow.service_levels.table"
        )
    written = []
    for row in rows:
        diff = changes(row, wanted, table)
        if diff:
            client.update(table, str(row["sys_id"]), diff, fields=("sys_id",))
            name = str(row.get("name") or row["sys_id"])
            written.append(f"{table} {name}: {', '.join(diff)}")
    return written
