"""Choice values read from the instance (`sys_choice`), once per client, overridable in config.

Choice fields store a value (`8`, `104`, `successful`) and show a label ("Approved", "Fix in
Progress", "Successful"). The values differ between instances (an administrator may add,
renumber or retire choices), so the bridge names what it means by the *label* and asks the
instance for the value. ServiceNow shape ("Choice table", ServiceNowDocs `markdown/
platform-administration/system-localization/r_ChoicesTable.md`): a `sys_choice` row has
`name` (the table), `element` (the field), `language` (BCP 47, `en` for the base labels),
`value`, `label`, `sequence`; retired choices carry `inactive=true` (the field used by
ServiceNow's own choice list tools, e.g. the ServiceNow MCP server's `choice_tools.py`).

One query per (table, field) and client: `name=<table>^element=<field>^language=en^
inactive=false`, fields `value,label,sequence`. The answer is cached on the client for its
lifetime (restart the bridge after renumbering a choice list).

What the bridge looks up (`MEANINGS`, meaning -> English label):

* `dmn_demand.state`: `approved` ("Approved"; a base instance's export shows 8, but the
  number varies) -- step 1 takes approved demands;
* `problem.state`: `fix_in_progress` ("Fix in Progress", 104 on a base instance with the
  Problem state model, `servicenow.itsm` Ansible collection `module_utils/problem.py`);
* `change_task.close_code`: `successful`, `unsuccessful` ("Successful", "Unsuccessful";
  values `successful` / `unsuccessful` in the `servicenow.itsm` collection's
  `change_request_task` module).

`plugins.servicenow.choices` overrides any of them without a request, keyed like the lookup:
`{"dmn_demand.state": {"approved": "11"}}`. The shape is "<table>.<field>" -> meaning -> value:
the same two names a ServiceNow administrator sees in System Definition > Choice Lists, and
only the meanings the bridge uses (an unknown key is a configuration error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import NeedsHuman

if TYPE_CHECKING:
    from itsm_bridge_servicenow.client import ServiceNowClient

TABLE = "sys_choice"
FIELDS = ("value", "label", "sequence")
LANGUAGE = "en"
SETTING = "plugins.servicenow.choices"

#: "<table>.<field>" -> meaning -> the English label of the choice that means it.
MEANINGS: dict[str, dict[str, str]] = {
    "dmn_demand.state": {"approved": "Approved"},
    "problem.state": {"fix_in_progress": "Fix in Progress"},
    "change_task.close_code": {"successful": "Successful", "unsuccessful": "Unsuccessful"},
}


def check_overrides(value: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """The `choices` setting, validated: known fields and meanings, non-empty values.

    Raises ValueError naming the first unknown key (pydantic turns it into a config error).
    """
    out: dict[str, dict[str, str]] = {}
    for field, meanings in value.items():
        if field not in MEANINGS:
            known = ", ".join(sorted(MEANINGS))
            raise ValueError(f"unknown choice field {field!r}; use one of {known}")
        for meaning, choice in meanings.items():
            if meaning not in MEANINGS[field]:
                known = ", ".join(sorted(MEANINGS[field]))
                raise ValueError(f"{field}: unknown meaning {meaning!r}; use one of {known}")
            if not str(choice).strip():
                raise ValueError(f"{field}.{meaning}: empty value")
        out[field] = {meaning: str(choice).strip() for meaning, choice in meanings.items()}
    return out


class Choices:
    """The choice values one client uses: configured overrides first, else `sys_choice`."""

    def __init__(
        self, client: ServiceNowClient, overrides: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        self.client = client
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def value(self, table: str, field: str, meaning: str) -> str:
        """The stored value of the choice that means `meaning` for `table.field`.

        NeedsHuman when the instance has no active choice with that label, or several
        different values share it (set the override then).
        """
        key = f"{table}.{field}"
        label = MEANINGS[key][meaning]
        configured = self.overrides.get(key, {}).get(meaning)
        if configured:
            return configured
        wanted = label.strip().casefold()
        found = [
            str(row.get("value") or "")
            for row in self.rows(table, field)
            if str(row.get("label") or "").strip().casefold() == wanted
        ]
        values = list(dict.fromkeys(v for v in found if v))
        if len(values) == 1:
            return values[0]
        fix = f"set {SETTING}.{key}.{meaning} to the value of the {label!r} choice"
        if not values:
            raise NeedsHuman(
                f"ServiceNow has no active {label!r} choice for {key} ({TABLE}, "
                f"language {LANGUAGE}): {fix}"
            )
        raise NeedsHuman(
            f"ServiceNow has several {label!r} choices for {key} ({', '.join(values)}): {fix}"
        )

    def rows(self, table: str, field: str) -> list[dict[str, Any]]:
        """The active English `sys_choice` rows of one field (read once, then cached)."""
        key = f"{table}.{field}"
        if key not in self._rows:  # table and field come from MEANINGS: nothing to escape
            query = (
                f"name={table}^element={field}^language={LANGUAGE}^inactive=false^ORDERBYsequence"
            )
            self._rows[key] = self.client.query(TABLE, query, FIELDS)
        return self._rows[key]
