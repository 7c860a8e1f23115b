"""Release notes rendered from the backlog items with sandboxed Jinja2 templates (step 10)."""

from __future__ import annotations

from jinja2.sandbox import SandboxedEnvironment

from itsm_bridge.hookspecs import hookimpl
from itsm_bridge.models import BacklogItem, Release, ReleaseNotes

MARKDOWN = """\
# {{ release.title }}

- Service: {{ release.service }}
- Version: {{ release.version }}
- Type: {{ release.type.value }}{% if release.major %} (major){% endif %}
{%- if release.window_start %}
- Window: {{ release.window_start.strftime('%Y-%m-%d %H:%M') }} to \
{{ release.window_end.strftime('%Y-%m-%d %H:%M') }} UTC
{%- endif %}

## Changes
{% for item in items %}
- {{ item.key }} {{ item.summary }}{% if item.kind %} ({{ item.kind }}){% endif %}
{%- else %}
- No backlog items are linked to this version.
{%- endfor %}
"""

HTML = """\
<h1>{{ release.title }}</h1>
<ul>
<li>Service: {{ release.service }}</li>
<li>Version: {{ release.version }}</li>
<li>Type: {{ release.type.value }}{% if release.major %} (major){% endif %}</li>
{%- if release.window_start %}
<li>Window: {{ release.window_start.strftime('%Y-%m-%d %H:%M') }} to \
{{ release.window_end.strftime('%Y-%m-%d %H:%M') }} UTC</li>
{%- endif %}
</ul>
<h2>Changes</h2>
<ul>
{%- for item in items %}
<li>{% if item.url %}<a href="{{ item.url }}">{{ item.key }}</a>{% else %}{{ item.key }}\
{% endif %} {{ item.summary }}{% if item.kind %} ({{ item.kind }}){% endif %}</li>
{%- else %}
<li>No backlog items are linked to this version.</li>
{%- endfor %}
</ul>
"""

_markdown_env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_html_env = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)


@hookimpl(trylast=True)
def render_release_notes(release: Release, items: list[BacklogItem]) -> ReleaseNotes:
    """Markdown and HTML notes listing every backlog item of the release."""
    context = {"release": release, "items": items}
    return ReleaseNotes(
        title=release.title,
        markdown=_markdown_env.from_string(MARKDOWN).render(context),
        html=_html_env.from_string(HTML).render(context),
        items=items,
    )
