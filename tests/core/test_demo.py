"""`itsm-bridge demo` runs the whole process against the sandbox and ends both releases."""

from __future__ import annotations

from itsm_bridge.demo import run_demo


def test_demo_runs_both_releases_to_closed() -> None:
    lines: list[str] = []
    assert run_demo(say=lines.append) == 0
    text = "\n".join(lines)
    assert text.count("succeeded -> closed") >= 1
    assert "verifying -> failed" in text
    assert "rolled_back -> closed" in text
    assert "demo finished" in text
