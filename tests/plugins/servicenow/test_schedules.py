"""Step 5: ServiceNow blackout and maintenance schedules as UTC freezes and windows.

Entry expansion is tested as pure functions (DST, repeats, time formats); applicability with
`responses` (the queries sent); the seeded schedules against the sandbox over HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import ConfigurationItem, Impact, Release
from itsm_bridge.plugins import PluginHost, load_plugins
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings
from itsm_bridge_servicenow.client import ServiceNowClient
from itsm_bridge_servicenow.schedules import (
    blackouts,
    maintenance_windows,
    span_occurrences,
)

BASE = "https://acme.service-now.com"
TABLE = re.compile(rf"{re.escape(BASE)}/api/now/table/(\w+)")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def span(start: str, end: str, repeat: str = "", **fields: str) -> dict[str, str]:
    return {"name": "entry", "start_date_time": start, "end_date_time": end,
            "repeat_type": repeat, **fields}  # fmt: skip


# -- unit: entry expansion -----------------------------------------------------------------
SATURDAY_NIGHT = span("20260103T220000", "20260104T020000", "weekly", days_of_week="6")


def test_weekly_entry_across_the_spring_dst_change() -> None:
    got = span_occurrences(SATURDAY_NIGHT, "Europe/Berlin", utc(2026, 3, 20), utc(2026, 4, 6))
    assert got == [
        (utc(2026, 3, 21, 21), utc(2026, 3, 22, 1)),  # CET: 22:00-02:00 = 21:00Z-01:00Z
        (utc(2026, 3, 28, 21), utc(2026, 3, 29, 1)),  # 02:00 does not exist: 03:00 CEST
        (utc(2026, 4, 4, 20), utc(2026, 4, 5, 0)),  # CEST: 20:00Z-00:00Z
    ]


def test_weekly_entry_across_the_autumn_dst_change() -> None:
    got = span_occurrences(SATURDAY_NIGHT, "Europe/Berlin", utc(2026, 10, 20), utc(2026, 11, 2))
    assert got == [
        (utc(2026, 10, 24, 20), utc(2026, 10, 25, 0)),  # ends at the first 02:00 (CEST)
        (utc(2026, 10, 31, 21), utc(2026, 11, 1, 1)),  # CET again
    ]


def test_wall_clock_length_not_elapsed_time_over_the_autumn_night() -> None:
    night = span("20261024T230000", "20261025T050000", "")  # 23:00 CEST .. 05:00 CET: 7h
    got = span_occurrences(night, "Europe/Berlin", utc(2026, 10, 1), utc(2026, 11, 1))
    assert got == [(utc(2026, 10, 24, 21), utc(2026, 10, 25, 4))]


def test_repeat_every_n_days_until_a_date_in_new_york() -> None:
    entry = span("20260301T090000", "20260301T100000", "daily", repeat_count="2",
                 repeat_until="20260309")  # fmt: skip
    got = span_occurrences(entry, "America/New_York", utc(2026, 3, 1), utc(2026, 4, 1))
    assert [s for s, _ in got] == [
        utc(2026, 3, 1, 14), utc(2026, 3, 3, 14), utc(2026, 3, 5, 14), utc(2026, 3, 7, 14),
        utc(2026, 3, 9, 13),  # EDT from 8 March
    ]  # fmt: skip


def test_weekdays_monthly_and_yearly_entries() -> None:
    weekdays = span("20260105T060000", "20260105T070000", "weekdays")
    got = span_occurrences(weekdays, "UTC", utc(2026, 1, 9), utc(2026, 1, 13))
    assert [s.day for s, _ in got] == [9, 12]  # Fri, (weekend skipped), Mon
    monthly = span("20260131T000000", "20260131T010000", "monthly")
    got = span_occurrences(monthly, "UTC", utc(2026, 1, 1), utc(2026, 6, 1))
    assert [s.month for s, _ in got] == [1, 3, 5]  # the 31st only where it exists
    yearly = span("20241224T000000", "20241226T235959", "yearly")
    got = span_occurrences(yearly, "UTC", utc(2026, 1, 1), utc(2027, 1, 1))
    assert got == [(utc(2026, 12, 24), utc(2026, 12, 27))]  # 23:59:59 read as the next midnight


def test_time_formats_floating_zone_tzid_and_utc() -> None:
    window = (utc(2026, 7, 1), utc(2026, 7, 2))
    floating = span("20260701T100000", "20260701T110000")
    assert span_occurrences(floating, "", *window) == [(utc(2026, 7, 1, 10), utc(2026, 7, 1, 11))]
    tzid = span("TZID=Europe/Berlin;20260701T100000", "TZID=Europe/Berlin;20260701T110000")
    assert span_occurrences(tzid, "UTC", *window) == [(utc(2026, 7, 1, 8), utc(2026, 7, 1, 9))]
    zulu = span("20260701T100000Z", "20260701T110000Z")
    assert span_occurrences(zulu, "Asia/Tokyo", *window) == [
        (utc(2026, 7, 1, 10), utc(2026, 7, 1, 11))
    ]


def test_occurrences_outside_the_horizon_or_unreadable_are_dropped() -> None:
    once = span("20260701T100000", "20260701T110000")
    assert span_occurrences(once, "UTC", utc(2026, 7, 1, 11), utc(2026, 8, 1)) == []
    assert (
        span_occurrences(span("yesterday", "today"), "UTC", utc(2026, 1, 1), utc(2027, 1, 1)) == []
    )


def test_repeat_until_zeros_or_blank_means_no_end_and_a_date_bounds_it() -> None:
    horizon = (utc(2030, 6, 1), utc(2030, 6, 15))
    for forever in ("00000000", "", "0000-00-00"):
        entry = {**SATURDAY_NIGHT, "repeat_until": forever}
        assert len(span_occurrences(entry, "Europe/Berlin", *horizon)) == 2
    bounded = span("20260301T090000", "20260301T100000", "daily", repeat_until="2026-03-03")
    got = span_occurrences(bounded, "UTC", utc(2026, 3, 1), utc(2026, 4, 1))
    assert [s.day for s, _ in got] == [1, 2, 3]  # the last date included, dashes or not


def test_all_day_entries_cover_whole_days_in_the_zone() -> None:
    holiday = span("20261224T090000", "20261226T170000", "yearly", all_day="true")
    got = span_occurrences(holiday, "Europe/Berlin", utc(2027, 1, 1), utc(2028, 1, 1))
    assert got == [(utc(2027, 12, 23, 23), utc(2027, 12, 26, 23))]  # 24-26 Dec, CET
    one_day = span("20260704T000000", "20260704T235959", "", all_day="true")
    got = span_occurrences(one_day, "America/New_York", utc(2026, 7, 1), utc(2026, 8, 1))
    assert got == [(utc(2026, 7, 4, 4), utc(2026, 7, 5, 4))]  # EDT midnight to midnight


def test_days_of_week_digits_start_on_monday_and_floating_is_utc() -> None:
    entry = span("20260105T060000", "20260105T070000", "weekly", days_of_week="153")
    got = span_occurrences(entry, "Floating", utc(2026, 1, 5), utc(2026, 1, 12))
    assert [(s.strftime("%a"), s.hour) for s, _ in got] == [("Mon", 6), ("Wed", 6), ("Fri", 6)]


def test_an_unknown_time_zone_needs_a_human() -> None:
    with pytest.raises(NeedsHuman, match="Mars/Olympus"):
        span_occurrences(SATURDAY_NIGHT, "Mars/Olympus", utc(2026, 1, 1), utc(2026, 2, 1))


# -- unit: which schedules apply (responses) -------------------------------------------------
def tables(rows: dict[str, list[dict[str, str]]], calls: list[dict[str, str]]) -> Any:
    """A Table API answer per table; `filters[table]` decides rows from the query."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        table = TABLE.match(str(request.url))[1]  # type: ignore[index]
        params = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        calls.append({"table": table, **params})
        fields = params["sysparm_fields"].split(",")
        result = [{f: r.get(f, "") for f in fields} for r in rows.get(table, [])]
        return 200, {"Content-Type": "application/json"}, json.dumps({"result": result})

    return answer


CONFIG = Settings.model_validate({"url": BASE, "user": "svc", "password": "pw"})
RELEASE = Release(
    id="rel-1",
    service="payments",
    version="1",
    impact=Impact(cis=[ConfigurationItem(id=i, name=i, system="servicenow") for i in "ab"]),
)


def unit_client() -> ServiceNowClient:
    return ServiceNowClient(BASE, "svc", SecretStr("pw"), attempts=2, sleep=lambda s: None)


@responses.activate
def test_a_class_condition_is_asked_of_the_instance_scoped_to_the_cis() -> None:
    calls: list[dict[str, str]] = []
    rows = {
        "cmn_schedule_blackout": [{
            "sys_id": "bo", "name": "Linux freeze", "time_zone": "UTC",
            "applies_to": "cmdb_ci_server", "condition": "os=Linux^NQname=b^EQ",
        }],
        "cmdb_ci_server": [{"sys_id": "b"}],
        "cmn_schedule_span": [{"schedule": "bo", "start_date_time": "20260701T000000",
                               "end_date_time": "20260702T000000", "repeat_type": ""}],
    }  # fmt: skip
    responses.add_callback(responses.GET, TABLE, callback=tables(rows, calls))

    got = blackouts(unit_client(), CONFIG, RELEASE, utc(2026, 6, 1), utc(2026, 8, 1))

    assert [(f.name, f.start, f.end, f.source) for f in got] == [
        ("Linux freeze", utc(2026, 7, 1), utc(2026, 7, 2), "servicenow")
    ]
    assert [c["table"] for c in calls] == [
        "cmn_schedule_blackout", "cmdb_ci_server", "cmn_schedule_span",
    ]  # fmt: skip
    assert calls[1]["sysparm_query"] == "sys_idINa,b^os=Linux^NQsys_idINa,b^name=b"
    assert calls[1]["sysparm_fields"] == "sys_id"
    assert calls[2]["sysparm_query"] == "scheduleINbo"
    assert all(c["sysparm_exclude_reference_link"].lower() == "true" for c in calls)


@responses.activate
def test_schedules_of_other_cis_classes_and_unscoped_maintenance_do_not_apply() -> None:
    calls: list[dict[str, str]] = []
    rows = {
        "cmn_schedule_maintenance": [
            {"sys_id": "m1", "name": "Other CI", "cmdb_ci": "zzz"},
            {"sys_id": "m2", "name": "Everything", "applies_to": "", "cmdb_ci": ""},
            {"sys_id": "m3", "name": "Windows", "applies_to": "cmdb_ci_win_server"},
        ],
        "cmdb_ci_win_server": [],
        "cmdb_ci": [],
    }
    responses.add_callback(responses.GET, TABLE, callback=tables(rows, calls))
    assert (
        maintenance_windows(unit_client(), CONFIG, RELEASE, utc(2026, 1, 1), utc(2027, 1, 1)) == []
    )
    assert "cmn_schedule_span" not in [c["table"] for c in calls]


@responses.activate
def test_a_cis_own_maintenance_schedule_field_is_used() -> None:
    calls: list[dict[str, str]] = []
    rows = {
        "cmn_schedule_maintenance": [],
        "cmdb_ci": [{"sys_id": "a", "maintenance_schedule": "ms"}],
        "cmn_schedule": [{"sys_id": "ms", "name": "Sunday", "time_zone": "Europe/London"}],
        "cmn_schedule_span": [{"schedule": "ms", "start_date_time": "20260104T060000",
                               "end_date_time": "20260104T080000", "repeat_type": "weekly",
                               "days_of_week": "7"}],
    }  # fmt: skip
    responses.add_callback(responses.GET, TABLE, callback=tables(rows, calls))
    got = maintenance_windows(unit_client(), CONFIG, RELEASE, utc(2026, 7, 1), utc(2026, 7, 13))
    assert [(w.name, w.start, w.end) for w in got] == [
        ("Sunday", utc(2026, 7, 5, 5), utc(2026, 7, 5, 7)),
        ("Sunday", utc(2026, 7, 12, 5), utc(2026, 7, 12, 7)),
    ]
    ci_call = next(c for c in calls if c["table"] == "cmdb_ci")
    assert ci_call["sysparm_query"] == "sys_idINa,b^maintenance_scheduleISNOTEMPTY"


# -- integration: the seeded schedules over HTTP --------------------------------------------
@pytest.mark.integration
def test_year_end_blackout_from_the_seeded_schedule(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    release = release.model_copy(update={"impact": plugin.identify_impact(release)})
    snow.clear_log()

    got = plugin.freeze_periods(release, utc(2026, 11, 1), utc(2027, 3, 1))

    assert [(f.name, f.start, f.end, f.source) for f in got] == [
        ("Year-end freeze", utc(2026, 12, 14, 23), utc(2027, 1, 5, 23), "servicenow")
    ]
    assert "year-end peak" in got[0].reason
    assert len(snow.requests_to("GET", "/api/now/table/")) <= 3  # service CI, schedules, spans
    assert plugin.freeze_periods(release, utc(2027, 2, 1), utc(2027, 3, 1)) == []


def hook_host(snow: ServiceNowSandbox, ci: str) -> PluginHost:
    """The plugin loaded as the core loads it, for a service whose CI is `ci`."""
    return load_plugins(settings_from_mapping({
        "plugins": {"enabled": ["servicenow"], "servicenow": {
            "url": snow.url, "user": "sandbox", "password": "sandbox"}},
        "services": {"payments": {"ci": ci}},
    }))  # fmt: skip


def hook_freezes(host: PluginHost, release: Release, start: datetime, end: datetime) -> list[Any]:
    return [f for found in host.hook.freeze_periods(release=release, start=start, end=end)
            for f in found if f.source == "servicenow"]  # fmt: skip


def hook_windows(host: PluginHost, release: Release, start: datetime, end: datetime) -> list[Any]:
    return [w for found in host.hook.maintenance_windows(release=release, start=start, end=end)
            for w in found if w.source == "servicenow"]  # fmt: skip


@pytest.mark.integration
def test_without_an_impact_the_hook_uses_the_service_ci_and_its_neighbours(
    snow: ServiceNowSandbox, make_release: Callable[..., Release]
) -> None:
    host = hook_host(snow, "payments-api")
    release = make_release()  # no impact: the blackout sits on the parent service
    got = hook_freezes(host, release, utc(2026, 12, 1), utc(2027, 1, 1))
    assert [f.name for f in got] == ["Year-end freeze"]
    windows = hook_windows(host, release, utc(2026, 10, 20), utc(2026, 10, 27))
    assert [(w.name, w.start) for w in windows] == [
        ("Payments weekly maintenance", utc(2026, 10, 24, 20))
    ]


@pytest.mark.integration
def test_the_hook_uses_the_impact_of_step_8_and_a_ci_named_by_sys_id(
    snow: ServiceNowSandbox, make_release: Callable[..., Release]
) -> None:
    api = snow.record("cmdb_ci", "payments-api")["sys_id"]
    host = hook_host(snow, api)
    release = make_release()
    [impact] = [i for i in host.hook.identify_impact(release=release) if i is not None]
    assert impact.cis[0].id == api
    release = release.model_copy(update={"impact": impact})
    snow.clear_log()

    windows = hook_windows(host, release, utc(2026, 10, 20), utc(2026, 11, 2))
    freezes = hook_freezes(host, release, utc(2026, 12, 1), utc(2027, 1, 1))

    assert [(w.start, w.end) for w in windows] == [
        (utc(2026, 10, 24, 20), utc(2026, 10, 25, 0)),
        (utc(2026, 10, 31, 21), utc(2026, 11, 1, 1)),
    ]
    assert [f.name for f in freezes] == ["Year-end freeze"]
    tables = [r.path.rsplit("/", 1)[1] for r in snow.requests_to("GET", "/api/now/table/")]
    assert tables == [  # no CI lookup, no walk: the impact is known
        "cmn_schedule_maintenance", "cmdb_ci", "cmn_schedule_span",
        "cmn_schedule_blackout", "cmn_schedule_span",
    ]  # fmt: skip


@pytest.mark.integration
def test_condition_schedules_and_a_cis_own_maintenance_schedule_through_the_hook(
    snow: ServiceNowSandbox, make_release: Callable[..., Release]
) -> None:
    host = hook_host(snow, "payments-api")
    # cmn_schedule_condition: a CI class and a condition on it (Source "CI Class")
    snow.insert("cmn_schedule_maintenance", name="Linux patch nights", time_zone="UTC",
                applies_to="cmdb_ci_linux_server", condition="nameSTARTSWITHpay-app")  # fmt: skip
    snow.insert("cmn_schedule_span", schedule="Linux patch nights", name="Tuesday",
                start_date_time="20260106T010000", end_date_time="20260106T030000",
                repeat_type="weekly", days_of_week="2")  # fmt: skip
    snow.insert("cmn_schedule_maintenance", name="Windows patch nights", time_zone="UTC",
                applies_to="cmdb_ci_linux_server", condition="nameSTARTSWITHwin-")  # fmt: skip
    snow.insert("cmn_schedule_span", schedule="Windows patch nights", name="Wednesday",
                start_date_time="20260107T010000", end_date_time="20260107T030000",
                repeat_type="weekly", days_of_week="3")  # fmt: skip
    # a CI's own maintenance_schedule reference (a plain cmn_schedule)
    own = snow.insert("cmn_schedule", name="DB host window", time_zone="Europe/London")
    snow.insert("cmn_schedule_span", schedule="DB host window", name="Sunday",
                start_date_time="20260104T060000", end_date_time="20260104T080000",
                repeat_type="weekly", days_of_week="7", repeat_until="00000000")  # fmt: skip
    with snow.lock:
        snow.store.find("cmdb_ci", "pay-db-01")["maintenance_schedule"] = own["sys_id"]  # type: ignore[index]
    # Source "Change Request": applies to change requests, so to every release's freezes
    snow.insert("cmn_schedule_blackout", name="Board meeting freeze", time_zone="UTC",
                applies_to="change_request", condition="type=normal")  # fmt: skip
    snow.insert("cmn_schedule_span", schedule="Board meeting freeze", name="Day",
                start_date_time="20260708T000000", end_date_time="20260708T235959",
                all_day="true")  # fmt: skip
    release = make_release()
    release = release.model_copy(update={"impact": next(
        i for i in host.hook.identify_impact(release=release) if i is not None)})  # fmt: skip

    windows = hook_windows(host, release, utc(2026, 7, 5), utc(2026, 7, 13))
    freezes = hook_freezes(host, release, utc(2026, 7, 1), utc(2026, 8, 1))

    assert sorted(
        (w.name, w.start) for w in windows if w.name != "Payments weekly maintenance"
    ) == [
        ("DB host window", utc(2026, 7, 5, 5)),  # 06:00 BST
        ("DB host window", utc(2026, 7, 12, 5)),
        ("Linux patch nights", utc(2026, 7, 7, 1)),
    ]
    assert [(f.name, f.start, f.end) for f in freezes] == [
        ("Board meeting freeze", utc(2026, 7, 8), utc(2026, 7, 9))
    ]


@pytest.mark.integration
def test_another_service_is_not_frozen_by_the_payments_blackout(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    other = snow.insert("cmdb_ci_appl", name="ledger-api")
    impact = Impact(cis=[ConfigurationItem(id=other["sys_id"], name="ledger-api",
                                           system="servicenow")])  # fmt: skip
    release = make_release(service="ledger", impact=impact)
    assert plugin.freeze_periods(release, utc(2026, 12, 1), utc(2027, 1, 31)) == []


@pytest.mark.integration
def test_weekly_maintenance_across_the_dst_change(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    release = make_release()
    release = release.model_copy(update={"impact": plugin.identify_impact(release)})
    got = plugin.maintenance_windows(release, utc(2026, 10, 20), utc(2026, 11, 2))
    assert [(w.name, w.start, w.end) for w in got] == [
        ("Payments weekly maintenance", utc(2026, 10, 24, 20), utc(2026, 10, 25, 0)),
        ("Payments weekly maintenance", utc(2026, 10, 31, 21), utc(2026, 11, 1, 1)),
    ]


@pytest.mark.integration
def test_a_class_and_condition_blackout_in_the_sandbox(
    snow: ServiceNowSandbox, plugin: ServiceNowPlugin, make_release: Callable[..., Release]
) -> None:
    snow.insert("cmn_schedule_blackout", name="DB hosts patch freeze", time_zone="UTC",
                applies_to="cmdb_ci_server", condition="nameSTARTSWITHpay-db")  # fmt: skip
    snow.insert("cmn_schedule_span", schedule="DB hosts patch freeze", name="July",
                start_date_time="20260701T000000", end_date_time="20260708T000000")  # fmt: skip
    release = make_release()
    release = release.model_copy(update={"impact": plugin.identify_impact(release)})
    got = plugin.freeze_periods(release, utc(2026, 6, 1), utc(2026, 8, 1))
    assert [(f.name, f.start, f.end) for f in got] == [
        ("DB hosts patch freeze", utc(2026, 7, 1), utc(2026, 7, 8))
    ]
