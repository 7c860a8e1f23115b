"""The default change model (state transitions, approval, closure) and the conflict checker.

State model: "State model and transitions" / "Change request states" in the ServiceNow Change
Management docs (docs.servicenow.com): New -5, Assess -4, Authorize -3, Scheduled -2,
Implement -1, Review 0, Closed 3, Canceled 4. Normal changes walk the states one at a time,
emergency changes skip Assess, standard (pre-approved) changes go New -> Scheduled. A refused
transition is aborted by the `State model - Can change state?` business rule; a business-rule
abort reaches REST clients as 403 `{"error": {"message": "Operation Failed", "detail":
"Operation against file '<table>' was aborted by Business Rule '<name>^<sys_id>'. Business Rule
Stack:<name>"}, "status": "failure"}` (shape as seen from the Table API, ServiceNow community
"Operation Failed ... aborted by Business Rule"); the sandbox appends a sentence saying why.
Missing closure fields answer a Data Policy exception ("Data Policy Exception: The following
fields are mandatory: ...", same 403 shape).

Schedules: `cmn_schedule_span.start_date_time`/`end_date_time` are glide_schedule_date_time
values `YYYYMMDDTHHMMSS` in the schedule's time zone; `repeat_type` is one of daily, weekdays,
weekends, weekly, monthly, yearly (empty: no repeat), `repeat_count` the interval,
`repeat_until` a `YYYYMMDD` date, `days_of_week` digits 1 (Monday) .. 7 (Sunday).

Conflict detection (simplified, documented in docs/sandbox.md): the CIs of a change are its
`cmdb_ci` plus its `task_ci` rows; related CIs are one `cmdb_rel_ci` hop away in either
direction. A blackout schedule applies when its `cmdb_ci` is one of those CIs, or to every
change when its `cmdb_ci` is empty (the real product uses a condition on the schedule). A
maintenance schedule applies only to the CI it names; the change must lie entirely inside one
of its span occurrences. Another open change on the same CI with overlapping dates gives
`ci_already_scheduled`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsm_bridge_sandbox.servicenow.records import TABLE_KEY, Store
from itsm_bridge_sandbox.servicenow.schema import CHANGE_STATES
from itsm_bridge_sandbox.webapp import HTTPError

NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW, CLOSED, CANCELED = (
    "-5",
    "-4",
    "-3",
    "-2",
    "-1",
    "0",
    "3",
    "4",
)
OPEN_STATES = {NEW, ASSESS, AUTHORIZE, SCHEDULED, IMPLEMENT, REVIEW}
CLOSE_CODES = {"successful", "successful_issues", "unsuccessful"}
STATE_RULE = "State model - Can change state?"

#: Allowed moves per change type (besides staying put and cancelling an open change).
TRANSITIONS: dict[str, dict[str, set[str]]] = {
    "normal": {
        NEW: {ASSESS},
        ASSESS: {AUTHORIZE, NEW},
        AUTHORIZE: {SCHEDULED, NEW},
        SCHEDULED: {IMPLEMENT},
        IMPLEMENT: {REVIEW},
        REVIEW: {CLOSED},
    },
    "emergency": {
        NEW: {AUTHORIZE},
        AUTHORIZE: {SCHEDULED, NEW},
        SCHEDULED: {IMPLEMENT},
        IMPLEMENT: {REVIEW},
        REVIEW: {CLOSED},
    },
    "standard": {NEW: {SCHEDULED}, SCHEDULED: {IMPLEMENT}, IMPLEMENT: {REVIEW}, REVIEW: {CLOSED}},
}


def operation_failed(detail: str) -> HTTPError:
    return HTTPError(
        403, {"error": {"message": "Operation Failed", "detail": detail}, "status": "failure"}
    )


def business_rule_abort(table: str, sys_id: str, rule: str, why: str) -> HTTPError:
    return operation_failed(
        f"Operation against file '{table}' was aborted by Business Rule '{rule}^{sys_id}'. "
        f"Business Rule Stack:{rule}. {why}"
    )


def _label(state: str) -> str:
    return f"{CHANGE_STATES.get(state, state)} ({state})"


def apply_change_rules(row: dict[str, str] | None, values: dict[str, str], sys_id: str) -> None:
    """Validate a change_request write against the default model; completes `values`.

    `row` is the current record (None on insert). Raises a 403 `HTTPError` when refused.
    """
    current = row or {}
    merged = {**current, **values}
    ctype = merged.get("type") or "normal"
    if row is None:
        if ctype == "standard" and "approval" not in values:
            values["approval"] = "approved"
        merged = {**merged, **values}
    old = current.get("state", NEW)
    new = values.get("state", old)
    if new == old:
        return
    allowed = TRANSITIONS.get(ctype, TRANSITIONS["normal"]).get(old, set())
    if not (new in allowed or (new == CANCELED and old in OPEN_STATES)):
        raise business_rule_abort(
            "change_request",
            sys_id,
            STATE_RULE,
            f"Invalid state transition: a {ctype} change cannot move from {_label(old)} "
            f"to {_label(new)}.",
        )
    if new == ASSESS and merged.get("approval") == "rejected":
        values["approval"] = "not requested"
    if new == AUTHORIZE and merged.get("approval") != "approved":
        values["approval"] = "requested"
    if new == SCHEDULED and (merged.get("approval") or "") != "approved":
        raise business_rule_abort(
            "change_request",
            sys_id,
            STATE_RULE,
            f"Invalid state transition: the change must be approved to move to "
            f"{_label(new)} (approval is '{merged.get('approval', '')}').",
        )
    if new == CLOSED:
        missing = []
        if merged.get("close_code") not in CLOSE_CODES:
            missing.append("Close code")
        if not merged.get("close_notes"):
            missing.append("Close notes")
        if missing:
            raise operation_failed(
                "Data Policy Exception: \n\tThe following fields are "
                f"mandatory: {', '.join(missing)}\n"
            )
    if new in (CLOSED, CANCELED):
        values["active"] = "false"


# -- schedules -------------------------------------------------------------------------
def parse_schedule_time(value: str) -> tuple[datetime, str | None] | None:
    """`[TZID=Zone;]YYYYMMDDTHHMMSS` (or `YYYY-MM-DD HH:MM:SS`) -> (naive datetime, zone)."""
    zone = None
    if value.startswith("TZID="):
        zone, _, value = value[5:].partition(";")
    for fmt in ("%Y%m%dT%H%M%S", "%Y-%m-%d %H:%M:%S", "%Y%m%d"):
        try:
            return datetime.strptime(value.strip(), fmt), zone
        except ValueError:
            continue
    return None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def occurrences(
    span: dict[str, str],
    schedule_tz: str | None,
    window_start: datetime,
    window_end: datetime,
) -> Iterator[tuple[datetime, datetime]]:
    """UTC (start, end) occurrences of a span that may touch [window_start, window_end]."""
    parsed_start = parse_schedule_time(span.get("start_date_time", ""))
    parsed_end = parse_schedule_time(span.get("end_date_time", ""))
    if parsed_start is None or parsed_end is None:
        return
    (first_start, tz_name), (first_end, _) = parsed_start, parsed_end
    tz = _zone(tz_name or schedule_tz)
    duration = first_end - first_start
    repeat = (span.get("repeat_type") or "").strip()
    if repeat in ("", "none"):
        yield _utc(first_start, tz), _utc(first_end, tz)
        return
    raw_count = span.get("repeat_count") or "1"
    count = max(int(raw_count), 1) if raw_count.isdigit() else 1
    until = parse_schedule_time(span.get("repeat_until") or "")
    last_day = until[0].date() if until else None
    days = {int(d) for d in (span.get("days_of_week") or "") if d.isdigit()}
    if not days:
        days = {first_start.isoweekday()}
    day = max(first_start.date(), (window_start - duration - timedelta(days=1)).date())
    stop = (window_end + timedelta(days=1)).date()
    while day <= stop and (last_day is None or day <= last_day):
        if _repeats_on(repeat, count, first_start.date(), day, days):
            begin = datetime.combine(day, first_start.time())
            yield _utc(begin, tz), _utc(begin + duration, tz)
        day += timedelta(days=1)


def _repeats_on(repeat: str, count: int, first: date, day: date, days: set[int]) -> bool:
    if repeat == "daily":
        return (day - first).days % count == 0
    if repeat == "weekdays":
        return day.isoweekday() <= 5
    if repeat == "weekends":
        return day.isoweekday() >= 6
    if repeat == "weekly":
        first_monday = first - timedelta(days=first.weekday())
        weeks = (day - first_monday).days // 7
        return day.isoweekday() in days and weeks % count == 0
    if repeat == "monthly":
        months = (day.year - first.year) * 12 + day.month - first.month
        return day.day == first.day and months % count == 0
    if repeat == "yearly":
        return (day.month, day.day) == (first.month, first.day)
    return False


def _utc(naive: datetime, tz: ZoneInfo) -> datetime:
    return naive.replace(tzinfo=tz).astimezone(UTC)


def parse_glide(value: str) -> datetime | None:
    """A glide_date_time `YYYY-MM-DD HH:MM:SS` (UTC, as the Table API returns it)."""
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        try:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        except ValueError:
            return None


# -- conflicts -------------------------------------------------------------------------
def change_cis(store: Store, change: dict[str, str]) -> list[str]:
    """The change's own CI followed by its affected CIs (task_ci), without duplicates."""
    cis = [change.get("cmdb_ci", "")]
    cis += [
        row.get("ci_item", "")
        for row in store.rows_of("task_ci")
        if row.get("task") == change["sys_id"]
    ]
    return list(dict.fromkeys(ci for ci in cis if ci))


def related_cis(store: Store, ci: str) -> list[str]:
    """CIs one cmdb_rel_ci hop away from `ci`, in either direction."""
    out = []
    for rel in store.rows_of("cmdb_rel_ci"):
        if rel.get("parent") == ci:
            out.append(rel.get("child", ""))
        elif rel.get("child") == ci:
            out.append(rel.get("parent", ""))
    return [c for c in dict.fromkeys(out) if c]


def find_conflicts(store: Store, change: dict[str, str]) -> list[dict[str, str]]:
    """The conflicts of a change as `conflict` field dicts (not yet stored)."""
    start, end = parse_glide(change.get("start_date", "")), parse_glide(change.get("end_date", ""))
    if start is None or end is None:
        return []
    cis = change_cis(store, change)
    reach: dict[str, tuple[str, str]] = {}  # ci -> (configuration_item, related ci or "")
    for ci in cis:
        reach.setdefault(ci, (ci, ""))
        for other in related_cis(store, ci):
            reach.setdefault(other, (ci, other))
    primary = cis[0] if cis else ""
    found: list[dict[str, str]] = []
    for schedule in store.rows_of("cmn_schedule"):
        kind = schedule.get("type") or schedule[TABLE_KEY].removeprefix("cmn_schedule_")
        target = schedule.get("cmdb_ci", "")
        spans = [
            s for s in store.rows_of("cmn_schedule_span") if s.get("schedule") == schedule["sys_id"]
        ]
        tz = schedule.get("time_zone") or None
        if kind == "blackout" and (not target or target in reach):
            item, related = reach.get(target, (primary, ""))
            if any(
                s < end and start < e
                for span in spans
                for s, e in occurrences(span, tz, start, end)
            ):
                found.append(_conflict(change, "blackout", item, related, schedule["sys_id"]))
        elif kind == "maintenance" and target in reach:
            item, related = reach[target]
            inside = any(
                s <= start and end <= e
                for span in spans
                for s, e in occurrences(span, tz, start, end)
            )
            if not inside:
                found.append(
                    _conflict(
                        change, "not_in_maintenance_window", item, related, schedule["sys_id"]
                    )
                )
    for rival in store.rows_of("change_request"):
        if rival["sys_id"] == change["sys_id"] or rival.get("state") not in OPEN_STATES:
            continue
        r_start = parse_glide(rival.get("start_date", ""))
        r_end = parse_glide(rival.get("end_date", ""))
        if r_start is None or r_end is None or not (r_start < end and start < r_end):
            continue
        for ci in [c for c in change_cis(store, rival) if c in cis]:
            entry = _conflict(change, "ci_already_scheduled", ci, "", "")
            entry["conflicting_change"] = rival["sys_id"]
            found.append(entry)
    return found


def _conflict(
    change: dict[str, str], kind: str, ci: str, related: str, schedule: str
) -> dict[str, str]:
    return {
        "change": change["sys_id"],
        "type": kind,
        "configuration_item": ci,
        "related_configuration_item": related,
        "schedule": schedule,
        "conflicting_change": "",
    }


def run_conflict_check(store: Store, change: dict[str, str], user: str) -> list[dict[str, str]]:
    """Replace the change's `conflict` rows with a fresh check; updates `conflict_status`."""
    for old in [r for r in store.rows_of("conflict") if r.get("change") == change["sys_id"]]:
        store.delete(old)
    stamp = store.timestamp()
    rows = [
        store.insert("conflict", {**fields, "last_checked": stamp}, user=user)
        for fields in find_conflicts(store, change)
    ]
    store.update(
        change,
        {"conflict_status": "Conflict" if rows else "No Conflict", "conflict_last_run": stamp},
        user=user,
    )
    return rows


CONFLICT_FIELDS = [
    "sys_id",
    "change",
    "conflicting_change",
    "configuration_item",
    "related_configuration_item",
    "schedule",
    "type",
    "last_checked",
]

#: `job_status` of a finished check, as in the documented example response (the meaning of the
#: codes is not published; a check in the sandbox always finishes within the POST).
JOB_DONE = "2"


def conflict_result(
    store: Store, change: dict[str, str], base_url: str, ran: bool
) -> dict[str, Any]:
    """The body of GET /api/sn_chg_rest/change/{sys_id}/conflict.

    Documented shape ("Change Management API", GET /sn_chg_rest/change/{sys_id}/conflict,
    ServiceNowDocs xanadu and australia): `{"result": {"status": "Conflict", "last_run":
    "2018-08-30 12:58:05", "record_count": "1", "job_status": "2", "conflicts": [...]}}` where
    `status` is "Conflict" after any check, even one that found nothing ("Not Run" before the
    first), and each conflict carries its fields as `{"display_value", "value"}` objects.
    """
    if not ran:
        return {
            "result": {
                "status": "Not Run",
                "last_run": "",
                "record_count": "0",
                "job_status": "",
                "conflicts": [],
            }
        }
    rows = [r for r in store.rows_of("conflict") if r.get("change") == change["sys_id"]]
    conflicts = [
        store.render(r, base_url, fields=CONFLICT_FIELDS, display="all", links=False) for r in rows
    ]
    return {
        "result": {
            "status": "Conflict",
            "last_run": change.get("conflict_last_run", ""),
            "record_count": str(len(change_cis(store, change))),
            "job_status": JOB_DONE,
            "conflicts": conflicts,
        }
    }
