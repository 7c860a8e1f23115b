"""The parts of a run's JSON that depend on how it ended: its archived artifacts and the
cause of an interruption (split from `render.py` to keep modules small)."""

from __future__ import annotations

from typing import Any

from itsm_bridge_sandbox.jenkins.model import Build
from itsm_bridge_sandbox.jenkins.spec import artifact_names


def interrupted_action(user: str) -> dict[str, Any]:
    """`jenkins.model.InterruptedBuildAction` with a `CauseOfInterruption$UserInterruption`
    (its `shortDescription` is core's Messages `CauseOfInterruption.ShortDescription`,
    "Aborted by {0}")."""
    return {
        "_class": "jenkins.model.InterruptedBuildAction",
        "causes": [
            {
                "_class": "jenkins.model.CauseOfInterruption$UserInterruption",
                "shortDescription": f"Aborted by {user}",
            }
        ],
    }


def artifacts_json(build: Build) -> list[dict[str, str]]:
    """`Run.getArtifacts()` (`Run$Artifact`: displayPath, fileName, relativePath): archived at
    the end of a build that was not aborted, so empty while it runs."""
    if build.building or build.result == "ABORTED":
        return []
    return [
        {
            "displayPath": name.rsplit("/", 1)[-1],
            "fileName": name.rsplit("/", 1)[-1],
            "relativePath": name,
        }
        for name in artifact_names(build.outcome, dict(build.params))
    ]
