"""ServiceNow encoded queries (`sysparm_query`): parsing and evaluation.

Grammar as documented in "Encoded query strings" (docs.servicenow.com, Platform user interface)
and "Operators available for filters and queries":

* `^` joins conditions with AND, `^OR` (or a term starting with `OR`) joins with OR (OR binds
  tighter than AND, as on the platform), `^NQ` starts a new query whose results are unioned.
* `^^` is an escaped literal `^` inside a value.
* operators: `=`, `!=`, `IN`, `NOT IN`, `STARTSWITH`, `ENDSWITH`, `LIKE`, `NOTLIKE`, `<`, `<=`,
  `>`, `>=`, `ISEMPTY`, `ISNOTEMPTY`, `ANYTHING`; `ORDERBY<field>` / `ORDERBYDESC<field>`.
* a field may dot-walk one or more references: `change_request.number=CHG0030001`.

Values are compared as strings (every stored value is a string, as on the platform); `<`/`>`
compare numerically when both sides are numbers, else lexically, which orders the
`YYYY-MM-DD HH:MM:SS` date/time format correctly. `LIKE`, `STARTSWITH`, `ENDSWITH` and
`NOTLIKE` are case-insensitive (as on a MySQL-backed instance); `=` and `IN` are exact.
A term the parser cannot read is ignored, as a real instance ignores invalid conditions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

#: Reads a (possibly dot-walked) field of a record; returns "" for a missing field.
Getter = Callable[[dict[str, str], str], str]

_OPERATORS = [
    "NOT IN",
    "NOTLIKE",
    "ISNOTEMPTY",
    "ISEMPTY",
    "STARTSWITH",
    "ENDSWITH",
    "ANYTHING",
    "LIKE",
    "IN",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
]
_TERM = re.compile(
    r"^(?P<field>[a-z0-9_.]+)(?P<op>" + "|".join(re.escape(o) for o in _OPERATORS) + r")"
    r"(?P<value>.*)$",
    re.DOTALL,
)
_ESCAPED_CARET = "\x00"


@dataclass(frozen=True)
class Condition:
    """One `field OP value` term."""

    field: str
    op: str
    value: str

    def matches(self, record: dict[str, str], get: Getter) -> bool:
        actual = get(record, self.field)
        expected = self.value
        op = self.op
        if op == "=":
            return actual == expected
        if op == "!=":
            return actual != expected
        if op == "IN":
            return actual in _split_list(expected)
        if op == "NOT IN":
            return actual not in _split_list(expected)
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op == "ANYTHING":
            return True
        low, exp = actual.lower(), expected.lower()
        if op == "LIKE":
            return exp in low
        if op == "NOTLIKE":
            return exp not in low
        if op == "STARTSWITH":
            return low.startswith(exp)
        if op == "ENDSWITH":
            return low.endswith(exp)
        if actual == "":
            return False  # an empty value never satisfies an ordering comparison
        return _compare(actual, expected, op)


@dataclass
class Query:
    """A parsed encoded query: a union of AND-of-OR groups, plus the ordering."""

    branches: list[list[list[Condition]]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)

    def matches(self, record: dict[str, str], get: Getter) -> bool:
        if not self.branches:
            return True
        return any(
            all(any(cond.matches(record, get) for cond in group) for group in branch)
            for branch in self.branches
        )

    def sort(self, records: list[dict[str, str]], get: Getter) -> list[dict[str, str]]:
        """Stable multi-key sort: the first ORDERBY is the primary key."""
        out = list(records)
        for name, descending in reversed(self.order):

            def key(rec: dict[str, str], n: str = name) -> tuple[int, float, str]:
                return _sort_key(get(rec, n))

            out.sort(key=key, reverse=descending)
        return out


def parse(text: str | None) -> Query:
    """Parse a `sysparm_query` string."""
    query = Query()
    if not text:
        return query
    text = text.replace("^^", _ESCAPED_CARET)
    for branch_text in text.split("^NQ"):
        branch: list[list[Condition]] = []
        for raw in branch_text.split("^"):
            term = raw.replace(_ESCAPED_CARET, "^").strip()
            if not term or term == "EQ":
                continue
            if term.startswith("ORDERBYDESC"):
                query.order.append((term[len("ORDERBYDESC") :], True))
                continue
            if term.startswith("ORDERBY"):
                query.order.append((term[len("ORDERBY") :], False))
                continue
            is_or = term.startswith("OR") and branch
            condition = _parse_term(term[2:] if is_or else term)
            if condition is None:
                continue
            if is_or:
                branch[-1].append(condition)
            else:
                branch.append([condition])
        if branch:
            query.branches.append(branch)
    return query


def _parse_term(term: str) -> Condition | None:
    match = _TERM.match(term)
    if not match:
        return None
    return Condition(match["field"], match["op"], match["value"])


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _compare(actual: str, expected: str, op: str) -> bool:
    left_n, right_n = _number(actual), _number(expected)
    left: float | str
    right: float | str
    if left_n is not None and right_n is not None:
        left, right = left_n, right_n
    else:
        left, right = actual, expected
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    if op == ">":
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def _sort_key(value: str) -> tuple[int, float, str]:
    number = _number(value)
    if number is not None:
        return (0, number, "")
    return (1, 0.0, value.lower())
