"""Notifications to the log, when no notification plugin is enabled (step 15)."""

from __future__ import annotations

import logging

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Release

log = logging.getLogger("itsm_bridge.notify")


@hookimpl(trylast=True)
def notify_stakeholders(release: Release, subject: str, message: str) -> None:
    log.info("release %s (%s): %s\n%s", release.id, release.title, subject, message)
