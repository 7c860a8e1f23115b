"""A post-mortem document written from the audit trail (step 16)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import Event, ExternalRecord, Release
from itsm_bridge.settings import BridgeSettings


def render_post_mortem(release: Release, timeline: list[Event]) -> str:
    """Markdown: outcome, then every event of the release in order."""
    lines = [
        f"# Post-mortem: {release.title}",
        "",
        f"- Release: {release.id}",
        f"- Outcome: {release.state.value}",
        f"- Type: {release.type.value}{' (major)' if release.major else ''}",
    ]
    if release.reason:
        lines.append(f"- Reason given: {release.reason}")
    failures = [e for e in timeline if e.kind in {"failure", "rollback"}]
    if failures:
        lines += ["", "## What went wrong", ""]
        lines += [f"- {e.at:%Y-%m-%d %H:%M:%S}Z {e.message}" for e in failures]
    lines += ["", "## Timeline", "", "| time (UTC) | who | what |", "|---|---|---|"]
    for event in timeline:
        message = event.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {event.at:%Y-%m-%d %H:%M:%S} | {event.actor} | {message} |")
    return "\n".join(lines) + "\n"


class PostMortemDocument:
    """Writes `<data_dir>/post-mortems/<release id>.md` (overwritten on re-run)."""

    def __init__(self, config: BaseModel | None, settings: BridgeSettings) -> None:
        self.directory = Path(settings.data_dir) / "post-mortems"

    @hookimpl(trylast=True)
    def post_mortem(self, release: Release, timeline: list[Event]) -> list[ExternalRecord]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{release.id}.md"
        path.write_text(render_post_mortem(release, timeline), encoding="utf-8")
        return [
            ExternalRecord(
                system="itsm-bridge", kind="post_mortem", id=str(path), url=path.resolve().as_uri()
            )
        ]


plugin = PostMortemDocument
