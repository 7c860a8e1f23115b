"""`itsm-bridge sandbox` end to end: a real process, real ports, real signals."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.integration

# Runs `itsm_bridge.cli.main` with the sandbox sub-command registered (unless cli.py already
# registers it), so the test exercises the real exit-code handling of the CLI.
LAUNCHER = """
import argparse, sys
import itsm_bridge.cli as cli
from itsm_bridge.cli_sandbox import register
parser = cli.build_parser()
sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
if "sandbox" not in sub.choices:
    cli._EXTENSIONS.append(register)
raise SystemExit(cli.main(sys.argv[1:]))
"""
AUTH = ("sandbox", "sandbox")
TIMEOUT = 20.0


class Running:
    """A `sandbox` process and the URLs it printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.urls: dict[str, str] = {}

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read_urls(self) -> list[str]:
        printed: list[str] = []
        for _ in range(3):
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                self.process.wait(timeout=TIMEOUT)
                pytest.fail(f"sandbox exited early: {self.stderr()}")
            printed.append(line.rstrip("\n"))
        self.urls = dict(line.split(" ", 1) for line in printed)  # type: ignore[misc]
        return printed

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=TIMEOUT)

    def stderr(self) -> str:
        assert self.process.stderr is not None
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read()


def launch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def sandbox_process() -> Iterator[list[Running]]:
    """Started processes; any still alive at the end is killed."""
    started: list[Running] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(timeout=TIMEOUT)


def start(started: list[Running], *args: str) -> Running:
    running = Running(launch(*args))
    started.append(running)
    return running


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_serves_the_seeded_systems_until_sigterm(sandbox_process: list[Running]) -> None:
    running = start(sandbox_process)
    printed = running.read_urls()
    assert [line.split()[0] for line in printed] == ["servicenow", "jira", "jenkins"]
    assert all(url.startswith("http://127.0.0.1:") for url in running.urls.values())

    services = requests.get(
        f"{running.urls['servicenow']}/api/now/table/cmdb_ci_service",
        params={"sysparm_query": "name=payments"},
        auth=AUTH,
        timeout=5,
    )
    assert services.status_code == 200
    assert [row["name"] for row in services.json()["result"]] == ["payments"]

    versions = requests.get(
        f"{running.urls['jira']}/rest/api/2/project/PAY/versions", auth=AUTH, timeout=5
    )
    assert versions.status_code == 200
    assert [v["name"] for v in versions.json()] == ["1.0.0", "1.1.0", "1.4.0", "1.5.0"]

    folder = requests.get(f"{running.urls['jenkins']}/job/payments/api/json", auth=AUTH, timeout=5)
    assert folder.status_code == 200
    assert sorted(job["name"] for job in folder.json()["jobs"]) == [
        "build",
        "deploy",
        "rollback",
        "smoke",
    ]

    assert running.stop(signal.SIGTERM) == 0
    for url in running.urls.values():  # really stopped
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


def test_seeded_credentials_fixed_ports_and_sigint(
    tmp_path: Path, sandbox_process: list[Running]
) -> None:
    seed = yaml.safe_load((Path(__file__).parents[2] / "config" / "sandbox-seed.yaml").read_text())
    seed["servicenow"].update(user="svc_bridge", password="sn-secret")
    seed["jira"].update(user="bridge@acme.com", password="jira-token")
    seed["jenkins"].update(user="bridge", password="jenkins-pw", api_token="jenkins-token")
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(seed, sort_keys=False))  # tables load in order
    sn_port, jira_port, jenkins_port = free_ports(3)

    running = start(
        sandbox_process,
        "--seed",
        str(path),
        "--host",
        "127.0.0.1",
        "--servicenow-port",
        str(sn_port),
        "--jira-port",
        str(jira_port),
        "--jenkins-port",
        str(jenkins_port),
    )
    running.read_urls()
    assert running.urls == {
        "servicenow": f"http://127.0.0.1:{sn_port}",
        "jira": f"http://127.0.0.1:{jira_port}",
        "jenkins": f"http://127.0.0.1:{jenkins_port}",
    }

    sn = f"{running.urls['servicenow']}/api/now/table/cmdb_ci_appl"
    assert requests.get(sn, auth=AUTH, timeout=5).status_code == 401
    assert requests.get(sn, auth=("svc_bridge", "sn-secret"), timeout=5).status_code == 200
    jira = f"{running.urls['jira']}/rest/api/2/project/PAY"
    assert requests.get(jira, auth=AUTH, timeout=5).status_code == 401
    assert requests.get(jira, auth=("bridge@acme.com", "jira-token"), timeout=5).ok
    jenkins = f"{running.urls['jenkins']}/api/json"
    assert requests.get(jenkins, auth=AUTH, timeout=5).status_code == 401
    assert requests.get(jenkins, auth=("bridge", "jenkins-token"), timeout=5).ok
    assert requests.get(jenkins, auth=("bridge", "jenkins-pw"), timeout=5).ok

    assert running.stop(signal.SIGINT) == 0


def test_missing_seed_file_exits_2_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "seed.yaml"
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "sandbox", "--seed", str(missing)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert done.stdout == ""


def test_bad_seed_content_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text("jenkins:\n  jobs:\n    - {name: a/b, colour: blue}\n")
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "sandbox", "--seed", str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert str(path) in done.stderr and "colour" in done.stderr


def test_port_in_use_exits_1(sandbox_process: list[Running]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, "sandbox", "--jira-port", str(port)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert done.returncode == 1
    assert f"port {port} is already in use" in done.stderr
    assert "--jira-port" in done.stderr
    assert done.stdout == ""  # no URL is printed when not every server could start


def test_bad_port_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "sandbox", "--jenkins-port", "70000"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert "0..65535" in done.stderr
