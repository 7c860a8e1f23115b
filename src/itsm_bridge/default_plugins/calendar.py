"""Maintenance windows and freeze periods from the `windows` section of the configuration."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Freeze, Release, Window
from itsm_bridge.settings import BridgeSettings
from itsm_bridge.windows import freeze_period, maintenance_windows


class ConfigCalendar:
    """Answers `maintenance_windows` and `freeze_periods` from the configured calendars."""

    def __init__(self, config: BaseModel | None, settings: BridgeSettings) -> None:
        self.windows = settings.windows

    @hookimpl(trylast=True)
    def maintenance_windows(self, release: Release, start: datetime, end: datetime) -> list[Window]:
        found: list[Window] = []
        for window in self.windows.maintenance:
            found += maintenance_windows(
                window.name, window.rrule, self.windows.timezone, window.length, start, end
            )
        return found

    @hookimpl(trylast=True)
    def freeze_periods(self, release: Release, start: datetime, end: datetime) -> list[Freeze]:
        freezes = [
            freeze_period(f.name, f.start, f.end, self.windows.timezone)
            for f in self.windows.freezes
        ]
        return [f for f in freezes if f.start < end and f.end > start]


plugin = ConfigCalendar
