"""The sandbox's conflict checker: schedules, conflict detection, and background runs.

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

Runs ("Change Management API", ServiceNowDocs `api-reference/rest-apis/change-management-
api.md`): POST `/api/sn_chg_rest/change/{sys_id}/conflict` starts a check in the background
and answers the check's sys_id; GET reports "the currently running ... or the last completed"
check. Here a check runs when it is read: the first GET after a POST reports it running
(`job_status` "1", no conflicts yet), the next one finishes it (`job_status` "2", the
documented example's value) and every later GET reports that result. `last_run` is when the
check started (the docs: "Date and time the last conflict checking process started"), one
second after the previous check's start at least, so every run is told apart. A change
without a CI (its own or an affected one) or without planned dates cannot be checked: the
POST answers 400 (the docs: "Request was unable to start due to unresolvable errors"; the
wording of the message is the sandbox's). DELETE cancels the check: conflicts cleared, status
"Not Run" (as "Cancel conflict detection manually" describes).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsm_bridge_sandbox.servicenow.records import TABLE_KEY, Store
from itsm_bridge_sandbox.webapp import HTTPError

OPEN_STATES = {"-5", "-4", "-3", "-2", "-1", "0"}
SYSTEM_USER = "system"
RUNNING, DONE = "1", "2"


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


def cannot_check(store: Store, change: dict[str, str]) -> str:
    """Why the change cannot be checked ("" when it can)."""
    if (
        parse_glide(change.get("start_date", "")) is None
        or parse_glide(change.get("end_date", "")) is None
    ):
        return "the change request has no planned start and end dates"
    if not change_cis(store, change):
        return "the change request has no configuration item"
    return ""


def store_conflicts(store: Store, change: dict[str, str], stamp: str) -> list[dict[str, str]]:
    """Replace the change's `conflict` rows with a fresh check; updates `conflict_status`."""
    clear_conflicts(store, change)
    rows = [
        store.insert("conflict", {**fields, "last_checked": stamp}, user=SYSTEM_USER)
        for fields in find_conflicts(store, change)
    ]
    status = "Conflict" if rows else "No Conflict"
    store.update(change, {"conflict_status": status, "conflict_last_run": stamp}, user=SYSTEM_USER)
    return rows


def clear_conflicts(store: Store, change: dict[str, str]) -> None:
    for old in [r for r in store.rows_of("conflict") if r.get("change") == change["sys_id"]]:
        store.delete(old)


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


@dataclass
class Run:
    """One conflict check of a change: when it started, and whether it finished."""

    worker: str
    started: str
    reads_running: int = 1  # GETs that still see it running
    done: bool = False


class ConflictChecks:
    """The latest conflict check of every change (callers hold the server lock)."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def clear(self) -> None:
        self.runs.clear()

    def start(self, store: Store, change: dict[str, str]) -> str:
        """POST: a new check of the change; the sys_id of the check."""
        why = cannot_check(store, change)
        if why:
            raise HTTPError(
                400,
                {
                    "error": {"message": "Conflict checking could not be started", "detail": why},
                    "status": "failure",
                },
            )
        started = store.timestamp()
        previous = self.runs.get(change["sys_id"])
        if previous is not None and started <= previous.started:
            later = datetime.strptime(previous.started, "%Y-%m-%d %H:%M:%S") + timedelta(seconds=1)
            started = later.strftime("%Y-%m-%d %H:%M:%S")
        run = Run(worker=uuid.uuid4().hex, started=started)
        self.runs[change["sys_id"]] = run
        return run.worker

    def cancel(self, store: Store, change: dict[str, str]) -> None:
        """DELETE: the check is cancelled, its conflicts cleared, the status Not Run."""
        if self.runs.pop(change["sys_id"], None) is not None:
            clear_conflicts(store, change)
            store.update(change, {"conflict_status": "Not Run"}, user=SYSTEM_USER)

    def result(self, store: Store, change: dict[str, str], base_url: str) -> dict[str, Any]:
        """GET: the running check, or the last completed one (see the module docstring)."""
        run = self.runs.get(change["sys_id"])
        if run is None:
            return _answer("Not Run", "", "0", "", [])
        if not run.done and run.reads_running > 0:
            run.reads_running -= 1
            return _answer(
                change.get("conflict_status") or "Not Run", run.started, "0", RUNNING, []
            )
        if not run.done:
            store_conflicts(store, change, run.started)
            run.done = True
        rows = [r for r in store.rows_of("conflict") if r.get("change") == change["sys_id"]]
        conflicts = [
            store.render(r, base_url, fields=CONFLICT_FIELDS, display="all", links=False)
            for r in rows
        ]
        count = str(len(change_cis(store, change)))
        return _answer("Conflict", run.started, count, DONE, conflicts)


def _answer(
    status: str, last_run: str, count: str, job: str, conflicts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The documented shape: `status` is "Conflict" after any finished check, even one that
    found nothing, and "Not Run" before the first."""
    return {
        "result": {
            "status": status,
            "last_run": last_run,
            "record_count": count,
            "job_status": job,
            "conflicts": conflicts,
        }
    }
