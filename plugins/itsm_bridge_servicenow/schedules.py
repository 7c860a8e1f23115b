"""Step 5: blackout and maintenance schedules of the release's CIs, as UTC freezes and windows.

Which schedules apply (the real product, "Create blackout and maintenance schedules in Change
Management", ServiceNowDocs `markdown/it-service-management/change-management/
t_CreateBlkoutMaintSched.md`; "Configuring maintenance schedules - Best practices", same
folder; Kingston's `ChangeCheckConflictsSNC` / `ChangeCollisionHelper` script includes as
captured in jacebenson/sndocs `sources/kingston/0/sys_script_include/`):

* `cmn_schedule_blackout` and `cmn_schedule_maintenance` extend `cmn_schedule_condition`
  (which extends `cmn_schedule`). Such a schedule names a CI class in `applies_to` and an
  encoded query on that class in `condition` (empty: every CI of the class); conflict
  detection applies it to a CI whose class descends from `applies_to` and that matches the
  condition (`SNC.Filter.checkRecord`). The bridge asks the instance the same question with
  one query per schedule: `GET /table/<applies_to>?sysparm_query=sys_idIN<CIs>^<condition>`
  (a query on a class returns its descendants too, so the class test comes for free).
* A CI's own `maintenance_schedule` reference (a `cmn_schedule` of type maintenance, checked
  when `change.conflict.ci_maint_sched` is on) is a maintenance schedule of that CI.
* A schedule scoped to one CI through `cmdb_ci` is honoured as well: that is how the local
  sandbox links schedules (and how a schedule whose source is a service names it).
* A blackout with no scope at all, or scoped to change requests (a "Change Request" source:
  `applies_to` a task table, its condition on the change, which does not exist yet at step
  5), is applied to every release: a freeze too many is safer than a missed one. Such a
  maintenance schedule is not applied.

The CIs are the release's affected CIs and impacted services from step 8 (which runs before
step 5), see `cmdb.affected_ci_ids`: a schedule on an upstream service covers the CIs below
it, as conflict detection evaluates "the parent and child configuration items of any CI in
scope" (t_CreateBlkoutMaintSched.md).

Entries (`cmn_schedule_span`, "Schedule entry fields", ServiceNowDocs `markdown/
platform-administration/time-configuration/r_ScheduleEntryFields.md`; "Schedule fields",
`r_ScheduleFields.md`, same folder): `start_date_time`/`end_date_time` are
glide_schedule_date_time values `YYYYMMDDTHHMMSS` in the schedule's `time_zone` (empty or
"Floating": "relative to whatever process is accessing the item", i.e. the integration
user's zone, which must be UTC; a `TZID=<zone>;` prefix overrides the zone, a `Z` suffix
means UTC). `all_day` true ("applies to a full 24-hour day") covers whole days in the zone:
from midnight of the start date to the midnight after the end date, whatever the times say.
`repeat_type` "" (once), daily, weekdays, weekends, weekMWF, weekTT, weekly (`days_of_week`
digits 1=Monday..7=Sunday, as third-party readers of the table decode them), monthly (same
day of the month), yearly (same date); `repeat_count` is "Repeat every" (the interval);
`repeat_until` is the last date, `YYYYMMDD` (or `YYYY-MM-DD`) in the zone; blank ("the
schedule repeats indefinitely") or `00000000` means no end. Occurrences are wall-clock spans
in the zone (expanded with `itsm_bridge.windows`, DST-aware), so a Saturday 22:00-02:00
entry stays 22:00-02:00 local on both sides of a DST change. An end of 23:59:59 is the
inclusive last second of a day and is read as the next midnight. Not supported (logged):
exclusion entries, child schedules, floating monthly/yearly entries (`monthly_type`/
`yearly_type` other than a plain date).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from itsm_bridge import windows as calendar
from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import Freeze, Release, Window
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_servicenow.client import Record, ServiceNowClient, reference
from itsm_bridge_servicenow.cmdb import affected_ci_ids, chunked, query_in

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

log = logging.getLogger(__name__)

SOURCE = "servicenow"
BLACKOUT_TABLE = "cmn_schedule_blackout"
MAINTENANCE_TABLE = "cmn_schedule_maintenance"
SCHEDULE_FIELDS = (
    "sys_id",
    "name",
    "description",
    "time_zone",
    "applies_to",
    "condition",
    "cmdb_ci",
)
SPAN_FIELDS = (
    "schedule",
    "name",
    "type",
    "all_day",
    "start_date_time",
    "end_date_time",
    "repeat_type",
    "repeat_count",
    "repeat_until",
    "days_of_week",
    "monthly_type",
    "yearly_type",
)
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: `applies_to` values that scope a schedule to change requests, not to CIs.
_CHANGE_TABLES = frozenset({"change_request", "task"})
_SN_TIME = re.compile(r"^(?:TZID=([^;]+);)?(\d{8}T\d{6})(Z?)$")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_FIXED_DAYS = {
    "weekdays": "MO,TU,WE,TH,FR",
    "weekends": "SA,SU",
    "weekMWF": "MO,WE,FR",
    "weekTT": "TU,TH",
}


@dataclass(frozen=True)
class Occurrence:
    """One UTC occurrence `[start, end)` of a schedule entry."""

    schedule: Record
    start: datetime
    end: datetime


def blackouts(
    client: ServiceNowClient,
    config: Settings,
    release: Release,
    start: datetime,
    end: datetime,
    bridge: BridgeSettings | None = None,
) -> list[Freeze]:
    """Step 5: blackout occurrences of the release's CIs overlapping `[start, end)`, in UTC.

    `bridge` (the bridge settings) lets the service's CI be found before step 8 has run.
    """
    cis = affected_ci_ids(client, config, bridge, release)
    schedules = applicable(client, BLACKOUT_TABLE, cis, unscoped=True)
    freezes = [
        Freeze(
            name=str(o.schedule.get("name") or "ServiceNow blackout"),
            start=o.start,
            end=o.end,
            source=SOURCE,
            reason=_reason(o.schedule),
        )
        for o in expand(client, schedules, start, end)
    ]
    return sorted(freezes, key=lambda f: (f.start, f.name))


def maintenance_windows(
    client: ServiceNowClient,
    config: Settings,
    release: Release,
    start: datetime,
    end: datetime,
    bridge: BridgeSettings | None = None,
) -> list[Window]:
    """Step 5: maintenance occurrences of the release's CIs overlapping `[start, end)`, UTC.

    `bridge` (the bridge settings) lets the service's CI be found before step 8 has run.
    """
    cis = affected_ci_ids(client, config, bridge, release)
    schedules = applicable(client, MAINTENANCE_TABLE, cis, unscoped=False)
    known = {str(s["sys_id"]) for s in schedules}
    schedules += [s for s in ci_maintenance_schedules(client, cis) if s["sys_id"] not in known]
    windows = [
        Window(
            name=str(o.schedule.get("name") or "ServiceNow maintenance"),
            start=o.start,
            end=o.end,
            source=SOURCE,
        )
        for o in expand(client, schedules, start, end)
    ]
    return sorted(windows, key=lambda w: (w.start, w.name))


def applicable(
    client: ServiceNowClient, table: str, cis: Sequence[str], *, unscoped: bool
) -> list[Record]:
    """The schedules of `table` that apply to any of `cis` (see the module docstring)."""
    rows = client.query(table, "ORDERBYname", SCHEDULE_FIELDS)
    targets = set(cis)
    chosen: dict[str, Record] = {}
    by_class: dict[tuple[str, str], list[Record]] = {}
    for row in rows:
        ci = reference(row.get("cmdb_ci"))
        applies_to = str(row.get("applies_to") or "").strip()
        if ci:  # scoped to one CI
            if ci in targets:
                chosen[str(row["sys_id"])] = row
        elif not applies_to or applies_to in _CHANGE_TABLES:  # no CI scope at all
            if unscoped:
                chosen[str(row["sys_id"])] = row
        else:  # a CI class and a condition on it
            condition = str(row.get("condition") or "")
            by_class.setdefault((applies_to, condition), []).append(row)
    for (applies_to, condition), group in by_class.items():
        if matches(client, applies_to, condition, cis):
            chosen.update({str(row["sys_id"]): row for row in group})
    return list(chosen.values())


def matches(client: ServiceNowClient, applies_to: str, condition: str, cis: Sequence[str]) -> bool:
    """True when one of `cis` is in class `applies_to` (or below) and meets `condition`."""
    if not _TABLE_NAME.match(applies_to):
        log.warning("servicenow: schedule applies to %r, not a table name: ignored", applies_to)
        return False
    condition = condition.strip().removesuffix("^EQ").strip("^")
    for chunk in chunked(sorted(set(cis))):
        scope = "sys_idIN" + ",".join(chunk)
        parts = [p for p in condition.split("^NQ") if p] or [""]
        query = "^NQ".join(f"{scope}^{p}" if p else scope for p in parts)
        if client.query(applies_to, query, ("sys_id",), limit=1):
            return True
    return False


def ci_maintenance_schedules(client: ServiceNowClient, cis: Sequence[str]) -> list[Record]:
    """The `cmn_schedule` rows the CIs name in their `maintenance_schedule` field."""
    rows = query_in(
        client,
        "cmdb_ci",
        "sys_id",
        cis,
        ("sys_id", "maintenance_schedule"),
        "maintenance_scheduleISNOTEMPTY",
    )
    ids = {reference(r.get("maintenance_schedule")) for r in rows} - {""}
    return query_in(client, "cmn_schedule", "sys_id", sorted(ids), SCHEDULE_FIELDS) if ids else []


def expand(
    client: ServiceNowClient, schedules: Sequence[Record], start: datetime, end: datetime
) -> list[Occurrence]:
    """Occurrences of every entry of `schedules` overlapping `[start, end)` (one span query)."""
    if not schedules:
        return []
    by_id = {str(s["sys_id"]): s for s in schedules}
    spans = query_in(client, "cmn_schedule_span", "schedule", list(by_id), SPAN_FIELDS)
    found: list[Occurrence] = []
    for span in spans:
        schedule = by_id.get(reference(span.get("schedule")))
        if schedule is None:
            continue
        if str(span.get("type") or "").startswith("exclu"):
            log.warning("servicenow: exclusion entry %r ignored", span.get("name"))
            continue
        for s, e in span_occurrences(span, str(schedule.get("time_zone") or ""), start, end):
            found.append(Occurrence(schedule, s, e))
    return found


def span_occurrences(
    span: Record, time_zone: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """UTC `(start, end)` of each occurrence of one entry overlapping `[start, end)`."""
    what = f"schedule entry {span.get('name')!r}"
    first, zone_name = parse_schedule_time(str(span.get("start_date_time") or ""), time_zone)
    last, _ = parse_schedule_time(str(span.get("end_date_time") or ""), time_zone)
    if first is None or last is None:
        log.warning("servicenow: %s has no readable start/end: ignored", what)
        return []
    if str(span.get("all_day") or "").lower() == "true":  # whole days, start to end date
        first = datetime.combine(first.date(), time())
        last = datetime.combine(last.date(), time()) + timedelta(days=1)
    elif last.time() == datetime.max.time().replace(microsecond=0):
        last += timedelta(seconds=1)  # 23:59:59 is the inclusive last second of the day
    length = last - first
    if length <= timedelta(0):
        log.warning("servicenow: %s ends before it starts: ignored", what)
        return []
    try:
        zone = ZoneInfo(zone_name)
        rule = span_rule(span, first)
        starts = calendar.maintenance_windows(
            what, rule, zone_name, length + timedelta(hours=2), start - timedelta(days=1), end
        )
    except (ValueError, KeyError) as exc:
        raise NeedsHuman(f"ServiceNow {what}: {exc}; fix the entry or its schedule") from None
    out = []
    for occurrence in starts:
        local = occurrence.start.astimezone(zone).replace(tzinfo=None)
        finish = (local + length).replace(tzinfo=zone, fold=0).astimezone(UTC)
        if occurrence.start < end and finish > start:
            out.append((occurrence.start, finish))
    return out


def parse_schedule_time(value: str, time_zone: str) -> tuple[datetime | None, str]:
    """A glide_schedule_date_time as (naive wall time, IANA zone it is in)."""
    floating = not time_zone.strip() or time_zone.strip().lower() == "floating"
    default = "UTC" if floating else time_zone.strip()
    match = _SN_TIME.match(value.strip())
    if match is None:
        return None, default
    zone = "UTC" if match[3] else (match[1] or default)
    return datetime.strptime(match[2], "%Y%m%dT%H%M%S"), zone


def span_rule(span: Record, first: datetime) -> str:
    """The RFC 5545 rule (floating DTSTART, local wall time) of a `cmn_schedule_span`."""
    repeat = str(span.get("repeat_type") or "").strip()
    count = str(span.get("repeat_count") or "1").strip()
    interval = max(int(count), 1) if count.isdigit() else 1
    dtstart = f"DTSTART:{first:%Y%m%dT%H%M%S}"
    until = repeat_until(span)
    bound = f";UNTIL={until:%Y%m%d}T235959" if until else ""
    if repeat in ("", "none"):
        return f"{dtstart}\nRRULE:FREQ=DAILY;COUNT=1"
    if repeat == "daily":
        return f"{dtstart}\nRRULE:FREQ=DAILY;INTERVAL={interval}{bound}"
    if repeat in _FIXED_DAYS:
        return f"{dtstart}\nRRULE:FREQ=WEEKLY;BYDAY={_FIXED_DAYS[repeat]}{bound}"
    if repeat == "weekly":
        digits = sorted({int(d) for d in str(span.get("days_of_week") or "") if d in "1234567"})
        days = ",".join(_WEEKDAYS[d - 1] for d in digits) or _WEEKDAYS[first.weekday()]
        rule = f"FREQ=WEEKLY;INTERVAL={interval};WKST=MO;BYDAY={days}"
        return f"{dtstart}\nRRULE:{rule}{bound}"
    if repeat in ("monthly", "yearly"):
        kind = str(span.get(f"{repeat}_type") or "").strip()
        if kind not in ("", "dom", "doy"):
            log.warning("servicenow: %s type %r read as a fixed date", repeat, kind)
        if repeat == "monthly":
            rule = f"FREQ=MONTHLY;INTERVAL={interval};BYMONTHDAY={first.day}"
        else:
            rule = f"FREQ=YEARLY;INTERVAL={interval};BYMONTH={first.month};BYMONTHDAY={first.day}"
        return f"{dtstart}\nRRULE:{rule}{bound}"
    log.warning("servicenow: repeat type %r not supported: entry read as one occurrence", repeat)
    return f"{dtstart}\nRRULE:FREQ=DAILY;COUNT=1"


def repeat_until(span: Record) -> date | None:
    """The last date of a repeating entry; None when it repeats forever (blank, `00000000`)
    or the value is unreadable (logged)."""
    raw = str(span.get("repeat_until") or "").strip()
    digits = raw.replace("-", "")[:8]
    if not digits or set(digits) == {"0"}:
        return None
    try:
        return datetime.strptime(digits, "%Y%m%d").date()
    except ValueError:
        log.warning("servicenow: repeat_until %r not a date: entry repeats forever", raw)
        return None


def _reason(schedule: Record) -> str:
    description = str(schedule.get("description") or "").strip()
    name = schedule.get("name") or schedule.get("sys_id")
    return f"ServiceNow blackout schedule {name}" + (f": {description}" if description else "")
