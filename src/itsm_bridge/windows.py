"""Maintenance windows, change freezes and slot finding (pure logic, no I/O).

All datetimes are timezone-aware (naive ones raise ``ValueError``); results are in UTC.
Local zones are IANA names (:mod:`zoneinfo`); wall-clock times become instants with ``fold=0``:

* a time that does not exist (DST gap, e.g. 02:30 on a spring-forward night in Berlin) is
  shifted forward by the length of the gap (02:30 -> 03:30 CEST, 01:30Z);
* an ambiguous time (DST overlap, autumn) is the first of its two occurrences (summer time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rruleset, rrulestr

__all__ = [
    "Freeze",
    "Slot",
    "Window",
    "earliest_slot",
    "find_slot",
    "freeze_period",
    "maintenance_windows",
    "parse_duration",
]

_DURATION_RE = re.compile(
    "".join(f"(?:(?P<{unit}>\\d+){unit[0]})?" for unit in ("days", "hours", "minutes", "seconds"))
)
_DTSTART_RE = re.compile(r"DTSTART(?:;TZID=([^:;]+))?:(\d{8}T\d{6})(Z?)", re.IGNORECASE)
_UNTIL_RE = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)
_ICAL = "%Y%m%dT%H%M%S"
_DAY_SELECTORS = ("BYDAY=", "BYMONTHDAY=", "BYYEARDAY=", "BYWEEKNO=", "BYEASTER=")


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``4h``, ``90m``, ``1h30m``, ``2d``, ``45s`` or ``1d2h``.

    Units must appear in the order d, h, m, s. Zero, empty or malformed input raises
    ``ValueError``.
    """
    match = _DURATION_RE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is not None:
        result = timedelta(**{unit: int(number) for unit, number in match.groupdict("0").items()})
        if result:
            return result
    raise ValueError(
        f"invalid duration {text!r}: use a positive duration of whole numbers with units "
        "d, h, m, s in that order, e.g. '4h', '90m', '1h30m', '2d', '45s', '1d2h'"
    )


def _utc(value: datetime, what: str) -> datetime:
    """Return ``value`` in UTC; raise ``ValueError`` if it is naive or not a datetime."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    """Resolve an IANA zone name, raising ``ValueError`` for unknown names."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _check_duration(duration: timedelta) -> None:
    if not isinstance(duration, timedelta) or duration <= timedelta(0):
        raise ValueError(f"duration must be a positive timedelta, got {duration!r}")


def _local_to_utc(naive: datetime, zone: ZoneInfo) -> datetime:
    """Localise a naive wall-clock time (fold=0: gap shifts forward, overlap -> first)."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _utc_to_local(value: datetime, zone: ZoneInfo) -> datetime:
    """Return the naive wall-clock time of an aware ``value`` in ``zone``."""
    return value.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class _Span:
    """Half-open ``[start, end)``; aware inputs are converted to UTC, naive ones rejected."""

    name: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start, end = _utc(self.start, "start"), _utc(self.end, "end")
        if end <= start:
            raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def contains(self, start: datetime, end: datetime) -> bool:
        """True if ``[start, end)`` lies entirely inside this span."""
        return self.start <= _utc(start, "start") and _utc(end, "end") <= self.end

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """True if ``[start, end)`` shares any instant with this span."""
        return _utc(start, "start") < self.end and self.start < _utc(end, "end")


@dataclass(frozen=True)
class Window(_Span):
    """A maintenance window ``[start, end)`` in UTC."""

    source: str = "config"


@dataclass(frozen=True)
class Freeze(_Span):
    """A change freeze, half-open ``[start, end)`` in UTC."""

    source: str = "config"
    reason: str = ""


def _compile_rule(rule: str, zone: ZoneInfo, anchor: datetime) -> rruleset:
    """Build a naive local-time rule set; ``anchor`` is the dtstart if the rule has none.

    An explicit ``DTSTART`` may be floating (local), ``Z`` (UTC) or carry ``TZID``; it is
    converted to local wall time of ``zone``. ``UNTIL=...Z`` is converted likewise.
    """

    def local_until(match: re.Match[str]) -> str:
        until = datetime.strptime(match[1], _ICAL).replace(tzinfo=UTC)
        return "UNTIL=" + _utc_to_local(until, zone).strftime(_ICAL)

    dtstart: datetime | None = None
    body: list[str] = []
    try:
        for line in (ln.strip() for ln in rule.strip().splitlines()):
            if not line.upper().startswith("DTSTART"):
                body.append(_UNTIL_RE.sub(local_until, line))
                continue
            match = _DTSTART_RE.fullmatch(line)
            if match is None or dtstart is not None:
                raise ValueError(f"unsupported DTSTART line {line!r}")
            dtstart = datetime.strptime(match[2], _ICAL)
            if match[3] or match[1]:
                source_zone = UTC if match[3] else _zone(match[1])
                dtstart = _utc_to_local(dtstart.replace(tzinfo=source_zone), zone)
        text = "\n".join(ln for ln in body if ln)
        upper = text.upper()
        if dtstart is None and (
            re.search(r"COUNT=|INTERVAL=0*(?:[2-9]|[1-9]\d)", upper)
            or (
                re.search(r"FREQ=(?:WEEKLY|MONTHLY|YEARLY)", upper)
                and not any(selector in upper for selector in _DAY_SELECTORS)
            )
        ):
            raise ValueError(
                "COUNT, INTERVAL>1, or a WEEKLY/MONTHLY/YEARLY rule without BYDAY/"
                "BYMONTHDAY/... depends on its start: add a DTSTART line"
            )
        result = rrulestr(text, dtstart=dtstart or anchor, forceset=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"invalid RRULE {rule!r}: {exc}") from exc
    assert isinstance(result, rruleset)
    return result


def maintenance_windows(
    name: str,
    rrule: str,
    timezone: str,
    duration: timedelta,
    start: datetime,
    end: datetime,
    source: str = "config",
) -> list[Window]:
    """Every occurrence of ``rrule`` (local time in ``timezone``) overlapping ``[start, end)``.

    Each occurrence lasts ``duration`` of elapsed time (so a window may span a DST change
    and end at a different UTC offset). An occurrence that began before ``start`` and has
    not ended is included. Without a ``DTSTART`` line the rule is anchored at local
    midnight, so missing BYHOUR/BYMINUTE/BYSECOND default to 0. Sorted by start, UTC.
    """
    query = _Span("query", start, end)  # validates and converts to UTC
    start, end = query.start, query.end
    _check_duration(duration)
    zone = _zone(timezone)
    lower = datetime.combine(_utc_to_local(start - duration, zone).date(), time())
    lower -= timedelta(days=1)  # margin for UTC offset differences
    upper = _utc_to_local(end, zone) + timedelta(days=1)
    rules = _compile_rule(rrule, zone, anchor=lower)
    starts = {_local_to_utc(occ, zone) for occ in rules.between(lower, upper, inc=True)}
    return [
        Window(name=name, start=s, end=s + duration, source=source)
        for s in sorted(starts)
        if s < end and s + duration > start
    ]


def freeze_period(
    name: str, start: date, end: date, timezone: str, source: str = "config"
) -> Freeze:
    """A freeze of whole days in ``timezone``, ``end`` inclusive, as a UTC :class:`Freeze`."""
    for value, what in ((start, "start"), (end, "end")):
        if isinstance(value, datetime) or not isinstance(value, date):
            raise ValueError(f"freeze {what} must be a date, got {value!r}")
    if end < start:
        raise ValueError(f"freeze {name!r}: end {end} is before start {start}")
    zone = _zone(timezone)
    return Freeze(
        name=name,
        start=_local_to_utc(datetime.combine(start, time()), zone),
        end=_local_to_utc(datetime.combine(end + timedelta(days=1), time()), zone),
        source=source,
    )


@dataclass(frozen=True)
class Slot:
    """A chosen implementation slot ``[start, end)`` in UTC."""

    start: datetime
    end: datetime
    window: Window | None
    broken_freezes: tuple[Freeze, ...] = ()
    outside_window: bool = False


def _merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Sort windows and merge those that touch or overlap; names and sources are joined."""

    def join(left: str, right: str) -> str:
        return left if right in left.split(" + ") else f"{left} + {right}"

    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: (w.start, w.end)):
        if merged and window.start <= merged[-1].end:
            last = merged.pop()
            window = Window(
                join(last.name, window.name),
                last.start,
                max(last.end, window.end),
                join(last.source, window.source),
            )
        merged.append(window)
    return merged


def earliest_slot(
    windows: Iterable[Window],
    freezes: Iterable[Freeze],
    not_before: datetime,
    duration: timedelta,
    *,
    emergency: bool = False,
) -> Slot | None:
    """The earliest slot of ``duration`` starting at or after ``not_before``.

    Normal: the slot lies inside one (merged) window and overlaps no freeze; ``None`` if the
    given windows hold none. Emergency: the slot starts at ``not_before`` regardless, lists
    the freezes it breaks, and ``outside_window`` is True unless one window contains it all.
    """
    not_before = _utc(not_before, "not_before")
    _check_duration(duration)
    merged = _merge_windows(windows)
    frozen = sorted(freezes, key=lambda f: (f.start, f.end))
    if emergency:
        end = not_before + duration
        window = next((w for w in merged if w.contains(not_before, end)), None)
        broken = tuple(f for f in frozen if f.overlaps(not_before, end))
        return Slot(not_before, end, window, broken, outside_window=window is None)
    for window in merged:
        candidate = max(window.start, not_before)
        while candidate + duration <= window.end:
            blocking = [f.end for f in frozen if f.overlaps(candidate, candidate + duration)]
            if not blocking:
                return Slot(candidate, candidate + duration, window)
            candidate = max(blocking)
    return None


def find_slot(
    calendar_windows_fn: Callable[[datetime, datetime], Iterable[Window]],
    freezes_fn: Callable[[datetime, datetime], Iterable[Freeze]],
    not_before: datetime,
    duration: timedelta,
    emergency: bool = False,
    horizon: timedelta = timedelta(days=35),
    max_horizon: timedelta = timedelta(days=400),
) -> Slot | None:
    """Find a slot asking the callables for ``[not_before, not_before + h)``, doubling ``h``.

    A slot is accepted only if it ends within the horizon asked for, so every freeze that
    could overlap it was fetched. Returns ``None`` once ``max_horizon`` has been searched.
    """
    not_before = _utc(not_before, "not_before")
    if horizon <= timedelta(0) or max_horizon <= timedelta(0):
        raise ValueError("horizon and max_horizon must be positive")
    span = min(horizon, max_horizon)
    while True:
        if emergency:
            span = max(span, duration)
        end = not_before + span
        windows, freezes = calendar_windows_fn(not_before, end), freezes_fn(not_before, end)
        slot = earliest_slot(windows, freezes, not_before, duration, emergency=emergency)
        if slot is not None and (emergency or slot.end <= end):
            return slot
        if span >= max_horizon:
            return None
        span = min(span * 2, max_horizon)
