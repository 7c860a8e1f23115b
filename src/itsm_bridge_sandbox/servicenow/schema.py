"""What the sandbox knows about each ServiceNow table: hierarchy, references, numbers, choices.

The store is schemaless (any field may be written), but ServiceNow semantics depend on a little
schema: which tables extend which (a query on `cmdb_ci` returns `cmdb_ci_appl` rows too, with
`sys_class_name`), which fields are references (rendered as `{"link", "value"}` and resolvable
by display value on write), the auto-number prefix, defaults on insert, and choice labels used
by `sysparm_display_value`.

Sources: the table hierarchy and number prefixes of a base ServiceNow instance (Table API
reference, "Table API - GET /now/table/{tableName}", docs.servicenow.com; CMDB class model,
"CMDB tables descriptions"); state and approval choice values from the default change model
("State model and transitions", docs.servicenow.com, Change Management). `CHOICES` is also
what the sandbox serves as `sys_choice` rows (`name`, `element`, `language`, `value`,
`label`, `sequence`, `inactive`: "Choice table", ServiceNowDocs `r_ChoicesTable.md`), see
`seed.load_base`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    """One table: parent class, references (field -> target table), numbering and defaults."""

    name: str
    parent: str | None = None
    references: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    first_number: int = 0
    display_field: str = "name"
    defaults: dict[str, str] = field(default_factory=dict)


_TASK_REFS = {
    "assignment_group": "sys_user_group",
    "cmdb_ci": "cmdb_ci",
    "parent": "task",
    "business_service": "cmdb_ci_service",
}

_SPECS = [
    TableSpec(
        "task",
        references=_TASK_REFS,
        prefix="TASK",
        first_number=10001,
        display_field="number",
        defaults={"active": "true"},
    ),
    TableSpec(
        "change_request",
        "task",
        {},
        prefix="CHG",
        first_number=30001,
        display_field="number",
        defaults={
            "state": "-5",
            "type": "normal",
            "approval": "not requested",
            "phase": "requested",
            "conflict_status": "Not Run",
            "risk": "3",
            "impact": "3",
            "priority": "4",
        },
    ),
    TableSpec(
        "change_task",
        "task",
        {"change_request": "change_request"},
        prefix="CTASK",
        first_number=10001,
        display_field="number",
        defaults={"state": "1", "change_task_type": "implementation"},
    ),
    TableSpec(
        "incident",
        "task",
        {"caused_by": "change_request", "problem_id": "problem", "rfc": "change_request"},
        prefix="INC",
        first_number=10001,
        display_field="number",
        defaults={"state": "1", "impact": "3", "urgency": "3", "priority": "5"},
    ),
    TableSpec(
        "problem",
        "task",
        {"rfc": "change_request"},
        prefix="PRB",
        first_number=40001,
        display_field="number",
        defaults={"state": "101", "priority": "4"},
    ),
    TableSpec(
        "dmn_demand",
        "task",
        {},
        prefix="DMND",
        first_number=1001,
        display_field="number",
        defaults={"state": "1"},
    ),
    TableSpec(
        "cmdb_ci",
        references={"support_group": "sys_user_group"},
        defaults={"operational_status": "1", "install_status": "1"},
    ),
    TableSpec("cmdb_ci_service", "cmdb_ci"),
    TableSpec("cmdb_ci_appl", "cmdb_ci"),
    TableSpec("cmdb_ci_app_server", "cmdb_ci_appl"),
    TableSpec("cmdb_ci_db_instance", "cmdb_ci_appl"),
    TableSpec("cmdb_ci_server", "cmdb_ci"),
    TableSpec("cmdb_ci_linux_server", "cmdb_ci_server"),
    TableSpec("cmdb_rel_type", display_field="name"),
    TableSpec(
        "cmdb_rel_ci",
        references={"parent": "cmdb_ci", "child": "cmdb_ci", "type": "cmdb_rel_type"},
        display_field="sys_id",
    ),
    TableSpec("task_ci", references={"task": "task", "ci_item": "cmdb_ci"}, display_field="sys_id"),
    TableSpec(
        "task_cmdb_ci_service",
        references={"task": "task", "cmdb_ci_service": "cmdb_ci_service"},
        display_field="sys_id",
    ),
    TableSpec(
        "cmn_schedule", references={"cmdb_ci": "cmdb_ci"}, defaults={"time_zone": "", "type": ""}
    ),
    TableSpec("cmn_schedule_blackout", "cmn_schedule", defaults={"type": "blackout"}),
    TableSpec("cmn_schedule_maintenance", "cmn_schedule", defaults={"type": "maintenance"}),
    TableSpec(
        "cmn_schedule_span",
        references={"schedule": "cmn_schedule"},
        defaults={
            "show_as": "busy",
            "all_day": "false",
            "repeat_type": "",
            "repeat_count": "1",
            "days_of_week": "",
        },
    ),
    TableSpec(
        "sys_user_group", references={"parent": "sys_user_group"}, defaults={"active": "true"}
    ),
    TableSpec("sys_journal_field", display_field="sys_id"),
    TableSpec(
        "sys_choice", display_field="label", defaults={"language": "en", "inactive": "false"}
    ),
    TableSpec(
        "conflict",
        references={
            "change": "change_request",
            "conflicting_change": "change_request",
            "configuration_item": "cmdb_ci",
            "related_configuration_item": "cmdb_ci",
            "schedule": "cmn_schedule",
        },
        display_field="sys_id",
    ),
]

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in _SPECS}

#: Tables whose rows carry `sys_class_name` (roots of a class hierarchy and their children).
HIERARCHY_ROOTS = {"task", "cmdb_ci", "cmn_schedule"}

#: Journal fields: writes append to sys_journal_field, the field itself reads back empty.
JOURNAL_FIELDS = {"work_notes", "comments"}

CHANGE_STATES = {
    "-5": "New",
    "-4": "Assess",
    "-3": "Authorize",
    "-2": "Scheduled",
    "-1": "Implement",
    "0": "Review",
    "3": "Closed",
    "4": "Canceled",
}
CHANGE_TASK_STATES = {
    "1": "Open",
    "-5": "Pending",
    "2": "In Progress",
    "3": "Closed",
    "4": "Canceled",
}
INCIDENT_STATES = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
#: dmn_demand.state is not in the published docs: as one real instance's export lists it.
DEMAND_STATES = {
    "1": "Draft",
    "2": "Submitted",
    "-4": "Qualified",
    "8": "Approved",
    "9": "Completed",
}
PROBLEM_STATES = {
    "101": "New",
    "102": "Assess",
    "103": "Root Cause Analysis",
    "104": "Fix in Progress",
    "106": "Resolved",
    "107": "Closed",
}
APPROVALS = {
    "not requested": "Not Yet Requested",
    "requested": "Requested",
    "approved": "Approved",
    "rejected": "Rejected",
    "cancelled": "Cancelled",
}

#: Choice labels for display values: (table, field) -> {value: label}.
CHOICES: dict[tuple[str, str], dict[str, str]] = {
    ("change_request", "state"): CHANGE_STATES,
    ("change_request", "type"): {
        "normal": "Normal",
        "standard": "Standard",
        "emergency": "Emergency",
    },
    ("change_request", "close_code"): {
        "successful": "Successful",
        "successful_issues": "Successful with issues",
        "unsuccessful": "Unsuccessful",
    },
    ("change_task", "state"): CHANGE_TASK_STATES,
    # servicenow.itsm Ansible collection, change_request_task module: close_code choices.
    ("change_task", "close_code"): {
        "successful": "Successful",
        "successful_issues": "Successful with issues",
        "unsuccessful": "Unsuccessful",
    },
    ("change_task", "change_task_type"): {
        "planning": "Planning",
        "implementation": "Implementation",
        "testing": "Testing",
        "review": "Review",
    },
    ("incident", "state"): INCIDENT_STATES,
    ("problem", "state"): PROBLEM_STATES,
    ("dmn_demand", "state"): DEMAND_STATES,
    ("task", "approval"): APPROVALS,
    # "Not In Maintenance Window": the documented GET .../conflict example; "CI Already
    # Scheduled": as quoted on the ServiceNow community (not from the choice list itself).
    ("conflict", "type"): {
        "blackout": "Blackout",
        "not_in_maintenance_window": "Not In Maintenance Window",
        "ci_already_scheduled": "CI Already Scheduled",
    },
}


def is_known(table: str) -> bool:
    return table in TABLES


def lineage(table: str) -> list[str]:
    """The table and its ancestors, nearest first: `cmdb_ci_app_server` -> [.., `cmdb_ci`]."""
    out: list[str] = []
    current: str | None = table
    while current is not None:
        out.append(current)
        current = TABLES[current].parent if current in TABLES else None
    return out


def descendants(table: str) -> set[str]:
    """The table and every table that extends it, at any depth."""
    return {name for name in TABLES if table in lineage(name)}


def references(table: str) -> dict[str, str]:
    """Reference fields of a table including the inherited ones (field -> target table)."""
    refs: dict[str, str] = {}
    for name in reversed(lineage(table)):
        refs.update(TABLES[name].references)
    return refs


def defaults(table: str) -> dict[str, str]:
    """Insert defaults of a table including inherited ones (nearest table wins)."""
    out: dict[str, str] = {}
    for name in reversed(lineage(table)):
        out.update(TABLES[name].defaults)
    return out


def numbering(table: str) -> TableSpec | None:
    """The spec that numbers rows of `table` (its own prefix, else the nearest ancestor's)."""
    for name in lineage(table):
        if TABLES[name].prefix:
            return TABLES[name]
    return None


def display_field(table: str) -> str:
    return TABLES[table].display_field if table in TABLES else "name"


def has_class_name(table: str) -> bool:
    return any(name in HIERARCHY_ROOTS for name in lineage(table))


def choice_label(table: str, name: str, value: str) -> str | None:
    """The label of a choice value, looking up the table's ancestors too."""
    for candidate in lineage(table):
        labels = CHOICES.get((candidate, name))
        if labels is not None:
            return labels.get(value)
    return None


#: Writable fields per table (inherited fields come from the ancestors). REST writes drop any
#: other field silently, as a real instance does with a field the table does not have.
_FIELDS = {
    "task": "number short_description description state active assignment_group assigned_to "
    "cmdb_ci business_service priority impact urgency opened_at opened_by closed_at "
    "closed_by close_notes work_notes comments approval parent due_date work_start "
    "work_end correlation_id correlation_display category location company "
    "watch_list upon_approval upon_reject contact_type order",
    "change_request": "type start_date end_date close_code risk reason justification "
    "implementation_plan backout_plan test_plan risk_impact_analysis "
    "cab_required cab_date on_hold on_hold_reason phase requested_by "
    "requested_by_date conflict_status conflict_last_run chg_model "
    "outside_maintenance_schedule production_system review_date "
    "std_change_producer_version unauthorized scope",
    "change_task": "change_request change_task_type planned_start_date planned_end_date "
    "close_code on_hold on_hold_reason created_from",
    "incident": "caller_id caused_by problem_id rfc close_code incident_state severity "
    "resolved_at resolved_by subcategory hold_reason",
    "problem": "rfc cause_notes fix_notes known_error problem_state resolution_code "
    "workaround first_reported_by_task",
    "dmn_demand": "type stage submitter business_unit department demand_manager portfolio "
    "start_date business_case",
    "cmdb_ci": "name short_description operational_status install_status asset_tag "
    "serial_number ip_address fqdn host_name os os_version version environment "
    "used_for support_group managed_by owned_by company location category "
    "subcategory comments discovery_source busines_criticality port tcp_port "
    "instance_name service_classification",
    "cmdb_rel_type": "name parent_descriptor child_descriptor",
    "cmdb_rel_ci": "parent child type port percent_outage connection_strength",
    "task_ci": "task ci_item applied manual_proposed",
    "task_cmdb_ci_service": "task cmdb_ci_service manually_added",
    "cmn_schedule": "name description time_zone type parent cmdb_ci condition applies_to read_only",
    "cmn_schedule_span": "schedule name start_date_time end_date_time type show_as all_day "
    "repeat_type repeat_count repeat_until days_of_week monthly_type "
    "yearly_type month float_week float_day notes override_start_date",
    "sys_user_group": "name description manager email active parent type",
    "sys_journal_field": "element_id element name value",
    "sys_choice": "name element language value label sequence inactive dependent_value hint",
    "conflict": "change conflicting_change configuration_item related_configuration_item "
    "schedule type last_checked",
}


def writable_fields(table: str) -> set[str]:
    """Fields a REST write may set on `table` (its own and its ancestors')."""
    out: set[str] = set()
    for name in lineage(table):
        out.update(_FIELDS.get(name, "").split())
    return out
