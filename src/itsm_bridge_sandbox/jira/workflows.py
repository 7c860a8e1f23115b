"""Workflows of the Jira sandbox: the transitions out of each status, per issue type.

Real workflows name their transitions differently from the statuses they lead to, and many
have no direct way back from Done, so clients must choose transitions by target status and,
where needed, walk several. Two workflows are built in:

- `default` (every issue type unless a project says otherwise): To Do -> In Progress ->
  In Review -> Done, with "Reopen" straight from Done to To Do; no screens.
- `strict`: no transition from Done to To Do. Done goes back through "Reopen for review"
  (to In Review) or "Reopen" (to In Progress), and only In Progress goes "Back to backlog":
  the shortest way from Done to To Do is two transitions, the first one listed leads to a
  three-transition way. "Resolve" has a screen on which Resolution is required.

A project picks a workflow per issue type in the seed (`workflows: {Bug: strict}`) or gives
its own list: `[{id, name, to, from: [...], screen: [...], required: [...]}]`.

Screens ("Get transitions", Jira Server REST 9 / Cloud v2: "Fields will only be returned if
expand=transitions.fields. The fields in the metadata correspond to the fields in the
transition screen for that transition. Fields not in the screen will not be in the
metadata."): a transition request may set only the fields of its screen, and must set the
required ones. The sandbox knows one screen field, `resolution`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RESOLUTIONS = {"Done": "10000", "Won't Do": "10001", "Duplicate": "10002"}
SCREEN_FIELDS = {"resolution": "Resolution"}


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to: str
    sources: tuple[str, ...]
    screen: tuple[str, ...] = ()  # field ids on the transition's screen
    required: tuple[str, ...] = ()  # those of them the screen requires


DEFAULT = [
    Transition("11", "Start work", "In Progress", ("To Do",)),
    Transition("21", "Send to review", "In Review", ("In Progress",)),
    Transition("31", "Resolve", "Done", ("In Progress", "In Review")),
    Transition("41", "Reopen", "To Do", ("Done",)),
    Transition("51", "Back to backlog", "To Do", ("In Progress", "In Review")),
    Transition("61", "Request changes", "In Progress", ("In Review",)),
]

STRICT = [
    Transition("11", "Start work", "In Progress", ("To Do",)),
    Transition("21", "Send to review", "In Review", ("In Progress",)),
    Transition(
        "31", "Resolve", "Done", ("In Review",), screen=("resolution",), required=("resolution",)
    ),
    Transition("45", "Reopen for review", "In Review", ("Done",)),
    Transition("41", "Reopen", "In Progress", ("Done",)),
    Transition("51", "Back to backlog", "To Do", ("In Progress",)),
    Transition("61", "Request changes", "In Progress", ("In Review",)),
]

BUILTIN = {"default": DEFAULT, "strict": STRICT}


def parse(spec: Any, statuses: set[str]) -> list[Transition]:
    """A workflow from the seed: a built-in name or a list of transition objects."""
    if isinstance(spec, str):
        if spec not in BUILTIN:
            raise ValueError(f"unknown workflow {spec!r} (built in: {', '.join(BUILTIN)})")
        return list(BUILTIN[spec])
    if not isinstance(spec, list) or not spec:
        raise ValueError("a workflow is a built-in name or a non-empty list of transitions")
    out = []
    for n, item in enumerate(spec, start=1):
        if not isinstance(item, dict) or not item.get("name") or not item.get("to"):
            raise ValueError(f"transition {n}: needs name, to and from")
        sources = item.get("from") or []
        sources = [sources] if isinstance(sources, str) else list(sources)
        unknown = [s for s in [item["to"], *sources] if s not in statuses]
        if unknown:
            raise ValueError(f"transition {item['name']!r}: unknown status {unknown[0]!r}")
        screen = tuple(item.get("screen") or ())
        required = tuple(item.get("required") or ())
        bad = [f for f in (*screen, *required) if f not in SCREEN_FIELDS] + [
            f for f in required if f not in screen
        ]
        if bad:
            raise ValueError(f"transition {item['name']!r}: field {bad[0]!r} not on a screen")
        out.append(
            Transition(
                str(item.get("id") or 100 + n),
                str(item["name"]),
                str(item["to"]),
                tuple(sources),
                screen,
                required,
            )
        )
    return out


def field_meta(base: str, field: str, required: bool) -> dict[str, Any]:
    """The metadata of one screen field, as `expand=transitions.fields` shows it."""
    allowed = [
        {"self": f"{base}/resolution/{rid}", "id": rid, "name": name, "description": ""}
        for name, rid in RESOLUTIONS.items()
    ]
    return {
        "required": required,
        "schema": {"type": field, "system": field},
        "name": SCREEN_FIELDS[field],
        "key": field,
        "hasDefaultValue": False,
        "operations": ["set"],
        "allowedValues": allowed,
    }


def resolution_name(value: Any) -> str | None:
    """The resolution a transition request names (`{"name": ...}` or `{"id": ...}`)."""
    if not isinstance(value, dict):
        return None
    for name, rid in RESOLUTIONS.items():
        if value.get("id") == rid or str(value.get("name", "")).lower() == name.lower():
            return name
    return None
