"""Jenkins' `tree=` query parameter: parse it and narrow a JSON document with it.

Syntax, from Jenkins' own `.../api/` help page ("Controlling the amount of data you fetch"):
a comma-separated list of property names, sub-properties inside square brackets
(`builds[number,actions[parameters[name,value]]]`), `*` for every property at a level
(`artifacts[*]`, `changeSet[*[*]]`), and on array properties a range specifier:
`{M,N}` from M inclusive to N exclusive, `{M,}` from M to the end, `{,N}` the first N, `{N}`
just element N. Stapler writes `_class` on every object even when a tree is given
(e.g. `tree=jobs[name]` answers `{"_class": "hudson.model.Hudson", "jobs": [{"_class": ...,
"name": ...}]}`), so `_class` is always kept. A property named without brackets whose value is
an object comes out with its `_class` only, because none of its properties were asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class TreeSyntaxError(ValueError):
    """The tree expression is malformed (Jenkins answers 400 or 500; the sandbox 400)."""


@dataclass
class Node:
    """One requested property: its children (None: none asked for) and optional range."""

    children: dict[str, Node] | None = None
    range: tuple[int | None, int | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse(expression: str) -> dict[str, Node]:
    """Parse `a,b[c,d]{0,10},e[f[g]]` into `{name: Node}`."""
    nodes, pos = _parse_list(expression, 0)
    if pos != len(expression):
        raise TreeSyntaxError(f"unexpected {expression[pos]!r} at {pos} in tree={expression}")
    return nodes


def _parse_list(text: str, pos: int) -> tuple[dict[str, Node], int]:
    nodes: dict[str, Node] = {}
    while pos < len(text):
        start = pos
        while pos < len(text) and text[pos] not in ",[]{}":
            pos += 1
        name = text[start:pos].strip()
        node = Node()
        if pos < len(text) and text[pos] == "[":
            node.children, pos = _parse_list(text, pos + 1)
            if pos >= len(text) or text[pos] != "]":
                raise TreeSyntaxError(f"missing ']' in tree={text}")
            pos += 1
        if pos < len(text) and text[pos] == "{":
            end = text.find("}", pos)
            if end < 0:
                raise TreeSyntaxError(f"missing '}}' in tree={text}")
            node.range = _parse_range(text[pos + 1 : end], text)
            pos = end + 1
        if name:
            nodes[name] = node
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    return nodes, pos


def _parse_range(spec: str, text: str) -> tuple[int | None, int | None]:
    try:
        if "," not in spec:
            index = int(spec)
            return index, index + 1
        low, high = spec.split(",", 1)
        return (int(low) if low.strip() else None, int(high) if high.strip() else None)
    except ValueError as exc:
        raise TreeSyntaxError(f"bad range {{{spec}}} in tree={text}") from exc


def apply(value: Any, nodes: dict[str, Node] | None) -> Any:
    """Narrow `value` (a JSON document) to the properties in `nodes`."""
    if isinstance(value, list):
        return [apply(v, nodes) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    if "_class" in value:
        out["_class"] = value["_class"]
    if not nodes:
        return out
    wanted = nodes
    if "*" in nodes:
        star = nodes["*"]
        wanted = {key: nodes.get(key, star) for key in value}
    for key, node in wanted.items():
        if key not in value or key == "_class":
            continue
        child = value[key]
        if isinstance(child, list) and node.range is not None:
            low, high = node.range
            child = child[low:high]
        if node.children is None and not isinstance(child, dict | list):
            out[key] = child
        else:
            out[key] = apply(child, node.children)
    return out
