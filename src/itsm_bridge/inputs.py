"""What people type, parsed and checked: a version, an instant, service levels.

Shared by the CLI (`cli_release`) and the application layer (`commands`); every refusal is a
`UsageError` naming the option and the fix.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from itsm_bridge.errors import UsageError


def parse_service_levels(pairs: list[str]) -> dict[str, str]:
    """`--service-level KEY=VALUE` options as a mapping (keys are identifiers)."""
    levels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(
                f"--service-level {pair!r}: use KEY=VALUE with a name as KEY, e.g. "
                "availability=99.95"
            )
        levels[key.strip()] = value.strip()
    return levels


def parse_when(text: str | None) -> datetime | None:
    """An ISO 8601 instant with a zone (`Z` or an offset)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--not-before: {text!r} is not ISO 8601 (2026-12-05T22:00:00+01:00)"
        ) from None
    if value.tzinfo is None:
        raise UsageError("--not-before needs a time zone, e.g. 2026-12-05T22:00:00+01:00")
    return value


VERSION_MAX = 64


def version_problem(version: str, pattern: str | None = None) -> str | None:
    """Why `version` cannot be a release version (None when it can)."""
    if not version:
        return "--version must not be empty"
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in version):
        return f"--version {version!r} holds whitespace or control characters; remove them"
    if len(version) > VERSION_MAX:
        return f"--version is {len(version)} characters long; at most {VERSION_MAX} are allowed"
    if pattern is not None and re.fullmatch(pattern, version) is None:
        return f"--version {version!r} does not match policy.version_pattern {pattern!r}"
    return None
