"""Loading the Jira part of a sandbox seed into a `JiraSandbox`.

```yaml
jira:
  deployment: Server            # or Cloud
  timezone: America/New_York    # the integration user's profile zone (default UTC)
  projects:
    - key: PAY
      name: Payments
      workflows: {Bug: strict}  # issue type -> built-in name or transition list (workflows.py)
      versions: [{name: "1.0.0", description: ..., released: false, releaseDate: 2026-12-01}]
      board: {name: PAY board, sprints: [{name: PAY Sprint 1, state: active, goal: ...}]}
      issues:
        - {summary: ..., type: Story, status: Done, fixVersions: ["1.0.0"],
           sprint: PAY Sprint 1, labels: [backend], priority: Medium, description: ...}
```
Bad values raise ValueError or KeyError (the `Sandbox` turns them into a ConfigError).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from itsm_bridge_sandbox.jira import workflows
from itsm_bridge_sandbox.jira.store import STATUSES

if TYPE_CHECKING:
    from itsm_bridge_sandbox.jira.server import JiraSandbox


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not an IANA time zone") from None
    return name


def load(sandbox: JiraSandbox, data: dict[str, Any]) -> None:
    """Load `{timezone, projects: [...]}` (webhooks are not sent for seeded records)."""
    with sandbox.lock:
        if data.get("timezone"):
            sandbox.store.timezone = check_timezone(str(data["timezone"]))
        listener, sandbox.store.on_change = sandbox.store.on_change, None
        try:
            for proj in data.get("projects") or []:
                seed_project(sandbox, proj)
        finally:
            sandbox.store.on_change = listener


def seed_project(sandbox: JiraSandbox, spec: dict[str, Any]) -> None:
    store = sandbox.store
    proj = store.add_project(str(spec["key"]), str(spec.get("name") or spec["key"]))
    statuses = {s.name for s in STATUSES}
    for issue_type, workflow in (spec.get("workflows") or {}).items():
        proj.workflows[str(issue_type)] = workflows.parse(workflow, statuses)
    for v in spec.get("versions") or []:
        v = {"name": v} if isinstance(v, str) else v
        store.add_version(
            proj,
            str(v["name"]),
            description=str(v.get("description", "")),
            released=bool(v.get("released", False)),
            archived=bool(v.get("archived", False)),
            release_date=v.get("releaseDate") and str(v["releaseDate"]),
        )
    boards = spec.get("boards") or ([spec["board"]] if spec.get("board") else [])
    for b in boards:
        board = store.add_board(proj, str(b.get("name") or f"{proj.key} board"))
        for s in b.get("sprints") or []:
            store.add_sprint(
                board,
                str(s["name"]),
                str(s.get("state", "future")),
                goal=str(s.get("goal", "")),
            )
    for i in spec.get("issues") or []:
        sandbox.add_issue(
            proj.key,
            str(i["summary"]),
            status=str(i.get("status", "To Do")),
            fix_versions=i.get("fixVersions") or [],
            labels=i.get("labels") or [],
            sprint=i.get("sprint"),
            issue_type=str(i.get("type", "Story")),
            description=i.get("description"),
            priority=str(i.get("priority", "Medium")),
            properties=i.get("properties"),
        )
