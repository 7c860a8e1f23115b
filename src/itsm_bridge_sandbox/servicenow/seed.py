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
    for name, parent, child in BASE_REL_TYPES:
        store.insert(
            "cmdb_rel_type", {"name": name, "parent_descriptor": parent, "child_descriptor": child}
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
