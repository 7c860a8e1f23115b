"""Moving an issue to a status: transitions chosen by their target status, never by name.

`GET /rest/api/2/issue/{key}/transitions?expand=transitions.fields` ("Get transitions", Jira
Cloud REST v2 and Data Center REST 9) lists the transitions the user may take from the
issue's status, each with `to` (the target status, its id, name and `statusCategory`) and,
with that expand, `fields`: "the fields in the transition screen for that transition. Fields
not in the screen will not be in the metadata", each with `required`, `hasDefaultValue` and
`allowedValues`. `POST .../transitions` `{"transition": {"id"}, "fields": {...}}` takes one;
a field that is not on the screen is refused ("Field 'resolution' cannot be set. It is not
on the appropriate screen, or unknown."), so fields are sent only when the screen has them:
Resolution (the configured `resolution`, matched against `allowedValues`) when it is required
or the target is a done status; any other required field without a default stops the move
and asks a person, naming the field.

Where no transition leads to the target directly, the issue goes the shortest way. Reading a
workflow's definition needs the Administer Jira global permission ("Get workflows paginated",
Cloud; `/rest/api/2/workflow` on Data Center), which an integration user should not have, so
the plugin learns each issue type's workflow as Jira shows it: the transitions out of a status
are those listed for an issue of that type in that status. A breadth-first search over the
statuses gives the next hop; a status whose exits are not known yet is learned from any issue
of the type sitting in it (`issuetype = Bug AND status = "In Progress"`, one issue, then its
transitions: reads only, at most `PROBES` per move, each kept for the plugin's lifetime). A
rollback reads the transitions of all its issues before moving any. Where the type's workflow
stays unknown, the search runs over what all issue types showed (a hop is taken only when the
issue really offers it), and failing that the plugin takes the untried transition whose
target's status category is closest to the target's. At most `max_transitions` transitions per
issue. A transition POST is sent once (after a lost answer the issue's status has moved; the
next attempt reads it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from itsm_bridge.errors import NeedsHuman
from itsm_bridge_jira.client import JiraClient, quote

log = logging.getLogger(__name__)
CATEGORY_ORDER = {"new": 0, "indeterminate": 1, "done": 2}
PROBES = 10  # statuses learned from other issues, per plan


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str  # target status name
    category: str  # target status category key: new, indeterminate, done
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Transition:
        to = raw.get("to") or {}
        return cls(
            id=str(raw["id"]),
            name=str(raw.get("name") or raw["id"]),
            to=str(to.get("name") or ""),
            category=str((to.get("statusCategory") or {}).get("key") or ""),
            fields=dict(raw.get("fields") or {}),
        )


def same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


class Workflows:
    """The parts of each issue type's workflow seen so far: status -> transitions out of it."""

    def __init__(self) -> None:
        self.edges: dict[str, dict[str, list[Transition]]] = {}
        self.categories: dict[str, str] = {}
        self.probed: set[tuple[str, str]] = set()  # (issue type, status) looked for

    def learn(self, issue_type: str, status: str, transitions: list[Transition]) -> None:
        self.edges.setdefault(issue_type, {})[status.casefold()] = list(transitions)
        for t in transitions:
            self.categories[t.to.casefold()] = t.category

    def known(self, issue_type: str, status: str) -> list[Transition] | None:
        return self.edges.get(issue_type, {}).get(status.casefold())

    def merged(self) -> dict[str, list[Transition]]:
        """What every issue type showed, together (statuses are shared between workflows)."""
        out: dict[str, list[Transition]] = {}
        for graph in self.edges.values():
            for status, transitions in graph.items():
                out.setdefault(status, []).extend(transitions)
        return out


def shortest(edges: Callable[[str], list[Transition]], start: str, target: str) -> list[str] | None:
    """Breadth-first: the statuses after `start` on a shortest way to `target`, or None."""
    if start.casefold() == target.casefold():
        return []
    before: dict[str, str] = {}
    queue = deque([start.casefold()])
    seen = {start.casefold()}
    while queue:
        status = queue.popleft()
        if status == target.casefold():
            way = [status]
            while before[way[-1]] != start.casefold():
                way.append(before[way[-1]])
            return list(reversed(way))
        for t in edges(status):
            nxt = t.to.casefold()
            if nxt not in seen:
                seen.add(nxt)
                before[nxt] = status
                queue.append(nxt)
    return None


class Mover:
    """Moves issues to statuses through `client`, learning the workflows as it goes."""

    def __init__(self, client: JiraClient, workflows: Workflows) -> None:
        self.client = client
        self.workflows = workflows
        self._read: dict[str, list[Transition]] = {}  # read ahead, not yet used

    def transitions(
        self, key: str, issue_type: str, status: str, *, keep: bool = False
    ) -> list[Transition]:
        """The transitions out of the issue's current status (read once, then learned)."""
        if key in self._read:
            return self._read[key] if keep else self._read.pop(key)
        answer = self.client.call(
            "GET",
            f"issue/{key}/transitions",
            f"GET {key} transitions",
            params={"expand": "transitions.fields"},
        )
        found = [Transition.parse(t) for t in (answer or {}).get("transitions") or []]
        self.workflows.learn(issue_type, status, found)
        return found

    def edges(self, issue_type: str, status: str, budget: list[int]) -> list[Transition]:
        """The transitions out of `status` for the issue type: known, or learned from any
        issue of that type in that status (a search and a transitions read, once)."""
        known = self.workflows.known(issue_type, status)
        if known is not None:
            return known
        if (issue_type, status) in self.workflows.probed or budget[0] <= 0:
            return []
        budget[0] -= 1
        self.workflows.probed.add((issue_type, status))
        jql = (
            f"project = {quote(self.client.config.project)} AND issuetype = {quote(issue_type)}"
            f" AND status = {quote(status)}"
        )
        sample = self.client.search(jql, ("status",), what="find a sample issue", limit=1)
        if not sample:
            return []
        return self.transitions(str(sample[0]["key"]), issue_type, status, keep=True)

    def plan(self, issue_type: str, start: str, target: str) -> list[str] | None:
        """A shortest way through the issue type's workflow (learning unknown statuses from
        other issues, at most `PROBES` of them), else through what all types showed."""
        budget = [PROBES]
        statuses = {t.to.casefold(): t.to for out in self.workflows.merged().values() for t in out}
        way = shortest(lambda s: self.edges(issue_type, statuses.get(s, s), budget), start, target)
        if way is None:
            merged = self.workflows.merged()
            way = shortest(lambda s: merged.get(s, []), start, target)
        return way

    def read_ahead(self, key: str, issue_type: str, status: str) -> None:
        """Read (and learn from) an issue's transitions before any issue is moved."""
        self._read[key] = self.transitions(key, issue_type, status)

    def move(self, key: str, issue_type: str, status: str, target: str) -> list[str]:
        """Take the issue from `status` to `target`; the names of the transitions taken."""
        taken: list[str] = []
        tried: set[str] = {status.casefold()}
        limit = self.client.config.max_transitions
        while not same(status, target):
            if len(taken) >= limit:
                raise NeedsHuman(
                    f"jira: {key} did not reach {target!r} in {limit} transitions "
                    f"(now {status!r}, through {', '.join(taken)}); move it by hand"
                )
            available = self.transitions(key, issue_type, status)
            step = self._choose(key, issue_type, status, target, available, tried)
            self._take(key, step, target)
            taken.append(step.name)
            status = step.to
            tried.add(status.casefold())
        if taken:
            log.info("jira: %s moved to %s through %s", key, target, " -> ".join(taken))
        return taken

    def _choose(
        self,
        key: str,
        issue_type: str,
        status: str,
        target: str,
        available: list[Transition],
        tried: set[str],
    ) -> Transition:
        direct = [t for t in available if same(t.to, target)]
        if direct:
            return direct[0]
        way = self.plan(issue_type, status, target)
        if way:
            for t in available:
                if same(t.to, way[0]):
                    return t
        fresh = [t for t in available if t.to.casefold() not in tried]
        if not fresh:
            names = ", ".join(f"{t.name} -> {t.to}" for t in available) or "none"
            raise NeedsHuman(
                f"jira: no transition leads {key} from {status!r} towards {target!r} "
                f"(available: {names}); move it by hand"
            )
        goal = CATEGORY_ORDER.get(self.workflows.categories.get(target.casefold(), ""), 0)
        return min(fresh, key=lambda t: abs(CATEGORY_ORDER.get(t.category, 1) - goal))

    def _take(self, key: str, step: Transition, target: str) -> None:
        fields = screen_fields(key, step, self.client.config.resolution, same(step.to, target))
        self.client.run(
            f"transition {key} ({step.name} -> {step.to})",
            lambda: self.client.jira.transition_issue(key, step.id, fields=fields),
            retry=False,
        )


def screen_fields(key: str, step: Transition, resolution: str, last: bool) -> dict[str, Any]:
    """The fields to send with a transition: only those on its screen (see the module)."""
    out: dict[str, Any] = {}
    missing = []
    for fid, meta in step.fields.items():
        meta = meta if isinstance(meta, dict) else {}
        if fid == "resolution":
            if meta.get("required") or (last and step.category == "done"):
                out["resolution"] = _resolution(key, step, meta, resolution)
        elif meta.get("required") and not meta.get("hasDefaultValue"):
            missing.append(str(meta.get("name") or fid))
    if missing:
        raise NeedsHuman(
            f"jira: transition {step.name!r} of {key} requires {', '.join(missing)}, which the "
            "bridge does not fill; move the issue by hand or make the field optional"
        )
    return out


def _resolution(key: str, step: Transition, meta: dict[str, Any], wanted: str) -> dict[str, str]:
    allowed = [v for v in meta.get("allowedValues") or [] if isinstance(v, dict)]
    if not allowed:
        return {"name": wanted}
    for value in allowed:
        if same(str(value.get("name") or ""), wanted):
            return {"id": str(value["id"])} if value.get("id") else {"name": wanted}
    names = ", ".join(str(v.get("name")) for v in allowed)
    raise NeedsHuman(
        f"jira: resolution {wanted!r} is not offered by {step.name!r} on {key} ({names}); "
        "set plugins.jira.resolution to one of them"
    )
