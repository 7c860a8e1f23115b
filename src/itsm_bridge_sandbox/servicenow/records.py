"""The in-memory record store: inserts, updates, references, journal fields, rendering.

Every row lives once, in the table of its class (`sys_class_name`); a read on a parent table
(`task`, `cmdb_ci`, `cmn_schedule`) sees the rows of every child table, as GlideRecord does.
All values are stored as strings, as the Table API returns them.

`hide(sys_id)` plays an ACL that denies the integration user a row: list reads still count
it against `sysparm_limit` but leave it out of the page ("This limit is applied before ACL
evaluation", Table API), so a page can be short, or empty, while more rows follow.

Rendering follows "Table API - GET /now/table/{tableName}" (docs.servicenow.com, REST API
reference): a reference field is `{"link": "<instance>/api/now/table/<table>/<sys_id>",
"value": "<sys_id>"}` unless `sysparm_exclude_reference_link=true`, an empty reference is `""`;
`sysparm_display_value=true` returns display values and `all` returns
`{"display_value": ..., "value": ...}` objects (plus `link` on references).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from itsm_bridge_sandbox.servicenow import schema
from itsm_bridge_sandbox.servicenow.query import Query

_SYS_ID = re.compile(r"^[0-9a-f]{32}$")
READ_ONLY = {
    "sys_id",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
    "sys_class_name",
}
TABLE_KEY = "_table"


def to_value(value: Any) -> str:
    """A JSON input value as ServiceNow stores it: always a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return to_value(value.get("value", ""))
    if isinstance(value, list | tuple):
        return ",".join(to_value(item) for item in value)
    return str(value)


class Store:
    """Rows of every table, keyed by sys_id; callers hold the server lock."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.rows: dict[str, dict[str, str]] = {}
        self._counters: dict[str, int] = {}
        #: sys_ids an "ACL" hides from list reads (see the module docstring).
        self.hidden: set[str] = set()

    # -- lookups -------------------------------------------------------------------------
    def timestamp(self) -> str:
        return self.now().strftime("%Y-%m-%d %H:%M:%S")

    def rows_of(self, table: str) -> list[dict[str, str]]:
        """Rows of `table` and of the tables extending it, in insertion order."""
        tables = schema.descendants(table)
        return [row for row in self.rows.values() if row[TABLE_KEY] in tables]

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        row = self.rows.get(sys_id)
        if row is None or row[TABLE_KEY] not in schema.descendants(table):
            return None
        return row

    def find(self, table: str, key: str) -> dict[str, str] | None:
        """A row by sys_id, number or display value (first match)."""
        row = self.get(table, key)
        if row is not None:
            return row
        dfield = schema.display_field(table)
        for candidate in self.rows_of(table):
            if key and key in (candidate.get("number"), candidate.get(dfield)):
                return candidate
        return None

    def hide(self, sys_id: str) -> None:
        """Let an "ACL" deny the integration user this row in list reads."""
        self.hidden.add(sys_id)

    def readable(self, row: dict[str, str]) -> bool:
        """False for a row an "ACL" hides (`hide`)."""
        return row["sys_id"] not in self.hidden

    def query(self, table: str, query: Query) -> list[dict[str, str]]:
        rows = [row for row in self.rows_of(table) if query.matches(row, self.get_path)]
        return query.sort(rows, self.get_path)

    def get_path(self, row: dict[str, str], path: str) -> str:
        """A field value, following dot-walked references (`change_request.number`)."""
        head, _, rest = path.partition(".")
        value = row.get(head, "")
        if not rest:
            return value
        target = self.rows.get(value)
        return self.get_path(target, rest) if target is not None else ""

    def resolve_reference(self, target: str, value: str) -> str:
        """A reference write: a sys_id is kept; a display value is looked up, as SN does."""
        if not value or self.get(target, value) is not None:
            return value
        found = self.find(target, value)
        return found["sys_id"] if found is not None else value

    # -- writes --------------------------------------------------------------------------
    def prepare(
        self,
        table: str,
        payload: dict[str, Any],
        row: dict[str, str] | None = None,
        *,
        strict: bool = True,
    ) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """Coerce a write: known fields only (when strict), references resolved, journal split.

        Returns the field values to set and the `(element, text)` journal entries to append.
        """
        allowed = schema.writable_fields(table) | set(row or {})
        refs = schema.references(table)
        journal_table = schema.has_class_name(table) and "task" in schema.lineage(table)
        values: dict[str, str] = {}
        journal: list[tuple[str, str]] = []
        for name, raw in payload.items():
            if name in READ_ONLY or name == TABLE_KEY:
                continue
            if strict and name not in allowed:
                continue  # real instances drop unknown fields silently
            value = to_value(raw)
            if journal_table and name in schema.JOURNAL_FIELDS:
                if value:
                    journal.append((name, value))
                continue
            if name in refs:
                value = self.resolve_reference(refs[name], value)
            values[name] = value
        return values, journal

    def insert(
        self,
        table: str,
        values: dict[str, str],
        journal: Iterable[tuple[str, str]] = (),
        user: str = "system",
        sys_id: str | None = None,
    ) -> dict[str, str]:
        row = dict(schema.defaults(table))
        row.update(values)
        stamp = self.timestamp()
        row.update(
            {
                TABLE_KEY: table,
                "sys_id": sys_id or uuid.uuid4().hex,
                "sys_created_on": stamp,
                "sys_created_by": user,
                "sys_updated_on": stamp,
                "sys_updated_by": user,
                "sys_mod_count": "0",
            }
        )
        if schema.has_class_name(table):
            row["sys_class_name"] = table
        spec = schema.numbering(table)
        if spec is not None and not row.get("number"):
            row["number"] = self._next_number(table, spec)
        if "task" in schema.lineage(table):
            row.setdefault("opened_at", stamp)
            for name in schema.JOURNAL_FIELDS:
                row.setdefault(name, "")
        self.rows[row["sys_id"]] = row
        for element, text in journal:
            self.add_journal(row, element, text, user)
        return row

    def update(
        self,
        row: dict[str, str],
        values: dict[str, str],
        journal: Iterable[tuple[str, str]] = (),
        user: str = "system",
    ) -> dict[str, str]:
        row.update(values)
        row["sys_updated_on"] = self.timestamp()
        row["sys_updated_by"] = user
        row["sys_mod_count"] = str(int(row.get("sys_mod_count") or "0") + 1)
        for element, text in journal:
            self.add_journal(row, element, text, user)
        return row

    def delete(self, row: dict[str, str]) -> None:
        self.rows.pop(row["sys_id"], None)

    def add_journal(self, row: dict[str, str], element: str, text: str, user: str) -> None:
        """Append a `sys_journal_field` entry; the journal field itself reads back empty."""
        self.insert(
            "sys_journal_field",
            {
                "element_id": row["sys_id"],
                "element": element,
                "name": row[TABLE_KEY],
                "value": text,
            },
            user=user,
        )

    def journal(self, sys_id: str, element: str | None = None) -> list[dict[str, str]]:
        return [
            row
            for row in self.rows_of("sys_journal_field")
            if row.get("element_id") == sys_id and (element is None or row["element"] == element)
        ]

    def _next_number(self, table: str, spec: schema.TableSpec) -> str:
        current = self._counters.get(spec.name, spec.first_number)
        self._counters[spec.name] = current + 1
        return f"{spec.prefix}{current:07d}"

    # -- rendering -----------------------------------------------------------------------
    def display(self, table: str, name: str, value: str) -> str:
        """The display value of one field of a row of `table`."""
        refs = schema.references(table)
        if name in refs:
            target = self.rows.get(value)
            if target is None:
                return ""
            return target.get(schema.display_field(target[TABLE_KEY]), "")
        label = schema.choice_label(table, name, value)
        return label if label is not None else value

    def render(
        self,
        row: dict[str, str],
        base_url: str,
        *,
        fields: list[str] | None = None,
        display: str = "false",
        links: bool = True,
    ) -> dict[str, Any]:
        """A row as the Table API returns it, honouring the sysparm rendering options."""
        table = row[TABLE_KEY]
        if fields:
            names = fields
        else:  # every field of the table, as a real instance returns them (empty: "")
            names = [key for key in row if key != TABLE_KEY]
            names += sorted(schema.writable_fields(table) - set(row))
        out: dict[str, Any] = {}
        for name in names:
            out[name] = self._render_field(row, table, name, base_url, display, links)
        return out

    def _render_field(
        self,
        row: dict[str, str],
        table: str,
        name: str,
        base_url: str,
        display: str,
        links: bool,
    ) -> Any:
        if "." in name:  # dot-walked field: render it against the referenced row
            head, _, rest = name.partition(".")
            target = self.rows.get(row.get(head, ""))
            if target is None:
                return "" if display != "all" else {"display_value": "", "value": ""}
            return self._render_field(target, target[TABLE_KEY], rest, base_url, display, links)
        value = row.get(name, "")
        target_table = schema.references(table).get(name)
        link = None
        if target_table and value and links:
            link = f"{base_url}/api/now/table/{target_table}/{value}"
        if display == "true":
            shown = self.display(table, name, value)
            return {"display_value": shown, "link": link} if link else shown
        if display == "all":
            out = {"display_value": self.display(table, name, value), "value": value}
            if link:
                out["link"] = link
            return out
        return {"link": link, "value": value} if link else value
