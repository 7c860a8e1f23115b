"""Step 8 (helper B replaces this file)."""
from __future__ import annotations

from typing import Any


def identify_impact(client: Any, config: Any, bridge: Any, release: Any) -> Any:
    raise NotImplementedError
