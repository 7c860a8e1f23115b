"""Step 5 (helper B replaces this file)."""
from __future__ import annotations

from typing import Any


def maintenance_windows(client: Any, config: Any, release: Any, start: Any, end: Any) -> list[Any]:
    raise NotImplementedError


def blackouts(client: Any, config: Any, release: Any, start: Any, end: Any) -> list[Any]:
    raise NotImplementedError
