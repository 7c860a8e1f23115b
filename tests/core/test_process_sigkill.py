"""`kill -9` of `itsm-bridge sync --once` in the middle of a step loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).parents[1]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    info = tmp_path / "fake_vendor-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake_vendor\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[itsm_bridge]\nfake = fake_vendor:KillingVendorPlugin\n"
    )
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(TESTS)])
    environ["FAKE_VENDOR_STATE"] = str(tmp_path / "vendor.json")
    return environ


def bridge(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "itsm_bridge.cli", "-c", str(tmp_path / "c.yaml"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("kind", ["change", "job", "notification"])
def test_sigkill_mid_step_then_resume(tmp_path: Path, env: dict[str, str], kind: str) -> None:
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{tmp_path}/bridge.db",
                "data_dir": str(tmp_path),
                "server": {"lease_seconds": 1},
                "plugins": {"enabled": ["fake"]},
                "services": {
                    "payments": {
                        "jobs": {"build": "b", "deploy": "d", "smoke_test": "s", "rollback": "r"}
                    }
                },
                "policy": {"verify_minutes": 0, "poll_seconds": 0},
            }
        )
    )
    (tmp_path / "vendor.json").write_text(
        json.dumps(
            {"records": {}, "created": {}, "calls": {}, "duplicates": [], "crash_at": [kind, 1]}
        )
    )
    created = bridge(tmp_path, env, "release", "create", "--service", "payments", "--version", "1")
    assert created.returncode == 0, created.stderr
    rid = created.stdout.strip()
    killed = False
    for _ in range(40):
        done = bridge(tmp_path, env, "sync", "--once")
        if done.returncode == -9:
            killed = True
            time.sleep(1.1)  # the dead process's lease expires
            continue
        assert done.returncode == 0, done.stderr
        show = json.loads(bridge(tmp_path, env, "release", "show", rid, "--json").stdout)
        if show["state"] == "closed":
            break
        time.sleep(0.05)
    assert killed
    assert show["state"] == "closed"
    vendor = json.loads((tmp_path / "vendor.json").read_text())
    assert vendor["duplicates"] == []
    assert vendor["created"]["change"] == 1
    assert vendor["created"]["job"] == 3
    assert vendor["created"]["notification"] == 1
    # counted at the vendor: the killed call was made once more (and found its record);
    # nothing else was repeated
    once = {"change": 1, "job": 3, "notification": 1}
    for effect, calls in once.items():
        assert vendor["calls"][effect] == calls + (1 if effect == kind else 0), effect
