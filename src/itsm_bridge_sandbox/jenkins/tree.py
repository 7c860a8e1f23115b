"""Jenkins' `tree=` query parameter: parse it and narrow a JSON document with it.

Syntax, from Jenkins' own `.../api/` help page ("Controlling the amount of data you fetch")
and Stapler's `NamedPathPruner` (`org.kohsuke.stapler.export`; the same parser is copied in
Blue Ocean's `io.jenkins.blueocean.commons.stapler.export.NamedPathPruner`)::

    list  := node ("," list)?
    node  := NAME ("[" list "]")? ("{" range "}")?
    range := M "," N  (M inclusive, N exclusive) | M "," (to the end) | "," N (the first N)
             | N (element N alone)

`*` names every property at a level (`artifacts[*]`, `changeSet[*[*]]`); a name that is
missing (`jobs[]`, `a,`) or a range that is not digits (`{-1}`) is an error. Stapler's
`ResponseImpl.serveExposedBean` turns one into `ServletException("Malformed tree expression:
" + x)`, which Jenkins answers with a 500 page.

When a tree is given Stapler ignores `depth=` and writes exactly what the tree names, at any
depth: `tree=jobs[name,jobs[name]]` lists the jobs of each folder, which `depth=0` does not.
The sandbox renders such nested objects as `Lazy` values, resolved only where the tree
reaches them. Stapler writes `_class` on every object even when a tree is given (e.g.
`tree=jobs[name]` answers `{"_class": "hudson.model.Hudson", "jobs": [{"_class": ...,
"name": ...}]}`), so `_class` is always kept, and a property named without brackets whose
value is an object comes out with its `_class` only (python-jenkins' `get_all_jobs` docstring:
past the levels its query names, "Jenkins returns empty objects", "a `_class` field ... but
it's missing the requested fields").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class TreeSyntaxError(ValueError):
    """The tree expression is malformed (Jenkins, and the sandbox, answer 500)."""


class Lazy:
    """A nested object rendered only when a tree reaches it (never served as is)."""

    __slots__ = ("_render",)

    def __init__(self, render: Callable[[], Any]) -> None:
        self._render = render

    def __call__(self) -> Any:
        return self._render()


@dataclass
class Node:
    """One requested property: its children (None: none asked for) and optional range."""

    children: dict[str, Node] | None = None
    range: tuple[int, int | None] | None = None


_SPECIAL = ",[]{}"
_NUMBER = re.compile(r"[0-9]+")


def parse(expression: str) -> dict[str, Node]:
    """Parse `a,b[c,d]{0,10},e[f[g]]` into `{name: Node}` (TreeSyntaxError when malformed)."""
    nodes, pos = _parse_list(expression, 0)
    if pos != len(expression):
        raise TreeSyntaxError(f"expected EOF at {pos}")
    return nodes


def _parse_list(text: str, pos: int) -> tuple[dict[str, Node], int]:
    nodes: dict[str, Node] = {}
    while True:
        start = pos
        while pos < len(text) and text[pos] not in _SPECIAL:
            pos += 1
        if pos == start:
            raise TreeSyntaxError(f"expected name at {start}")
        node = nodes[text[start:pos]] = Node()
        if pos < len(text) and text[pos] == "[":
            node.children, pos = _parse_list(text, pos + 1)
            if pos >= len(text) or text[pos] != "]":
                raise TreeSyntaxError(f"expected RBRACE at {pos}")
            pos += 1
        if pos < len(text) and text[pos] == "{":
            end = text.find("}", pos)
            if end < 0:
                raise TreeSyntaxError(f"expected QRBRACE at {pos}")
            node.range = _parse_range(text[pos + 1 : end], pos + 1)
            pos = end + 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return nodes, pos


def _parse_range(spec: str, at: int) -> tuple[int, int | None]:
    low, comma, high = spec.partition(",")
    for part in (low, high) if comma else (low,):
        if part and not _NUMBER.fullmatch(part):
            raise TreeSyntaxError(f"expected number at {at}")
    if not comma:
        if not low:
            raise TreeSyntaxError(f"expected number at {at}")
        return int(low), int(low) + 1
    if not low and not high:
        raise TreeSyntaxError(f"expected number at {at + 1}")
    return (int(low) if low else 0), (int(high) if high else None)


def apply(value: Any, nodes: dict[str, Node] | None) -> Any:
    """Narrow `value` (a JSON document, maybe holding `Lazy` parts) to the tree `nodes`."""
    while isinstance(value, Lazy):  # (a lazy property may render a lazy object)
        value = value()
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
        while isinstance(child, Lazy):
            child = child()
        if isinstance(child, list) and node.range is not None:
            low, high = node.range
            child = child[low:high]
        if node.children is None and not isinstance(child, dict | list):
            out[key] = child
        else:
            out[key] = apply(child, node.children)
    return out
