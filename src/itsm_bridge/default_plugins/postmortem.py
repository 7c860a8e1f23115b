"""The post-mortem documents (step 16): Markdown and HTML, written from the report.

Sections: the outcome; what went wrong (the failure and its evidence) and what was rolled
back, for a failed release; the steps with their durations; the timeline, every event of the
audit trail in order (exactly: one row per event); the follow-ups. Written to
`<data_dir>/post-mortems/<release id>.md` and `.html` (overwritten on a re-run), rendered with
sandboxed Jinja2 (the HTML autoescaped).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import ExternalRecord, PostMortemReport, Release
from itsm_bridge.settings import BridgeSettings

MARKDOWN = """\
# Post-mortem: {{ release.title }}

- Release: {{ release.id }}
- Outcome: {{ release.state.value }}{% if release.failure_reason %} \
(failed: {{ release.failure_reason | md }}){% endif %}
- Type: {{ release.type.value }}{% if release.major %} (major){% endif %}
{%- if release.deploy_started_at %}
- Deployment started: {{ release.deploy_started_at | time }} UTC
{%- endif %}
{%- if release.failure_reason %}

## What went wrong

{{ release.failure_reason | md }}
{% for key, value in report.failure_evidence | dictsort %}
- {{ key }}: {{ value | md }}
{%- endfor %}

## What was rolled back

Version {{ release.version }} was rolled back\
{% if report.rolled_back_to %} to {{ report.rolled_back_to }}{% endif %}; \
{{ release.scope | length }} backlog item(s) returned to the backlog\
{% if release.scope %}: {{ release.scope | map(attribute="key") | join(", ") }}{% endif %}.
{%- endif %}

## Steps

| # | step | status | started (UTC) | duration | outcome |
|---|---|---|---|---|---|
{% for step in report.steps -%}
| {{ step.number }} | {{ step.name }} | {{ step.status }} | {{ step.started_at | time }} | \
{{ step.duration | length_of }} | {{ step.detail | md }} |
{% endfor %}
## Timeline

| time (UTC) | who | what |
|---|---|---|
{% for event in report.timeline -%}
| {{ event.at | time }} | {{ event.actor | md }} | {{ event.message | md }} |
{% endfor %}
## Follow-ups
{% for item in report.follow_ups %}
- [ ] {{ item | md }}
{%- else %}
- none
{%- endfor %}
"""

HTML = """\
<h1>Post-mortem: {{ release.title }}</h1>
<ul>
<li>Release: {{ release.id }}</li>
<li>Outcome: {{ release.state.value }}{% if release.failure_reason %} \
(failed: {{ release.failure_reason }}){% endif %}</li>
<li>Type: {{ release.type.value }}{% if release.major %} (major){% endif %}</li>
</ul>
{%- if release.failure_reason %}
<h2>What went wrong</h2>
<p>{{ release.failure_reason }}</p>
<ul>{% for key, value in report.failure_evidence | dictsort %}
<li>{{ key }}: {{ value }}</li>{% endfor %}
</ul>
<h2>What was rolled back</h2>
<p>Version {{ release.version }} was rolled back\
{% if report.rolled_back_to %} to {{ report.rolled_back_to }}{% endif %};
{{ release.scope | length }} backlog item(s) returned to the backlog.</p>
{%- endif %}
<h2>Steps</h2>
<table>
<tr><th>#</th><th>step</th><th>status</th><th>started (UTC)</th><th>duration</th>\
<th>outcome</th></tr>
{%- for step in report.steps %}
<tr><td>{{ step.number }}</td><td>{{ step.name }}</td><td>{{ step.status }}</td>\
<td>{{ step.started_at | time }}</td><td>{{ step.duration | length_of }}</td>\
<td>{{ step.detail }}</td></tr>
{%- endfor %}
</table>
<h2>Timeline</h2>
<table>
<tr><th>time (UTC)</th><th>who</th><th>what</th></tr>
{%- for event in report.timeline %}
<tr><td>{{ event.at | time }}</td><td>{{ event.actor }}</td><td>{{ event.message }}</td></tr>
{%- endfor %}
</table>
<h2>Follow-ups</h2>
<ul>
{%- for item in report.follow_ups %}
<li>{{ item }}</li>
{%- else %}
<li>none</li>
{%- endfor %}
</ul>
"""


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _length(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _md(value: Any) -> str:
    """A value inside a Markdown table cell: one line, pipes escaped."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=autoescape, keep_trailing_newline=True)
    env.filters.update(time=_time, length_of=_length, md=_md)
    return env


_markdown = _environment(False).from_string(MARKDOWN)
_html = _environment(True).from_string(HTML)


def render(release: Release, report: PostMortemReport) -> tuple[str, str]:
    """The post-mortem as (Markdown, HTML)."""
    context = {"release": release, "report": report}
    return _markdown.render(context), _html.render(context)


class PostMortemDocument:
    """Writes `<data_dir>/post-mortems/<release id>.md` and `.html` (overwritten on re-run)."""

    def __init__(self, config: BaseModel | None, settings: BridgeSettings) -> None:
        self.directory = Path(settings.data_dir) / "post-mortems"

    @hookimpl(trylast=True)
    def post_mortem(self, release: Release, report: PostMortemReport) -> list[ExternalRecord]:
        """Write both documents; one record each (its file URL)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        records = []
        for suffix, text in zip((".md", ".html"), render(release, report), strict=True):
            path = self.directory / f"{release.id}{suffix}"
            path.write_text(text, encoding="utf-8")
            records.append(
                ExternalRecord(
                    system="itsm-bridge",
                    kind="post_mortem",
                    id=str(path),
                    url=path.resolve().as_uri(),
                    key=suffix.lstrip("."),
                )
            )
        return records


plugin = PostMortemDocument
