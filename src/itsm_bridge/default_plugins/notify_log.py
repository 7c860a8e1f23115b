"""Notifications to the log, when no notification plugin is enabled (step 15)."""

from __future__ import annotations

import logging

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Delivery, Notice, Release

log = logging.getLogger("itsm_bridge.notify")


@hookimpl(trylast=True)
def notify_stakeholders(release: Release, notice: Notice) -> list[Delivery]:
    """Log the notice (its subject, recipients and plain text): the delivery of last resort."""
    to = ", ".join(notice.recipients) or "no stakeholders configured"
    log.info("release %s: %s (to %s)\n%s", release.id, notice.subject, to, notice.text)
    return [Delivery(channel="log", target=to, ok=True)]
