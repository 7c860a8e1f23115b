"""`itsm-bridge run`: refusing to start without a token, serving in-process, stopping
gracefully, signals (the subprocess tests are in tests/integration/test_daemon.py)."""

from __future__ import annotations

import gc
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from daemon.daemon_harness import wait_for
from itsm_bridge import http
from itsm_bridge.cli import main
from itsm_bridge.daemon import run as run_module
from itsm_bridge.daemon.run import Daemon, listen_address
from itsm_bridge.errors import OperationFailed
from itsm_bridge.settings import settings_from_mapping


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp_path: Path, **server: Any) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {"database": f"sqlite:///{tmp_path}/b.db", "data_dir": str(tmp_path), "server": server}
        )
    )
    return path


@pytest.fixture
def no_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the daemon must not be built")

    monkeypatch.setattr(run_module, "Daemon", refuse)


@pytest.mark.parametrize("server", [{}, {"token": "  "}], ids=["no token", "blank token"])
def test_run_refuses_to_start_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_daemon: None, server: dict[str, str]
) -> None:
    code = main(["-c", str(config(tmp_path, **server)), "run"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: server.token:")
    assert "BRIDGE_API_TOKEN" in err  # says how to set it


def test_run_takes_text_or_json_logs_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_daemon: None
) -> None:
    assert main(["-c", str(config(tmp_path, token="t")), "run", "--log-format", "xml"]) == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_run_freezes_what_start_up_built_in_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []

    class Recorder:
        def __init__(self, settings: object) -> None:
            self.freeze_gc = False

        def serve(self) -> int:
            seen.append(self.freeze_gc)
            return 0

    monkeypatch.setattr(run_module, "Daemon", Recorder)
    monkeypatch.setattr("itsm_bridge.daemon.logs.configure_logging", lambda *a: None)
    assert main(["-c", str(config(tmp_path, token="t")), "run"]) == 0
    assert seen == [True]


def test_freezing_moves_the_objects_alive_out_of_the_collectors_way() -> None:
    threshold = gc.get_threshold()
    try:
        run_module.freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (10_000, threshold[1], threshold[2])  # young: not 700
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_listen_addresses() -> None:
    assert listen_address("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert listen_address("[::1]:9000") == ("::1", 9000)
    assert listen_address("0.0.0.0:80") == ("0.0.0.0", 80)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_port()
    settings = settings_from_mapping(
        {
            "database": f"sqlite:///{tmp_path}/b.db",
            "data_dir": str(tmp_path),
            "server": {"listen": f"127.0.0.1:{port}", "token": "tok", "shutdown_seconds": 2},
            "services": {"payments": {}},
        }
    )
    made = Daemon(settings)
    made.exits: list[int] = []  # type: ignore[attr-defined]
    made.exit = made.exits.append  # type: ignore[attr-defined,assignment]
    yield made
    made.stopping.set()
    http.set_observer(None)


def serve_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[int], str]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.serve()), daemon=True)
    thread.start()
    base = f"http://{daemon.settings.server.listen}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=10, every=0.05)
    return thread, codes, base


def test_the_daemon_serves_advances_and_stops_gracefully(daemon: Daemon) -> None:
    thread, codes, base = serve_in_thread(daemon)
    wait_for(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200)
    created = requests.post(
        f"{base}/api/v1/releases",
        json={"service": "payments", "version": "1.0.0"},
        headers={"Authorization": "Bearer tok"},
        timeout=5,
    )
    assert created.status_code == 201, created.text
    rid = created.json()["id"]

    def planned() -> bool:  # the worker woke at once and ran the planning steps
        with daemon.store.begin() as tx:
            return any(s.status != "pending" for s in tx.steps(rid))

    wait_for(planned, timeout=3)
    metrics = requests.get(f"{base}/metrics", timeout=2).text
    assert "itsm_bridge_step_duration_seconds_count" in metrics  # on_step is the metrics'
    started = time.monotonic()
    daemon.stopping.set()
    thread.join(5)
    assert codes == [0]
    assert time.monotonic() - started < 2
    assert daemon.exits == []  # type: ignore[attr-defined]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=1)
    assert not daemon.worker.inflight


def test_a_port_in_use_is_one_line_and_no_hang(daemon: Daemon) -> None:
    host, port = listen_address(daemon.settings.server.listen)
    with socket.socket() as taken:
        taken.bind((host, port))
        taken.listen()
        started = time.monotonic()
        with pytest.raises(OperationFailed, match=r"cannot serve on 127\.0\.0\.1:\d+"):
            daemon.serve()
    assert time.monotonic() - started < 5


def test_a_signal_stops_and_a_second_one_exits_at_once(daemon: Daemon) -> None:
    daemon._on_signal(signal.SIGTERM, None)
    assert daemon.stopping.is_set() and daemon.exits == []  # type: ignore[attr-defined]
    daemon._on_signal(signal.SIGINT, None)
    assert daemon.exits == [1]  # type: ignore[attr-defined]


def test_steps_that_outlive_the_deadline_do_not_hold_the_exit(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, _, _ = serve_in_thread(daemon)
    monkeypatch.setattr(daemon.worker, "drain", lambda deadline: ["rel-x"])
    daemon.stopping.set()
    thread.join(5)
    assert daemon.exits == [0]  # type: ignore[attr-defined]  # exit 0 without waiting for them


def test_signal_handlers_are_restored_after_serving(daemon: Daemon) -> None:
    before = signal.getsignal(signal.SIGTERM)
    daemon.stopping.set()  # stops as soon as it serves
    daemon.serve()
    assert signal.getsignal(signal.SIGTERM) is before


ROOT = Path(__file__).parents[2]


def test_the_systemd_unit_runs_a_valid_command_and_waits_for_the_graceful_stop() -> None:
    from itsm_bridge.cli import build_parser
    from itsm_bridge.settings import ServerSettings

    unit = (ROOT / "config" / "itsm-bridge.service").read_text()
    keys = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[:1].isalpha()
    )
    args = build_parser().parse_args(keys["ExecStart"].split()[1:])
    assert (args.command, args.log_format) == ("run", "text")
    assert build_parser().parse_args(keys["ExecStartPre"].split()[1:]).command == "check-config"
    assert keys["KillSignal"] == "SIGTERM"
    shutdown = ServerSettings.model_fields["shutdown_seconds"].default
    assert int(keys["TimeoutStopSec"]) > shutdown + 2  # the graceful stop fits
    assert keys["RestartPreventExitStatus"] == "2"  # a configuration error is not retried


def test_the_image_runs_the_daemon_and_stops_it_with_sigterm() -> None:
    from itsm_bridge.cli import build_parser

    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    directives = {line.split()[0]: line.split(None, 1)[1] for line in final if line[:1].isupper()}
    entry = json.loads(directives["ENTRYPOINT"]) + json.loads(directives["CMD"])
    assert entry[0] == "itsm-bridge"
    assert build_parser().parse_args(entry[1:]).command == "run"
    assert directives["STOPSIGNAL"] == "SIGTERM"
    assert directives["USER"] != "root"
    assert "/healthz" in directives["HEALTHCHECK"]
