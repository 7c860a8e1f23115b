"""Manual approval: the decision given with `itsm-bridge release approve` (step 7)."""

from __future__ import annotations

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Approval, Release


@hookimpl(trylast=True)
def approval_status(release: Release) -> Approval | None:
    """The manual decision stored on the release, else pending.

    A standard change is pre-approved by definition (ITIL), so it needs no decision.
    """
    if release.approval is not None:
        return release.approval
    if release.type == "standard":
        return Approval(status="approved", by="itsm-bridge", comment="standard change")
    return Approval(status="pending")
