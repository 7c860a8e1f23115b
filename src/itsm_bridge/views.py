"""How a release is shown: the JSON of the contract, the text of `release show`, the plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itsm_bridge.lifecycle import NEEDS, STEP_NAMES

if TYPE_CHECKING:
    from itsm_bridge.models import Release, Task
    from itsm_bridge.steps_plan import StepEnv
    from itsm_bridge.store import StepRow, Tx

EVENTS_SHOWN = 500
EVALUATE_STEP = 7


def release_json(tx: Tx, release_id: str) -> dict[str, Any]:
    """The JSON of `release show --json` and of `GET /api/v1/releases/{id}`."""
    release = tx.release(release_id)
    if release is None:
        raise KeyError(release_id)
    data = release.model_dump(
        mode="json",
        include={
            "id",
            "service",
            "version",
            "name",
            "type",
            "major",
            "state",
            "not_before",
            "reason",
            "window_start",
            "window_end",
            "deploy_started_at",
            "created_at",
            "failure_reason",
        },
    )
    data["duration_minutes"] = int(release.duration.total_seconds() // 60)
    data["build"] = release.build.model_dump(mode="json") if release.build else None
    core = tx.core_data(release_id)
    data["attention"] = core.get("attention") or None
    steps = tx.steps(release_id)
    data["steps"] = [step.as_dict() for step in steps]
    evaluation = next((s.state for s in steps if s.number == EVALUATE_STEP), {})
    data["findings"] = [
        {key: finding.get(key) for key in ("severity", "source", "message")}
        for finding in evaluation.get("findings") or []
    ]
    data["tasks"] = [
        {
            "key": task.key,
            "name": task.name,
            "kind": task.kind,
            "group": task.group,
            "status": task.status.value,
            "record": task.record.model_dump(mode="json") if task.record else None,
            "note": task.note,
        }
        for task in tx.tasks(release_id)
    ]
    data["records"] = [
        record.model_dump(mode="json", exclude_none=True) for record in release.records
    ]
    data["events"] = [
        event.model_dump(mode="json") for event in tx.events(release_id, limit=EVENTS_SHOWN)
    ]
    data["events_total"] = tx.count_events(release_id)
    return data


def _time(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def render_show(data: dict[str, Any]) -> str:
    """The text of `release show`: header, steps table, tasks, records, timeline."""
    lines = [
        f"{data['id']}  {data['service']} {data['version']}"
        + (f": {data['name']}" if data["name"] else ""),
        f"state: {data['state']}   type: {data['type']}{' (major)' if data['major'] else ''}"
        f"   window: {_time(data['window_start'])} .. {_time(data['window_end'])} UTC",
    ]
    if data.get("failure_reason"):
        lines.append(f"failure: {data['failure_reason']}")
    if data.get("attention"):
        lines.append(f"needs attention: {data['attention']}")
    if data.get("build"):
        build = data["build"]
        number = f" #{build['number']}" if build.get("number") is not None else ""
        tests = build.get("tests")
        counts = (
            f", tests {tests['passed']} passed / {tests['failed']} failed / "
            f"{tests['skipped']} skipped"
            if tests
            else ", no test report"
        )
        where = f"  {build['url']}" if build.get("url") else ""
        lines.append(f"build: {build['job']}{number} {build['state']}{counts}{where}")
        lines += [f"  artifact: {artifact}" for artifact in build.get("artifacts") or []]
    lines += [
        "",
        f"{'#':>2}  {'step':<19} {'status':<8} {'started':<16}  {'finished':<16}  outcome",
    ]
    for step in data["steps"]:
        lines.append(
            f"{step['number']:>2}  {step['name']:<19} {step['status']:<8} "
            f"{_time(step['started_at']):<16}  {_time(step['finished_at']):<16}  {step['detail']}"
        )
    if data["findings"]:
        lines += ["", "findings:"]
        for finding in data["findings"]:
            lines.append(f"  {finding['severity']:<8} {finding['source']}: {finding['message']}")
    if data["tasks"]:
        lines += ["", "tasks:"]
        for task in data["tasks"]:
            record = task["record"]
            ref = f"  [{record['number'] or record['id']}]" if record else ""
            group = f" ({task['group']})" if task["group"] else ""
            lines.append(
                f"  {task['key']:<20} {task['status']:<8} {task['kind']:<9} "
                f"{task['name']}{group}{ref}"
            )
    if data["records"]:
        lines += ["", "records:"]
        for record in data["records"]:
            label = record.get("number") or record["id"]
            key = f" ({record['key']})" if record.get("key") else ""
            lines.append(f"  {record['system']:<12} {record['kind']:<20} {label}{key}")
    lines += ["", "timeline:"]
    for event in data["events"]:
        lines.append(f"  {_time(event['at'])}  {event['actor']:<14} {event['message']}")
    if data["events_total"] > len(data["events"]):
        lines.append(f"  ({data['events_total'] - len(data['events'])} older events not shown)")
    return "\n".join(lines)


# What each step calls, in order: (hook, arguments as the plan prints them).
STEP_CALLS: dict[int, list[tuple[str, str]]] = {
    1: [("collect_work_items", "since=<intake cursor>")],
    2: [("collect_work_items", "since=<intake cursor>")],
    3: [("release_scope", "release={id}")],
    4: [("start_job", "release={id}, purpose='build', params={params}"), ("job_status", "job")],
    5: [
        ("maintenance_windows", "release={id}, start, end"),
        ("freeze_periods", "release={id}, start, end"),
    ],
    6: [("create_change", "release={id}, notes")],
    7: [("evaluate_change", "release={id}"), ("approval_status", "release={id}")],
    8: [("identify_impact", "release={id}")],
    9: [("plan_tasks", "release={id}, impact"), ("create_tasks", "release={id}, tasks")],
    10: [
        ("render_release_notes", "release={id}, items"),
        ("publish_release_notes", "release={id}, notes"),
    ],
    11: [
        ("start_job", "release={id}, purpose=<task>, params={params}"),
        ("task_status", "release={id}, task"),
        ("task_finished", "release={id}, task"),
    ],
    12: [
        ("start_job", "release={id}, purpose='smoke_test', params={params}"),
        ("job_status", "job"),
    ],
    13: [("detect_failure", "release={id}, since=<deployment start>")],
    14: [
        ("create_tasks", "release={id}, tasks=[rollback]"),
        ("start_job", "release={id}, purpose='rollback', params={params}"),
        ("task_finished", "release={id}, task=rollback"),
        ("return_to_backlog", "release={id}, items, reason"),
    ],
    15: [("notify_stakeholders", "release={id}, notice")],
    16: [
        ("post_mortem", "release={id}, report"),
        ("add_to_backlog", "item=<each follow-up>"),
        ("notify_stakeholders", "release={id}, notice=<the meeting invitation>"),
    ],
    17: [("update_service_levels", "release={id}")],
    18: [("detect_failure", "release={id}, since")],
}


def plan_lines(
    env: StepEnv, release: Release, steps: list[StepRow], tasks: list[Task]
) -> list[str]:
    """The dry run of `release plan`: nothing is called, nothing is written."""
    from itsm_bridge.jobs import job_params

    params = job_params(release, "")
    lines = [f"plan for {release.id} ({release.title}), state {release.state.value}:"]
    todo = [s for s in steps if s.status not in ("done", "skipped")]
    if not todo:
        lines.append("  every step is finished; nothing would be called")
        return lines
    for step in todo:
        needs = ", ".join(str(n) for n in NEEDS[step.number]) or "nothing"
        lines.append(
            f"step {step.number} {STEP_NAMES[step.number]} ({step.status}; after {needs}):"
        )
        for hook, args in STEP_CALLS[step.number]:
            plugins = env.implemented(hook, defaults=True)
            who = ", ".join(plugins) if plugins else "no plugin (the step is skipped or manual)"
            text = args.format(id=release.id, params=params)
            lines.append(f"  {hook}({text}) -> {who}")
        if step.number in (11, 12):
            for task in tasks:
                if (task.order < 200) == (step.number == 11):
                    lines.append(
                        f"    task {task.key}: {task.kind} {task.name} ({task.status.value})"
                    )
    lines.append(
        "  release_changed(release, event) after every step -> "
        + (", ".join(env.implemented("release_changed", defaults=True)) or "no plugin")
    )
    return lines
