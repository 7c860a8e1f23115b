"""The /webhooks/servicenow handler (helper C replaces this file)."""
from __future__ import annotations

from typing import Any


class Handler:
    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, headers: dict[str, str], body: bytes) -> list[dict[str, Any]]:
        raise NotImplementedError
