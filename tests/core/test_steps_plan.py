"""What the step handlers share (`StepEnv`): the poll interval of a waiting step."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from itsm_bridge.plugins import PluginHost
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge.steps_plan import StepEnv


def test_a_waiting_step_polls_within_its_interval_and_releases_spread_their_polls() -> None:
    settings = settings_from_mapping({"policy": {"poll_seconds": 100}})
    env = StepEnv(host=cast(PluginHost, None), settings=settings)
    polls = [env.poll for _ in range(500)]
    assert all(timedelta(seconds=80) <= p <= timedelta(seconds=100) for p in polls)
    assert len(set(polls)) > 400  # spread, not a burst every 100 s
    assert max(polls) - min(polls) > timedelta(seconds=15)
