"""What the release process needs from the Jenkins sandbox: queue items that Jenkins forgets,
outcomes chosen by a build's parameters, archived artifacts and who aborted a build."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from support import ManualClock

AUTH = ("sandbox", "sandbox")


@pytest.fixture
def sandbox(clock: ManualClock) -> Iterator[JenkinsSandbox]:
    server = JenkinsSandbox(load_seed()["jenkins"], clock=clock)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(sandbox: JenkinsSandbox, path: str, **params: str) -> requests.Response:
    return requests.get(sandbox.url + path, params=params, auth=AUTH, timeout=5)


def trigger(sandbox: JenkinsSandbox, job: str, **params: str) -> int:
    path = "/job/" + "/job/".join(job.split("/")) + "/buildWithParameters"
    response = requests.post(sandbox.url + path, data=params, auth=AUTH, timeout=5)
    assert response.status_code == 201, response.text
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def test_a_left_queue_item_is_forgotten_after_five_minutes(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    item = trigger(sandbox, "payments/deploy", RELEASE_ID="rel-1", VERSION="1.0.0")
    clock.tick(1)  # quiet period over: the build started
    left = get(sandbox, f"/queue/item/{item}/api/json").json()
    assert left["executable"]["number"] == 1
    clock.tick(299 - 1)  # 299 s after it left the queue: still remembered
    assert get(sandbox, f"/queue/item/{item}/api/json").status_code == 200
    clock.tick(1.5)
    assert get(sandbox, f"/queue/item/{item}/api/json").status_code == 404
    # the build keeps the id of the queue item it came from
    build = get(sandbox, "/job/payments/job/deploy/1/api/json", tree="queueId").json()
    assert build["queueId"] == item


def test_a_cancelled_queue_item_is_forgotten_too(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    item = trigger(sandbox, "payments/deploy", RELEASE_ID="rel-1", VERSION="1.0.0")
    cancel = requests.post(
        sandbox.url + "/queue/cancelItem", params={"id": item}, auth=AUTH, timeout=5
    )
    assert cancel.status_code == 204
    assert get(sandbox, f"/queue/item/{item}/api/json").json()["cancelled"] is True
    clock.tick(300)
    assert get(sandbox, f"/queue/item/{item}/api/json").status_code == 404


def test_the_seeded_rule_fails_the_smoke_test_of_one_version(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    trigger(sandbox, "payments/smoke", RELEASE_ID="rel-1", VERSION="1.0.0")
    trigger(sandbox, "payments/smoke", RELEASE_ID="rel-2", VERSION="1.1.0")
    clock.tick(5)
    tree = "result,actions[failCount,totalCount]"
    ok = get(sandbox, "/job/payments/job/smoke/1/api/json", tree=tree).json()
    failed = get(sandbox, "/job/payments/job/smoke/2/api/json", tree=tree).json()
    assert ok["result"] == "SUCCESS"
    assert failed["result"] == "FAILURE"
    counts = next(a for a in failed["actions"] if "failCount" in a)
    assert (counts["failCount"], counts["totalCount"]) == (2, 12)
    report = get(sandbox, "/job/payments/job/smoke/2/testReport/api/json").json()
    assert (report["passCount"], report["failCount"]) == (10, 2)


def test_a_script_wins_over_a_rule(sandbox: JenkinsSandbox, clock: ManualClock) -> None:
    sandbox.script_next("payments/smoke", result="SUCCESS")
    trigger(sandbox, "payments/smoke", RELEASE_ID="rel-2", VERSION="1.1.0")
    clock.tick(5)
    assert sandbox.build("payments/smoke", 1)["result"] == "SUCCESS"


def test_artifacts_are_archived_when_the_build_ends(
    sandbox: JenkinsSandbox, clock: ManualClock
) -> None:
    trigger(sandbox, "payments/build", RELEASE_ID="rel-1", VERSION="1.4.0")
    clock.tick(0.5)  # running
    assert sandbox.build("payments/build", 1)["artifacts"] == []
    clock.tick(5)
    assert sandbox.build("payments/build", 1)["artifacts"] == [
        {
            "displayPath": "payments-1.4.0.tar.gz",
            "fileName": "payments-1.4.0.tar.gz",
            "relativePath": "dist/payments-1.4.0.tar.gz",
        }
    ]


def test_an_aborted_build_says_who_aborted_it(sandbox: JenkinsSandbox, clock: ManualClock) -> None:
    trigger(sandbox, "payments/deploy", RELEASE_ID="rel-1")
    clock.tick(0.5)
    stop = requests.post(
        sandbox.url + "/job/payments/job/deploy/1/stop",
        auth=AUTH,
        timeout=5,
        allow_redirects=False,
    )
    assert stop.status_code == 302
    build = get(
        sandbox,
        "/job/payments/job/deploy/1/api/json",
        tree="result,actions[causes[shortDescription]]",
    ).json()
    assert build["result"] == "ABORTED"
    interrupted = [
        a for a in build["actions"] if a.get("_class", "").endswith("InterruptedBuildAction")
    ]
    assert interrupted == [
        {
            "_class": "jenkins.model.InterruptedBuildAction",
            "causes": [
                {
                    "_class": "jenkins.model.CauseOfInterruption$UserInterruption",
                    "shortDescription": "Aborted by sandbox",
                }
            ],
        }
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"result": "FAILURE"}, "a rule is {when"),
        ({"when": {"VERSION": "1"}, "colour": "red"}, "unknown keys ['colour']"),
        ({"when": {"VERSION": "1"}, "result": "BROKEN"}, "result must be one of"),
    ],
)
def test_bad_rules_are_refused_with_their_place(rule: dict[str, Any], message: str) -> None:
    seed = {"jobs": [{"name": "a", "parameters": ["VERSION"], "rules": [rule]}]}
    with pytest.raises(ValueError, match=r"jenkins\.jobs\[0\]\.rules\[0\]") as caught:
        JenkinsSandbox(seed)
    assert message in str(caught.value)
