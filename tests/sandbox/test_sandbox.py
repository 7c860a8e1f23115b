"""The sandbox orchestrator: the seed file, the three servers together, their failures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
import yaml

import itsm_bridge_sandbox as sandbox_pkg
from itsm_bridge.errors import ConfigError, OperationFailed
from itsm_bridge_sandbox import (
    JenkinsSandbox,
    JiraSandbox,
    Sandbox,
    ServiceNowSandbox,
    default_seed_path,
    load_seed,
)

SEED_FILE = Path(__file__).resolve().parents[2] / "config" / "sandbox-seed.yaml"
AUTH = ("sandbox", "sandbox")


def test_default_seed_is_the_repository_file() -> None:
    assert default_seed_path() == SEED_FILE
    seed = load_seed(None)
    assert list(seed) == ["servicenow", "jira", "jenkins"]
    assert seed == load_seed(SEED_FILE) == load_seed(str(SEED_FILE))
    records = seed["servicenow"]["records"]
    assert [row["name"] for row in records["cmdb_ci_service"]] == ["payments"]
    assert records["cmdb_ci_appl"] and records["cmdb_ci_db_instance"]
    project = seed["jira"]["projects"][0]
    assert project["key"] == "PAY" and len(project["versions"]) == 4 and project["issues"]
    assert [job["name"] for job in seed["jenkins"]["jobs"]] == [
        "payments/build",
        "payments/deploy",
        "payments/smoke",
        "payments/rollback",
    ]


def test_packaged_copy_wins_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = tmp_path / "default-seed.yaml"
    packaged.write_text("jira: {projects: [{key: ZZZ}]}\n")
    monkeypatch.setattr(sandbox_pkg, "PACKAGED_SEED", packaged)
    assert default_seed_path() == packaged
    assert load_seed(None)["jira"] == {"projects": [{"key": "ZZZ"}]}
    monkeypatch.setattr(sandbox_pkg, "PACKAGED_SEED", tmp_path / "absent.yaml")
    monkeypatch.setattr(sandbox_pkg, "SOURCE_SEED", tmp_path / "absent-too.yaml")
    with pytest.raises(ConfigError, match="--seed FILE"):
        default_seed_path()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("servicenow: [1, 2\n", r"not valid YAML at line 2"),
        (
            "- servicenow\n- jira\n",
            r"must be a mapping with the keys servicenow, jira, "
            r"jenkins \(found a list\)",
        ),
        ("jira: {}\nbamboo: {}\n", r"unknown top-level key\(s\) bamboo"),
        ("jenkins: [a, b]\n", r"`jenkins` must be a mapping \(found a list\)"),
    ],
)
def test_bad_seed_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_seed(path)
    assert str(caught.value).startswith(f"sandbox seed {path}: ")


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it") as caught:
        load_seed(tmp_path / "missing.yaml")
    assert str(tmp_path / "missing.yaml") in str(caught.value)


def test_empty_seed_gives_empty_servers(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\njira:\n")
    seed = load_seed(path)
    assert seed == {"servicenow": {}, "jira": {}, "jenkins": {}}
    with Sandbox(seed, source=path) as sandbox:
        jobs = requests.get(sandbox.urls["jenkins"] + "/api/json", auth=AUTH, timeout=5)
        assert jobs.json()["jobs"] == []
        projects = requests.get(sandbox.urls["jira"] + "/rest/api/2/project", auth=AUTH, timeout=5)
        assert projects.json() == []


def test_a_part_the_server_refuses_names_file_and_part(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("servicenow:\n  records:\n    no_such_table: [{name: x}]\n")
    with pytest.raises(ConfigError, match=r"`servicenow` part: .*unknown table 'no_such_table'"):
        Sandbox(load_seed(path), source=path)
    with pytest.raises(ConfigError, match=r"`jira` part: missing key 'key'"):
        Sandbox({"jira": {"projects": [{"name": "No key"}]}})


def test_start_serves_all_three_and_stop_stops_them() -> None:
    sandbox = Sandbox()
    assert isinstance(sandbox.servicenow, ServiceNowSandbox)
    assert isinstance(sandbox.jira, JiraSandbox)
    assert isinstance(sandbox.jenkins, JenkinsSandbox)
    assert not sandbox.running and sandbox.urls == {}
    urls = sandbox.start()
    try:
        assert list(urls) == ["servicenow", "jira", "jenkins"]
        assert urls == sandbox.urls
        assert urls["jira"] == sandbox.jira.url
        with pytest.raises(RuntimeError, match="already started"):
            sandbox.start()
        rows = requests.get(
            urls["servicenow"] + "/api/now/table/cmdb_ci_service", auth=AUTH, timeout=5
        ).json()["result"]
        assert [row["name"] for row in rows] == ["payments"]
    finally:
        sandbox.stop()
    sandbox.stop()  # twice is fine
    assert not sandbox.running
    with pytest.raises(requests.ConnectionError):
        requests.get(urls["servicenow"], timeout=2)


def test_fixed_ports_and_unknown_systems() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sandbox = Sandbox({})
    with pytest.raises(ValueError, match="bamboo"):
        sandbox.start(ports={"bamboo": 1})
    try:
        urls = sandbox.start("127.0.0.1", {"jenkins": port})
        assert urls["jenkins"] == f"http://127.0.0.1:{port}"
    finally:
        sandbox.stop()


def test_port_in_use_fails_and_leaves_nothing_running() -> None:
    sandbox = Sandbox({})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            OperationFailed,
            match=rf"jenkins sandbox cannot listen on "
            rf"127.0.0.1:{port}: port {port} is already",
        ):
            sandbox.start(ports={"jenkins": port})
    assert not sandbox.running
    for server in (sandbox.servicenow, sandbox.jira, sandbox.jenkins):
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.url


def test_each_server_accepts_the_whole_document_or_its_part() -> None:
    whole = yaml.safe_load(SEED_FILE.read_text())

    def cis(server: ServiceNowSandbox) -> list[str]:
        return sorted(row["name"] for row in server.store.rows_of("cmdb_ci"))

    def projects(server: JiraSandbox) -> list[str]:
        return sorted(project.key for project in server.store.projects.values())

    def jobs(server: JenkinsSandbox) -> list[str]:
        return sorted(job.full_name for job in server.model.all_jobs())

    assert cis(ServiceNowSandbox(whole)) == cis(ServiceNowSandbox(whole["servicenow"]))
    assert "payments-db" in cis(ServiceNowSandbox(whole))
    assert projects(JiraSandbox(whole)) == projects(JiraSandbox(whole["jira"])) == ["PAY"]
    assert jobs(JenkinsSandbox(whole)) == jobs(JenkinsSandbox(whole["jenkins"]))
    assert "payments/rollback" in jobs(JenkinsSandbox(whole))
