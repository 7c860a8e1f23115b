"""Steps 6-7 and every state change: the change_request. (helper A replaces this file)"""
from __future__ import annotations

from typing import Any


def find_or_create(client: Any, config: Any, bridge: Any, release: Any, notes: Any) -> Any:
    raise NotImplementedError


def findings(client: Any, config: Any, bridge: Any, release: Any) -> list[Any]:
    raise NotImplementedError


def approval(client: Any, release: Any) -> Any:
    raise NotImplementedError


def sync(client: Any, config: Any, release: Any, event: Any) -> None:
    raise NotImplementedError
