"""How many HTTP requests the ServiceNow plugin needs for a release with many affected CIs.

Starts the ServiceNow sandbox in-process (default seed), adds a CMDB of `--cis` affected CIs
around `payments-api` (applications that depend on it, hosts they run on, a cycle back to the
root), then runs for one release: step 8 (`identify_impact`), step 5 (`maintenance_windows`,
`freeze_periods` over a 35-day horizon) and step 6 (`change.find_or_create`, which links the
affected CIs; when change.py is not there yet, `cmdb.link_impact` on a sandbox change), then the
same again (a re-run must only read). It prints requests per phase, requests per affected CI
and elapsed times. Usage:

    .venv/bin/python bench/bench_servicenow.py [--cis 200] [--depth 3] [--page-size 100]

Nothing here is a test: it prints figures, it does not assert.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from itsm_bridge.http import count_requests
from itsm_bridge.models import Release
from itsm_bridge.settings import settings_from_mapping
from itsm_bridge_sandbox import load_seed
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox
from itsm_bridge_servicenow import ServiceNowPlugin, Settings, change, cmdb

SEEDED_CIS = 6  # payments, payments-api, payments-db, pay-app-01, pay-app-02, pay-db-01
SERVICES = {
    "payments": {
        "ci": "payments-api",
        "jobs": {"deploy": "payments/deploy", "smoke_test": "payments/smoke",
                 "rollback": "payments/rollback"},
    }
}  # fmt: skip


def build_cmdb(snow: ServiceNowSandbox, total: int) -> None:
    """Grow the seeded payments CMDB to `total` CIs: apps on the API, hosts under the apps."""
    extra = max(total - SEEDED_CIS, 0)
    apps = max(extra // 20, 1) if extra else 0
    for i in range(apps):
        snow.insert("cmdb_ci_appl", name=f"bench-app-{i}")
        snow.insert("cmdb_rel_ci", parent="payments-api", child=f"bench-app-{i}",
                    type="Depends on::Used by")  # fmt: skip
    for j in range(extra - apps):
        app = f"bench-app-{j % apps}"
        snow.insert("cmdb_ci_linux_server", name=f"bench-host-{j}")
        snow.insert("cmdb_rel_ci", parent=app, child=f"bench-host-{j}", type="Runs on::Runs")
    if apps:  # a cycle back to the root
        snow.insert("cmdb_rel_ci", parent="bench-host-0", child="payments-api",
                    type="Depends on::Used by")  # fmt: skip


def link(plugin: ServiceNowPlugin, snow: ServiceNowSandbox, release: Release) -> str:
    """Step 6: the change (which links the impact); a bare change + link_impact without it."""
    try:
        change.find_or_create(plugin.client, plugin.config, plugin.bridge, release, None)
        return "change.find_or_create"
    except NotImplementedError:
        key = f"bench change {release.id}"
        rows = [
            r for r in snow.store.rows_of("change_request") if r.get("short_description") == key
        ]
        sys_id = rows[0]["sys_id"] if rows else snow.insert(
            "change_request", short_description=key)["sys_id"]  # fmt: skip
        cmdb.link_impact(plugin.client, sys_id, release.impact)
        return "cmdb.link_impact (change.py not implemented)"


def run(args: argparse.Namespace) -> None:
    snow = ServiceNowSandbox(load_seed()["servicenow"])
    snow.start()
    try:
        build_cmdb(snow, args.cis)
        config = Settings.model_validate({
            "url": snow.url, "user": "sandbox", "password": "sandbox",
            "assignment_group": "Change Management", "cmdb_depth": args.depth,
            "page_size": args.page_size,
        })  # fmt: skip
        plugin = ServiceNowPlugin(config, settings_from_mapping({"services": SERVICES}))
        counter: dict[str, Any] = {}
        count_requests(plugin.client.session, counter)
        start = datetime(2026, 12, 1, 21, tzinfo=UTC)
        release = Release(id="rel-bench-0001", service="payments", version="9.9.9",
                          name="Bench", window_start=start,
                          window_end=start + timedelta(hours=2))  # fmt: skip
        horizon = (start, start + timedelta(days=35))
        for label in ("first run", "re-run"):
            print(f"-- {label}")
            release = one_pass(plugin, snow, release, horizon, counter)
    finally:
        snow.stop()


def one_pass(
    plugin: ServiceNowPlugin,
    snow: ServiceNowSandbox,
    release: Release,
    horizon: tuple[datetime, datetime],
    counter: dict[str, Any],
) -> Release:
    total_requests, total_seconds = 0, 0.0
    impact = None

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        nonlocal total_requests, total_seconds
        before, began = counter["requests"], time.perf_counter()
        result = fn()
        used, took = counter["requests"] - before, time.perf_counter() - began
        total_requests += used
        total_seconds += took
        print(f"  {name:<40} {used:>5} requests {took * 1000:>8.1f} ms")
        return result

    impact = phase("step 8 identify_impact", lambda: plugin.identify_impact(release))
    release = release.model_copy(update={"impact": impact})
    cis = len(impact.cis) + len(impact.services) if impact else 0
    phase("step 5 maintenance_windows (35 days)",
          lambda: plugin.maintenance_windows(release, *horizon))  # fmt: skip
    phase("step 5 freeze_periods (35 days)", lambda: plugin.freeze_periods(release, *horizon))
    how = phase("step 6 change + affected CI links", lambda: link(plugin, snow, release))
    print(f"  (links written by {how})")
    print(f"  affected CIs and services: {cis}")
    print(f"  total: {total_requests} requests in {total_seconds:.2f} s; "
          f"{total_requests / max(cis, 1):.3f} requests per CI")  # fmt: skip
    return release


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cis", type=int, default=200, help="affected CIs in the CMDB")
    parser.add_argument("--depth", type=int, default=3, help="plugins.servicenow.cmdb_depth")
    parser.add_argument("--page-size", type=int, default=100, help="sysparm_limit per page")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
