"""Loading the `servicenow:` section of the sandbox seed YAML.

Format::

    servicenow:
      user: sandbox            # optional credentials (constructor arguments win when given)
      password: sandbox
      records:                 # table -> list of rows, loaded in the order given
        sys_user_group: [{name: Change Management}]
        cmdb_ci_appl: [{name: payments-api, support_group: Payments Team}]
        cmdb_rel_ci: [{parent: payments, child: payments-api, type: "Depends on::Used by"}]

A reference may be given as a sys_id or as the display value (name, or number for tasks) of a
row loaded earlier. A row may fix its own `sys_id` (and `number`). Rows go in raw: no field
filtering and no change-model checks, so a seed can hold any state.

Choice lists (`sys_choice`) come with every sandbox (`load_base`); `sys_choice` rows in a
seed replace the base list of their table and field, e.g. an instance whose "Approved"
demand state is 11: `sys_choice: [{name: dmn_demand, element: state, value: "11",
label: Approved}, ...]`.
"""

from __future__ import annotations

from typing import Any

from itsm_bridge_sandbox.servicenow import schema
from itsm_bridge_sandbox.servicenow.records import Store

#: Relationship types every instance ships with (cmdb_rel_type), present even without a seed.
BASE_REL_TYPES = [
    ("Depends on::Used by", "Depends on", "Used by"),
    ("Runs on::Runs", "Runs on", "Runs"),
    ("Hosted on::Hosts", "Hosted on", "Hosts"),
    ("Contains::Contained by", "Contains", "Contained by"),
    ("Connects to::Connected by", "Connects to", "Connected by"),
]


def load_base(store: Store) -> None:
    """What every instance ships with: relationship types and the choice lists (`sys_choice`,
    one English row per value of `schema.CHOICES`, in its order)."""
    for name, parent, child in BASE_REL_TYPES:
        store.insert(
            "cmdb_rel_type", {"name": name, "parent_descriptor": parent, "child_descriptor": child}
        )
    for (table, element), labels in schema.CHOICES.items():
        for sequence, (value, label) in enumerate(labels.items(), start=1):
            store.insert(
                "sys_choice",
                {
                    "name": table,
                    "element": element,
                    "language": "en",
                    "value": value,
                    "label": label,
                    "sequence": str(sequence * 10),
                    "inactive": "false",
                },
            )


def section(seed: dict[str, Any] | None) -> dict[str, Any]:
    """Accept either the `servicenow:` section or a whole seed document holding it."""
    if not seed:
        return {}
    if "servicenow" in seed and isinstance(seed["servicenow"], dict):
        return seed["servicenow"]
    return seed


def load(store: Store, seed: dict[str, Any]) -> int:
    """Insert the seed's records; returns how many rows were added."""
    count = 0
    records = seed.get("records") or {}
    replaced = {
        (str(r.get("name")), str(r.get("element"))) for r in records.get("sys_choice") or []
    }
    for row in store.rows_of("sys_choice"):
        if (row.get("name"), row.get("element")) in replaced:
            store.delete(row)
    for table, rows in records.items():
        if not schema.is_known(table):
            raise ValueError(f"servicenow seed: unknown table {table!r}")
        for raw in rows or []:
            fields = dict(raw)
            sys_id = fields.pop("sys_id", None)
            values, journal = store.prepare(table, fields, strict=False)
            for name, target in schema.references(table).items():
                if values.get(name) and store.get(target, values[name]) is None:
                    raise ValueError(
                        f"servicenow seed: {table}.{name} = {raw[name]!r} names "
                        f"no {target} row loaded before it"
                    )
            store.insert(
                table, values, journal, user="admin", sys_id=str(sys_id) if sys_id else None
            )
            count += 1
    return count
