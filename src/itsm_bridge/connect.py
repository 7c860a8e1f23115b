"""`itsm-bridge check-config --connect`: reach every enabled system once, one line each.

Each enabled plugin that implements the `check_connection` hook answers for the systems it
talks to (`models.ConnectionCheck`). A plugin whose check raises is reported as failed with the
error's first line; a plugin without the hook is listed as not checked (not a failure).
"""

from __future__ import annotations

from itsm_bridge.models import ConnectionCheck
from itsm_bridge.plugins import PluginHost


def run_checks(host: PluginHost) -> tuple[list[ConnectionCheck], list[str]]:
    """The answers of every enabled plugin's `check_connection`, and the plugins without one."""
    checks: list[ConnectionCheck] = []
    enabled = [info.name for info in host.get_plugins() if not info.default]
    implementing = set(host.implementers("check_connection"))
    for plugin in enabled:
        if plugin not in implementing:
            continue
        try:
            answers = host.call_one("check_connection", plugin)
        except Exception as exc:  # a plugin's bug must not hide the other systems' answers
            first = str(exc).splitlines()[0] if str(exc) else ""
            checks.append(
                ConnectionCheck(
                    plugin=plugin,
                    system=plugin,
                    url="",
                    ok=False,
                    detail=f"check failed: {type(exc).__name__}: {first}".rstrip(": "),
                )
            )
            continue
        for answer in answers:
            checks.extend(answer)
    return checks, [p for p in enabled if p not in implementing]


def check_line(check: ConnectionCheck) -> str:
    """`servicenow https://acme.service-now.com ok`, `... 401 check ...`, `... unreachable: ...`."""
    where = " ".join(part for part in (check.system, check.url) if part)
    if check.ok:
        return f"{where} ok" + (f" ({check.detail})" if check.detail else "")
    status = f"{check.status} " if check.status is not None else ""
    return f"{where} {status}{check.detail}".rstrip()
