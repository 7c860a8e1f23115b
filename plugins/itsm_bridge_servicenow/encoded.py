"""Encoded queries (`sysparm_query`): values escaped, names or sys_ids, lists of names.

Grammar ("Encoded query strings", docs.servicenow.com; "Encoded Queries", ServiceNow SDK
guide, https://servicenow.github.io/sdk/guides/encoded-query-guide): `<field><operator>
<value>` terms joined by `^` (AND), `^OR` (OR, binding the terms next to it) and `^NQ` (a
new query, unioned); `ORDERBY<field>` sorts. Every value the bridge takes from its
configuration (a CI or group name, a template name, a choice value) goes through `escape`
before it is put into a query; values read back from the instance (sys_ids) need nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from itsm_bridge.errors import NeedsHuman

SYS_ID = re.compile(r"^[0-9a-f]{32}$")
#: Text ServiceNow evaluates as a script in a query value ("javascript:gs.getUserID()").
_SCRIPT_PREFIX = re.compile(r"^\s*javascript\s*:", re.IGNORECASE)


def escape(value: str) -> str:
    """A value safe inside an encoded query.

    `^` separates terms (`^OR`, `^NQ`, `^ORDERBY` all start with it), so each `^` is doubled
    (`^^` is a literal caret); after that no part of the value can start a term. `=`, `,`
    and newlines need nothing here (the operator is the first one after the field name; a
    comma only matters inside an `IN` list, see `any_of`). A value starting with
    `javascript:` would be run as a script by the instance (the Table API documents
    `caller_id=javascript:gs.getUserID()`) and cannot be escaped: NeedsHuman.
    """
    if _SCRIPT_PREFIX.match(value):
        raise NeedsHuman(
            f"{value[:40]!r} starts with 'javascript:', which ServiceNow would run as a "
            "script inside a query: fix the configured name"
        )
    return value.replace("^", "^^")


def any_of(field: str, values: Sequence[str]) -> str:
    """`field` equals one of `values`: `fieldINa,b` for sys_ids, else `field=a^ORfield=b`.

    An `IN` list has no escape for a comma inside a value, so names use `^OR` terms.
    """
    if values and all(SYS_ID.match(v) for v in values):
        return f"{field}IN{','.join(values)}"
    return "^OR".join(f"{field}={escape(v)}" for v in values)


def by_name_or_sys_id(key: str, name_field: str = "name") -> str:
    """The encoded query of the record a configuration value names: by sys_id when `key`
    is 32 lowercase hex digits (or by a name that looks like one), else by name."""
    if SYS_ID.match(key):
        return f"sys_id={key}^NQ{name_field}={key}"
    return f"{name_field}={escape(key)}"
