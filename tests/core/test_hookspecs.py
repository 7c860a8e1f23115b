"""Meta-tests that keep the hook contract honest (after datasette's)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from itsm_bridge import hookspecs
from itsm_bridge.plugins import available_entry_points, load_plugins
from itsm_bridge.settings import settings_from_mapping

TESTS = Path(__file__).parents[1]
HOOKS = hookspecs.hook_names()


def test_every_step_hook_of_the_design_exists() -> None:
    design = {
        "collect_work_items", "add_to_backlog", "release_scope", "start_job", "job_status",
        "maintenance_windows", "freeze_periods", "create_change", "evaluate_change",
        "identify_impact", "plan_tasks", "create_tasks", "render_release_notes",
        "publish_release_notes", "detect_failure", "return_to_backlog", "notify_stakeholders",
        "post_mortem", "update_service_levels", "release_changed", "register_webhooks",
        "register_pollers",
    }  # fmt: skip
    assert design <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_exact_signature(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    params = list(inspect.signature(spec).parameters)
    documented = re.findall(r":param (\w+):", doc)
    assert documented == params, f"{name}: document every parameter, in order"
    assert ":returns:" in doc, f"{name}: say what it returns"
    assert re.search(r"^Called ", doc, re.M), f"{name}: say when it is called"
    assert inspect.signature(spec).return_annotation != inspect.Signature.empty
    summary = doc.splitlines()[0]
    assert summary.endswith("."), f"{name}: one summary line first"
    firstresult = getattr(spec, f"{hookspecs.PROJECT}_spec")["firstresult"]
    says_first = "Stops at first non-None result" in doc
    assert firstresult == says_first, f"{name}: say whether it stops at the first result"


def implemented_by(plugin: object) -> set[str]:
    """Hook names a plugin module or class implements (without configuring it)."""
    marker = f"{hookspecs.PROJECT}_impl"
    return {name for name in dir(plugin) if hasattr(getattr(plugin, name, None), marker)}


def test_every_implemented_hook_has_a_test() -> None:
    host = load_plugins(settings_from_mapping({}))
    implemented = {hook for info in host.get_plugins() for hook in info.hooks}
    for entry_point in available_entry_points().values():
        implemented |= implemented_by(entry_point.load())
    assert "create_change" in implemented  # the installed vendor plugins are inspected
    sources = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py"))
    missing = sorted(h for h in implemented if f"def test_hook_{h}" not in sources)
    assert not missing, f"add a test_hook_<name> for: {missing}"
