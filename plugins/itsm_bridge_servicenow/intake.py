"""Steps 1-2 (helper C replaces this file)."""
from __future__ import annotations

from typing import Any


def collect(client: Any, config: Any, since: Any) -> list[Any]:
    raise NotImplementedError


def note_backlog_item(client: Any, item: Any, backlog_item: Any) -> None:
    raise NotImplementedError
