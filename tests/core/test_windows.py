"""Tests for maintenance windows, freezes and slot finding (itsm_bridge.windows)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from itsm_bridge.windows import (
    Freeze,
    Slot,
    Window,
    earliest_slot,
    find_slot,
    freeze_period,
    maintenance_windows,
    parse_duration,
)

BERLIN = "Europe/Berlin"
WEEKLY = "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0"
H4 = timedelta(hours=4)


def z(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)


def weekly(start: datetime, end: datetime) -> list[Window]:
    return maintenance_windows("Weekly", WEEKLY, BERLIN, H4, start, end)


YEAR_END = freeze_period("Year end", date(2026, 12, 15), date(2027, 1, 5), BERLIN)


# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4h", timedelta(hours=4)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("45s", timedelta(seconds=45)),
        ("1d2h", timedelta(days=1, hours=2)),
        (" 4H ", timedelta(hours=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0h", "0m0s", "4", "h", "4x", "30m1h", "-1h", "1.5h", "4 h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="1h30m"):
        parse_duration(text)


# --- maintenance_windows --------------------------------------------------------------------


def test_weekly_berlin_winter_and_summer_in_utc() -> None:
    winter = weekly(z(2026, 1, 1), z(2026, 1, 15))
    assert [(w.start, w.end) for w in winter] == [
        (z(2026, 1, 3, 21), z(2026, 1, 4, 1)),
        (z(2026, 1, 10, 21), z(2026, 1, 11, 1)),
    ]
    summer = weekly(z(2026, 7, 1), z(2026, 7, 8))
    assert [(w.start, w.end) for w in summer] == [(z(2026, 7, 4, 20), z(2026, 7, 5, 0))]
    assert all(w.name == "Weekly" and w.source == "config" for w in winter + summer)
    assert all(w.start.tzinfo is UTC for w in winter + summer)


def test_occurrence_open_at_range_start_is_included_and_end_is_exclusive() -> None:
    # 2026-01-03 21:00Z .. 2026-01-04 01:00Z is open at 23:00Z
    got = weekly(z(2026, 1, 3, 23), z(2026, 1, 10, 21))
    assert [w.start for w in got] == [z(2026, 1, 3, 21)]
    # a window ending exactly at the range start does not overlap it
    assert weekly(z(2026, 1, 4, 1), z(2026, 1, 10, 21)) == []


def test_spring_forward_gap_shifts_forward() -> None:
    # 2026-03-29 02:30 does not exist in Berlin; it becomes 03:30 CEST = 01:30Z
    got = maintenance_windows(
        "Night",
        "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=30",
        BERLIN,
        timedelta(hours=1),
        z(2026, 3, 20),
        z(2026, 4, 6),
    )
    assert [w.start for w in got] == [
        z(2026, 3, 22, 1, 30),
        z(2026, 3, 29, 1, 30),
        z(2026, 4, 5, 0, 30),
    ]
    assert got[1].start.astimezone(ZoneInfo(BERLIN)).hour == 3


def test_fall_back_overlap_takes_first_occurrence() -> None:
    # 2026-10-25 02:30 happens twice in Berlin; the first (CEST, 00:30Z) is used
    got = maintenance_windows(
        "Night",
        "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=30",
        BERLIN,
        timedelta(hours=1),
        z(2026, 10, 17),
        z(2026, 11, 2),
    )
    assert [w.start for w in got] == [
        z(2026, 10, 18, 0, 30),
        z(2026, 10, 25, 0, 30),
        z(2026, 11, 1, 1, 30),
    ]


def test_duration_is_elapsed_time_across_dst_changes() -> None:
    # autumn: Sunday 00:00 CEST + 4 real hours = 02:00Z = 03:00 CET (3 wall-clock hours)
    autumn = maintenance_windows(
        "Sun", "FREQ=WEEKLY;BYDAY=SU", BERLIN, H4, z(2026, 10, 24), z(2026, 10, 26)
    )
    assert [(w.start, w.end) for w in autumn] == [(z(2026, 10, 24, 22), z(2026, 10, 25, 2))]
    assert autumn[0].end.astimezone(ZoneInfo(BERLIN)).hour == 3
    # spring: Saturday 23:00 CET + 4 real hours = 02:00Z = 04:00 CEST (5 wall-clock hours)
    spring = maintenance_windows(
        "Sat", "FREQ=WEEKLY;BYDAY=SA;BYHOUR=23", BERLIN, H4, z(2026, 3, 27), z(2026, 3, 30)
    )
    assert [(w.start, w.end) for w in spring] == [(z(2026, 3, 28, 22), z(2026, 3, 29, 2))]
    assert spring[0].end.astimezone(ZoneInfo(BERLIN)).hour == 4
    # the configured weekly window on the autumn weekend: 22:00 CEST = 20:00Z, 4h later
    assert [(w.start, w.end) for w in weekly(z(2026, 10, 24), z(2026, 10, 25))] == [
        (z(2026, 10, 24, 20), z(2026, 10, 25, 0))
    ]


def test_missing_byminute_and_bysecond_default_to_zero() -> None:
    got = maintenance_windows(
        "Daily", "FREQ=DAILY;BYHOUR=3", "UTC", H4, z(2026, 5, 1, 12, 34, 56), z(2026, 5, 3)
    )
    assert [w.start for w in got] == [z(2026, 5, 2, 3)]


def test_southern_hemisphere_and_new_york() -> None:
    # Sydney: AEDT (+11) in January, AEST (+10) in July
    jan = maintenance_windows("W", WEEKLY, "Australia/Sydney", H4, z(2026, 1, 1), z(2026, 1, 8))
    jul = maintenance_windows("W", WEEKLY, "Australia/Sydney", H4, z(2026, 7, 1), z(2026, 7, 8))
    assert [w.start for w in jan] == [z(2026, 1, 3, 11)]
    assert [w.start for w in jul] == [z(2026, 7, 4, 12)]
    # New York: EST (-5) in January, EDT (-4) in July
    jan = maintenance_windows("W", WEEKLY, "America/New_York", H4, z(2026, 1, 1), z(2026, 1, 8))
    jul = maintenance_windows("W", WEEKLY, "America/New_York", H4, z(2026, 7, 1), z(2026, 7, 8))
    assert [w.start for w in jan] == [z(2026, 1, 4, 3)]
    assert [w.start for w in jul] == [z(2026, 7, 5, 2)]


def test_rrule_with_explicit_dtstart() -> None:
    rule = "DTSTART:20260103T220000\nRRULE:FREQ=WEEKLY;INTERVAL=2"
    got = maintenance_windows("Biweekly", rule, BERLIN, H4, z(2026, 1, 1), z(2026, 2, 1))
    assert [w.start for w in got] == [z(2026, 1, 3, 21), z(2026, 1, 17, 21), z(2026, 1, 31, 21)]
    # the same instant written in UTC or with TZID gives the same windows
    for alt in ("DTSTART:20260103T210000Z", "DTSTART;TZID=America/New_York:20260103T160000"):
        other = maintenance_windows(
            "Biweekly",
            alt + "\nRRULE:FREQ=WEEKLY;INTERVAL=2",
            BERLIN,
            H4,
            z(2026, 1, 1),
            z(2026, 2, 1),
        )
        assert other == got
    # COUNT and UTC UNTIL are honoured
    counted = maintenance_windows(
        "Three",
        "DTSTART:20260103T220000\nRRULE:FREQ=WEEKLY;COUNT=3",
        BERLIN,
        H4,
        z(2026, 1, 1),
        z(2026, 6, 1),
    )
    assert len(counted) == 3
    until = maintenance_windows(
        "Until",
        "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;UNTIL=20260110T210000Z",
        BERLIN,
        H4,
        z(2026, 1, 1),
        z(2026, 6, 1),
    )
    assert [w.start for w in until] == [z(2026, 1, 3, 21), z(2026, 1, 10, 21)]


def test_interval_one_needs_no_dtstart() -> None:
    got = maintenance_windows(
        "Daily",
        "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=22",
        BERLIN,
        timedelta(hours=1),
        z(2026, 1, 1),
        z(2026, 1, 3),
    )
    assert [w.start for w in got] == [z(2026, 1, 1, 21), z(2026, 1, 2, 21)]
    with pytest.raises(ValueError, match="must be a timezone-aware datetime"):
        maintenance_windows("Daily", "FREQ=DAILY", BERLIN, H4, "2026-01-01", z(2026, 1, 3))  # type: ignore[arg-type]


def test_last_saturday_of_month() -> None:
    got = maintenance_windows(
        "Monthly", "FREQ=MONTHLY;BYDAY=-1SA;BYHOUR=22", BERLIN, H4, z(2026, 1, 1), z(2026, 3, 31)
    )
    assert [w.start for w in got] == [z(2026, 1, 31, 21), z(2026, 2, 28, 21), z(2026, 3, 28, 21)]


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=SOMETIMES;BYDAY=SA",
        "BYDAY=SA;BYHOUR=22",
        "not a rule",
        "FREQ=WEEKLY;BYDAY=XX",
        "DTSTART:garbage\nRRULE:FREQ=WEEKLY;BYDAY=SA",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=SA",  # phase undefined without DTSTART
        "FREQ=DAILY;INTERVAL=10;BYHOUR=22",
        "FREQ=DAILY;COUNT=3;BYHOUR=22",
        "FREQ=WEEKLY;BYHOUR=22",  # weekday would come from the anchor
    ],
)
def test_bad_rrule(rule: str) -> None:
    with pytest.raises(ValueError, match="RRULE"):
        maintenance_windows("Bad", rule, BERLIN, H4, z(2026, 1, 1), z(2026, 2, 1))


def test_maintenance_windows_argument_errors() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly(datetime(2026, 1, 1), z(2026, 2, 1))
    with pytest.raises(ValueError, match="after start"):
        weekly(z(2026, 2, 1), z(2026, 1, 1))
    with pytest.raises(ValueError, match="time zone"):
        maintenance_windows("W", WEEKLY, "Mars/Olympus", H4, z(2026, 1, 1), z(2026, 2, 1))
    with pytest.raises(ValueError, match="duration"):
        maintenance_windows("W", WEEKLY, BERLIN, timedelta(0), z(2026, 1, 1), z(2026, 2, 1))


# --- freezes and data classes ---------------------------------------------------------------


def test_freeze_whole_days_end_inclusive() -> None:
    assert (YEAR_END.start, YEAR_END.end) == (z(2026, 12, 14, 23), z(2027, 1, 5, 23))
    single = freeze_period("Day", date(2026, 7, 1), date(2026, 7, 1), BERLIN, source="snow")
    assert (single.start, single.end, single.source) == (
        z(2026, 6, 30, 22),
        z(2026, 7, 1, 22),
        "snow",
    )
    # the day of the spring change is 23 hours long
    dst = freeze_period("DST", date(2026, 3, 29), date(2026, 3, 29), BERLIN)
    assert dst.end - dst.start == timedelta(hours=23)
    with pytest.raises(ValueError, match="before start"):
        freeze_period("Bad", date(2026, 1, 5), date(2026, 1, 4), BERLIN)


def test_window_validation_and_predicates() -> None:
    w = Window("W", datetime(2026, 1, 3, 22, tzinfo=ZoneInfo(BERLIN)), z(2026, 1, 4, 1))
    assert w.start == z(2026, 1, 3, 21) and w.start.tzinfo is UTC
    assert w.contains(z(2026, 1, 3, 21), z(2026, 1, 4, 1))
    assert not w.contains(z(2026, 1, 3, 20), z(2026, 1, 3, 22))
    assert w.overlaps(z(2026, 1, 3, 20), z(2026, 1, 3, 22))
    assert not w.overlaps(z(2026, 1, 4, 1), z(2026, 1, 4, 2))
    with pytest.raises(ValueError):
        Window("W", z(2026, 1, 2), z(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Window("W", datetime(2026, 1, 1), z(2026, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        w.overlaps(datetime(2026, 1, 1), z(2026, 1, 2))
    with pytest.raises(ValueError):
        Freeze("F", z(2026, 1, 1), z(2026, 1, 1))


# --- earliest_slot --------------------------------------------------------------------------


def test_earliest_slot_first_window_unsorted_input() -> None:
    windows = list(reversed(weekly(z(2026, 1, 1), z(2026, 2, 1))))
    slot = earliest_slot(windows, [], z(2026, 1, 5), timedelta(hours=2))
    assert slot == Slot(z(2026, 1, 10, 21), z(2026, 1, 10, 23), windows[-2])


def test_window_shorter_than_duration_is_skipped() -> None:
    short = Window("Short", z(2026, 1, 5, 20), z(2026, 1, 5, 21))
    long = Window("Long", z(2026, 1, 6, 20), z(2026, 1, 6, 23))
    slot = earliest_slot([short, long], [], z(2026, 1, 1), timedelta(hours=2))
    assert slot is not None and slot.window == long and slot.start == z(2026, 1, 6, 20)
    assert earliest_slot([short], [], z(2026, 1, 1), timedelta(hours=2)) is None


def test_window_open_now_used_from_not_before() -> None:
    windows = weekly(z(2026, 1, 3, 22), z(2026, 1, 20))
    slot = earliest_slot(windows, [], z(2026, 1, 3, 22, 15), timedelta(hours=2))
    assert slot is not None
    assert (slot.start, slot.end) == (z(2026, 1, 3, 22, 15), z(2026, 1, 4, 0, 15))
    # too little of the open window left: next week
    slot = earliest_slot(windows, [], z(2026, 1, 3, 23, 30), timedelta(hours=2))
    assert slot is not None and slot.start == z(2026, 1, 10, 21)


def test_freeze_overlapping_window_start_pushes_slot() -> None:
    windows = weekly(z(2026, 1, 1), z(2026, 1, 20))
    freeze = Freeze("Batch", z(2026, 1, 3, 20), z(2026, 1, 3, 22))
    slot = earliest_slot(windows, [freeze], z(2026, 1, 1), timedelta(hours=2))
    assert slot is not None
    assert (slot.start, slot.end, slot.broken_freezes) == (z(2026, 1, 3, 22), z(2026, 1, 4), ())
    # the rest of the window is too short for 3h30: next week
    slot = earliest_slot(windows, [freeze], z(2026, 1, 1), timedelta(hours=3, minutes=30))
    assert slot is not None and slot.start == z(2026, 1, 10, 21)


def test_freeze_covering_window_skips_to_next_week() -> None:
    windows = weekly(z(2026, 1, 1), z(2026, 1, 20))
    freeze = freeze_period("Sat", date(2026, 1, 3), date(2026, 1, 4), BERLIN)
    slot = earliest_slot(windows, [freeze], z(2026, 1, 1), H4)
    assert slot is not None and (slot.start, slot.end) == (z(2026, 1, 10, 21), z(2026, 1, 11, 1))


def test_release_requested_inside_year_end_freeze() -> None:
    windows = weekly(z(2026, 12, 20), z(2027, 2, 1))
    slot = earliest_slot(windows, [YEAR_END], z(2026, 12, 20, 10), H4)
    # 2027-01-05 is a Tuesday; Saturday 2027-01-09 22:00 CET = 21:00Z
    assert slot is not None and slot.start == z(2027, 1, 9, 21)
    # a freeze ending on the local day before the window still allows it
    last_day = freeze_period("Eve", date(2027, 1, 8), date(2027, 1, 9), BERLIN)
    slot = earliest_slot(windows, [YEAR_END, last_day], z(2026, 12, 20, 10), H4)
    assert slot is not None and slot.start == z(2027, 1, 16, 21)


def test_emergency_inside_freeze() -> None:
    windows = weekly(z(2026, 12, 20), z(2027, 2, 1))
    other = Freeze("Audit", z(2026, 12, 20, 11), z(2026, 12, 20, 12), source="servicenow")
    later = Freeze("Later", z(2026, 12, 21), z(2026, 12, 22))
    slot = earliest_slot(
        windows, [later, other, YEAR_END], z(2026, 12, 20, 10), timedelta(hours=2), emergency=True
    )
    assert slot == Slot(z(2026, 12, 20, 10), z(2026, 12, 20, 12), None, (YEAR_END, other), True)


def test_emergency_inside_window_and_partly_outside() -> None:
    windows = weekly(z(2026, 1, 1), z(2026, 1, 20))
    inside = earliest_slot(windows, [], z(2026, 1, 3, 22), H4 / 4, emergency=True)
    assert inside == Slot(z(2026, 1, 3, 22), z(2026, 1, 3, 23), windows[0], (), False)
    partly = earliest_slot(windows, [], z(2026, 1, 3, 23), H4, emergency=True)
    assert partly is not None and partly.outside_window and partly.window is None


def test_adjacent_windows_from_two_sources_are_merged() -> None:
    config = Window("Weekly", z(2026, 1, 3, 20), z(2026, 1, 3, 22))
    snow = Window("CAB slot", z(2026, 1, 3, 22), z(2026, 1, 4, 2), source="servicenow")
    slot = earliest_slot([snow, config], [], z(2026, 1, 1), timedelta(hours=3))
    assert slot is not None
    assert (slot.start, slot.end) == (z(2026, 1, 3, 20), z(2026, 1, 3, 23))
    assert slot.window is not None
    assert (slot.window.start, slot.window.end) == (z(2026, 1, 3, 20), z(2026, 1, 4, 2))
    assert slot.window.source == "config + servicenow"
    # the merged span holds exactly 6 hours, not 7
    six = earliest_slot([config, snow], [], z(2026, 1, 1), timedelta(hours=6))
    assert six is not None and six.end == z(2026, 1, 4, 2)
    assert earliest_slot([config, snow], [], z(2026, 1, 1), timedelta(hours=7)) is None
    # windows from two sources that overlap (rather than touch) merge too
    overlapping = Window("Overlap", z(2026, 1, 3, 21), z(2026, 1, 4, 3), source="servicenow")
    slot = earliest_slot([config, overlapping], [], z(2026, 1, 1), timedelta(hours=7))
    assert slot is not None and slot.end == z(2026, 1, 4, 3)
    assert slot.window is not None and slot.window.name == "Weekly + Overlap"


def test_earliest_slot_rejects_naive_and_bad_duration() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        earliest_slot([], [], datetime(2026, 1, 1), H4)
    with pytest.raises(ValueError, match="duration"):
        earliest_slot([], [], z(2026, 1, 1), timedelta(0))


# --- find_slot ------------------------------------------------------------------------------


def test_find_slot_grows_horizon() -> None:
    calls: list[timedelta] = []
    only_in_april = "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=10;BYHOUR=22"

    def windows_fn(start: datetime, end: datetime) -> list[Window]:
        calls.append(end - start)
        return maintenance_windows("April", only_in_april, BERLIN, H4, start, end)

    slot = find_slot(windows_fn, lambda s, e: [], z(2026, 1, 1), H4)
    assert slot is not None and slot.start == z(2026, 4, 10, 20)
    assert calls == [timedelta(days=35), timedelta(days=70), timedelta(days=140)]

    calls.clear()
    assert find_slot(windows_fn, lambda s, e: [], z(2026, 4, 11), H4) is not None
    assert calls[-1] == timedelta(days=400)  # 35, 70, 140, 280, then capped at max_horizon

    calls.clear()
    no_slot = find_slot(
        windows_fn, lambda s, e: [], z(2026, 4, 11), H4, max_horizon=timedelta(days=200)
    )
    assert no_slot is None
    assert calls == [timedelta(days=d) for d in (35, 70, 140, 200)]


def test_find_slot_fetches_freezes_beyond_the_horizon_edge() -> None:
    edge = Window("Edge", z(2026, 2, 4, 22), z(2026, 2, 5, 4))  # horizon ends 02-05 00:00Z
    later = Window("Later", z(2026, 2, 10, 20), z(2026, 2, 11))
    freeze = Freeze("Night batch", z(2026, 2, 5, 1), z(2026, 2, 5, 3))

    def windows_fn(start: datetime, end: datetime) -> list[Window]:
        return [w for w in (edge, later) if w.overlaps(start, end)]

    def freezes_fn(start: datetime, end: datetime) -> list[Freeze]:
        return [f for f in (freeze,) if f.overlaps(start, end)]

    slot = find_slot(windows_fn, freezes_fn, z(2026, 1, 1), H4)
    assert slot is not None and slot.window == later and slot.start == z(2026, 2, 10, 20)
    emergency = find_slot(windows_fn, freezes_fn, z(2026, 2, 5), H4, emergency=True)
    assert emergency is not None and emergency.broken_freezes == (freeze,)
    assert emergency.start == z(2026, 2, 5) and emergency.window == edge
