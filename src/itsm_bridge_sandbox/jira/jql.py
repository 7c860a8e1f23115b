"""A JQL subset: parse a query and evaluate it against the sandbox's issues.

Supported ("Advanced search reference - JQL fields/operators/functions", Atlassian support):
fields `project`, `key`/`issue`/`issuekey`/`id`, `status`, `statusCategory`, `issuetype`/`type`,
`fixVersion`, `sprint`/`cf[10020]`, `labels`, `priority`, `resolution`, `summary`/`text`/
`description` (`~` only), `created`, `updated`, `resolved`, and entity properties
`issue.property[KEY].path`; operators `= != > >= < <= ~ !~ in, not in, is, is not`; values
quoted or bare, `EMPTY`/`NULL`, lists, the functions `openSprints()`, `closedSprints()`,
`futureSprints()`, `releasedVersions()`, `unreleasedVersions()`, `now()`, `startOfDay()`,
`endOfDay()`; dates `yyyy-MM-dd HH:mm`, `yyyy/MM/dd HH:mm`, `yyyy-MM-dd` (read in the user's
profile time zone, `Store.timezone`), epoch milliseconds (an instant), relative `-5m`, `-2h`,
`-1d`, `-1w`; AND, OR, NOT, parentheses; `ORDER BY f [ASC|DESC], ...`.

As in Jira, `!=` and `not in` on multi-valued fields (labels, fixVersion, sprint) never match
issues where the field is empty, and unknown fields or values are errors (HTTP 400 with
`errorMessages`), e.g. "Field 'x' does not exist or you do not have permission to view it.",
"The value 'X' does not exist for the field 'project'." (messages as Jira returns them).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from itsm_bridge_sandbox.jira.jql_parser import (
    DATES,
    FIELD_ALIASES,
    Clause,
    JiraError,
    Query,
    jql_error,
    parse,
)
from itsm_bridge_sandbox.jira.store import (
    ISSUE_TYPES,
    PRIORITIES,
    STATUS_CATEGORIES,
    STATUSES,
    Issue,
    Store,
    status_by_name,
)

_RELATIVE = re.compile(r"^([-+]?)(\d+)([wdhm])$")
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
__all__ = ["Evaluator", "JiraError", "parse", "search"]


# -- evaluation ----------------------------------------------------------------------------
class Evaluator:
    """Evaluates a parsed query; values are resolved (and validated) once, up front."""

    def __init__(self, store: Store, query: Query, now: datetime | None = None) -> None:
        self.store = store
        self.query = query
        self.now = now or store.clock()
        self._resolved: dict[int, Any] = {}
        if query.where is not None:
            self._resolve_tree(query.where)
        for name, _ in query.order:
            sort_key_fn(name)  # validate early

    # values -------------------------------------------------------------------------------
    def _resolve_tree(self, node: Any) -> None:
        if isinstance(node, Clause):
            self._resolved[id(node)] = self.resolve(node)
        elif node[0] == "not":
            self._resolve_tree(node[1])
        else:
            for child in node[1]:
                self._resolve_tree(child)

    def resolve(self, clause: Clause) -> Any:
        if clause.value[0] == "empty":
            return None
        raw = clause.value[1] if clause.value[0] == "list" else [clause.value]
        out: list[Any] = []
        for item in raw:
            out.extend(self.resolve_one(clause, item))
        return out

    def resolve_one(self, clause: Clause, item: Any) -> list[Any]:
        kind, text = item[0], item[1] if len(item) > 1 else ""
        field, store = clause.field, self.store
        if kind == "func":
            return self.function(clause, text)
        if field == "project":
            proj = store.project_or_none(text)
            return [proj.id if proj else self.no_value(text, "project")]
        if field == "key":
            issue = store.issue_or_none(text)
            if issue is None:
                raise jql_error(
                    f"An issue with key '{text.upper()}' does not exist for field 'key'."
                )
            return [issue.id]
        if field == "status":
            try:
                return [status_by_name(text).name]
            except KeyError:
                return [self.no_value(text, "status")]
        if field == "statuscategory":
            for cat, (cid, key, _, name) in STATUS_CATEGORIES.items():
                if text.lower() in (key, name.lower(), str(cid)):
                    return [cat]
            return [self.no_value(text, "statusCategory")]
        if field == "issuetype":
            itype = next(
                (n for n, i in ISSUE_TYPES.items() if text.lower() in (n.lower(), i)), None
            )
            return [itype or self.no_value(text, "issuetype")]
        if field == "priority":
            prio = next((n for n, i in PRIORITIES.items() if text.lower() in (n.lower(), i)), None)
            return [prio or self.no_value(text, "priority")]
        if field == "fixversion":
            ids = [v.id for v in store.versions.values() if text in (v.name, str(v.id))]
            return ids or [self.no_value(text, "fixVersion")]
        if field == "sprint":
            ids = [s.id for s in store.sprints.values() if text in (s.name, str(s.id))]
            return ids or [self.no_value(text, "sprint")]
        if field == "resolution":
            return [None if text.lower() == "unresolved" else text]
        if field in DATES:
            return [self.date(text, clause)]
        return [text]

    def no_value(self, text: str, field: str) -> Any:
        raise jql_error(f"The value '{text}' does not exist for the field '{field}'.")

    def function(self, clause: Clause, name: str) -> list[Any]:
        lname, store = name.lower(), self.store
        if clause.field == "sprint" and lname in ("opensprints", "closedsprints", "futuresprints"):
            states = {
                "opensprints": ("active", "future"),
                "closedsprints": ("closed",),
                "futuresprints": ("future",),
            }[lname]
            return [s.id for s in store.sprints.values() if s.state in states]
        if clause.field == "fixversion" and lname in ("releasedversions", "unreleasedversions"):
            released = lname == "releasedversions"
            return [v.id for v in store.versions.values() if v.released == released]
        if clause.field in DATES and lname in ("now", "startofday", "endofday"):
            if lname == "now":
                return [self.now]
            zone = ZoneInfo(self.store.timezone)
            start = datetime.combine(self.now.astimezone(zone).date(), time(), tzinfo=zone)
            return [start if lname == "startofday" else start + timedelta(days=1, microseconds=-1)]
        raise jql_error(f"Unable to find JQL function '{name}()'.")

    def date(self, text: str, clause: Clause) -> datetime:
        """A date value: a relative period, epoch milliseconds (an instant, whatever the
        user's zone), or a formatted date read in the user's profile time zone (Jira's
        `JqlDateSupport`: "It will consider the user's time zone when parsing the date
        string"; `convertToDate(Long)` for numbers)."""
        rel = _RELATIVE.match(text.strip())
        if rel:
            unit = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}[rel.group(3)]
            delta = timedelta(**{unit: int(rel.group(2))})
            return self.now - delta if rel.group(1) == "-" else self.now + delta
        if text.strip().isdigit():
            return datetime.fromtimestamp(int(text.strip()) / 1000, UTC)
        for fmt in _DATE_FORMATS:
            try:
                parsed = datetime.strptime(text.strip(), fmt)
            except ValueError:
                continue
            return parsed.replace(tzinfo=ZoneInfo(self.store.timezone)).astimezone(UTC)
        raise jql_error(
            f"Date value '{text}' for field '{clause.field}' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )

    # matching -----------------------------------------------------------------------------
    def matches(self, issue: Issue) -> bool:
        return self.query.where is None or self._eval(self.query.where, issue)

    def _eval(self, node: Any, issue: Issue) -> bool:
        if isinstance(node, Clause):
            return self.clause(node, issue)
        if node[0] == "not":
            return not self._eval(node[1], issue)
        if node[0] == "and":
            return all(self._eval(child, issue) for child in node[1])
        return any(self._eval(child, issue) for child in node[1])

    def actual(self, clause: Clause, issue: Issue) -> list[Any]:
        field = clause.field
        if field == "property":
            assert clause.prop is not None
            key, path = clause.prop
            if key not in issue.properties:
                return []
            value: Any = issue.properties[key]
            for part in path:
                if not isinstance(value, dict) or part not in value:
                    return []
                value = value[part]
            return value if isinstance(value, list) else [value]
        values: dict[str, Any] = {
            "project": issue.project_id,
            "key": issue.id,
            "status": issue.status,
            "statuscategory": status_by_name(issue.status).category,
            "issuetype": issue.issuetype,
            "priority": issue.priority,
            "resolution": issue.resolution,
            "summary": issue.summary,
            "description": issue.description,
            "created": issue.created,
            "updated": issue.updated,
            "resolved": issue.resolution_date,
        }
        if field == "labels":
            return list(issue.labels)
        if field == "fixversion":
            return list(issue.fix_versions)
        if field == "sprint":
            return [*issue.past_sprints, *([issue.sprint] if issue.sprint else [])]
        value = values[field]
        return [] if value is None else [value]

    def clause(self, clause: Clause, issue: Issue) -> bool:
        op, wanted = clause.op, self._resolved[id(clause)]
        have = self.actual(clause, issue)
        if op in ("is", "is not"):
            return (not have) == (op == "is")
        if clause.field == "resolution" and wanted == [None]:
            return (not have) == (op in ("=", "in"))
        if op in ("~", "!~"):
            from itsm_bridge_sandbox.jira.shapes import adf_to_text

            text = " ".join(adf_to_text(h) for h in have).lower()
            found = all(word in text for word in str(wanted[0]).lower().split())
            return found == (op == "~")
        norm = _norm_fn(clause)
        have_n = [norm(h) for h in have]
        wanted_n = [norm(w) for w in wanted]
        if op in ("=", "in"):
            return any(h in wanted_n for h in have_n)
        if op in ("!=", "not in"):
            if not have_n:
                return False
            return not any(h in wanted_n for h in have_n)
        return any(_compare(h, op, w) for h in have_n for w in wanted_n)

    # ordering -----------------------------------------------------------------------------
    def sort(self, issues: list[Issue]) -> list[Issue]:
        """Apply ORDER BY; without one the sandbox orders by `key DESC` (newest first)."""
        ordered = sorted(issues, key=lambda i: i.id, reverse=True)
        for name, desc in reversed(self.query.order):
            fn = sort_key_fn(name)
            ordered.sort(key=lambda i, fn=fn: fn(self.store, i), reverse=desc)  # type: ignore[misc]
        return ordered


def _norm_fn(clause: Clause) -> Any:
    if clause.field in ("labels", "status", "issuetype", "priority", "resolution", "property"):
        return lambda v: v.lower() if isinstance(v, str) else v
    return lambda v: v


def _compare(have: Any, op: str, wanted: Any) -> bool:
    try:
        if isinstance(have, (int, float)) or isinstance(wanted, (int, float)):
            have, wanted = float(have), float(wanted)
        return {">": have > wanted, ">=": have >= wanted, "<": have < wanted, "<=": have <= wanted}[
            op
        ]
    except (TypeError, ValueError):
        return False


def sort_key_fn(name: str) -> Any:
    field = FIELD_ALIASES.get(name.lower())
    if field is None and name.lower() != "rank":
        raise jql_error(f"Field '{name}' does not exist or you do not have permission to view it.")
    status_order = [s.name for s in STATUSES]
    priority_order = list(PRIORITIES)
    fns: dict[str, Any] = {
        "key": lambda s, i: (s.projects[i.project_id].key, int(i.key.split("-")[1])),
        "project": lambda s, i: s.projects[i.project_id].key,
        "created": lambda s, i: i.created,
        "updated": lambda s, i: i.updated,
        "resolved": lambda s, i: i.resolution_date or datetime.min.replace(tzinfo=UTC),
        "status": lambda s, i: status_order.index(i.status),
        "priority": lambda s, i: priority_order.index(i.priority),
        "summary": lambda s, i: i.summary.lower(),
        "issuetype": lambda s, i: i.issuetype,
        "fixversion": lambda s, i: min(i.fix_versions, default=0),
        "sprint": lambda s, i: i.sprint or 0,
    }
    if name.lower() == "rank":
        return lambda s, i: i.id
    if field not in fns:
        raise jql_error(f"Not able to sort using field '{name}'.")
    return fns[field]


def search(store: Store, query: str) -> tuple[Query, list[Issue]]:
    """Parse, validate and run `query`; the matching issues in result order."""
    parsed = parse(query)
    evaluator = Evaluator(store, parsed)
    hits = [issue for issue in store.issues.values() if evaluator.matches(issue)]
    return parsed, evaluator.sort(hits)
