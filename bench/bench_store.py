"""How fast `release show` and `release list` answer on a large store.

Builds a store with 10,000 releases (18 steps and 5 tasks each) and 1,000,000 events, then
prints the time of the queries behind `release list` and `release show`, in-process and as
whole CLI commands. Usage:

    .venv/bin/python bench/bench_store.py [--releases N] [--events N] [--database URL]

The default database is a fresh SQLite file under bench/results/. Nothing here is a test:
it prints figures, it does not assert.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from itsm_bridge.lifecycle import STEPS
from itsm_bridge.models import ReleaseState
from itsm_bridge.store import open_store
from itsm_bridge.store import schema as t
from itsm_bridge.views import release_json

RESULTS = Path(__file__).parent / "results"
STATES = [s.value for s in ReleaseState]


def build(url: str, releases: int, events: int) -> list[str]:
    store = open_store(url)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"rel-bench-{n:06d}" for n in range(releases)]
    started = time.perf_counter()
    with store.begin() as tx:
        tx.conn.execute(
            t.releases.insert(),
            [
                {
                    "id": rid,
                    "service": f"svc{n % 50}",
                    "version": f"1.{n}.0",
                    "name": "",
                    "type": "normal",
                    "major": False,
                    "state": random.choice(STATES),
                    "duration_seconds": 3600,
                    "reason": "",
                    "data": {},
                    "created_at": base + timedelta(minutes=n),
                    "updated_at": base + timedelta(minutes=n),
                    "next_run_at": None,
                }
                for n, rid in enumerate(ids)
            ],
        )
        tx.conn.execute(
            t.steps.insert(),
            [
                {
                    "release_id": rid,
                    "number": num,
                    "name": name,
                    "status": "done",
                    "state": {},
                    "detail": "ok",
                }
                for rid in ids
                for num, name in STEPS
            ],
        )
        tx.conn.execute(
            t.tasks.insert(),
            [
                {
                    "release_id": rid,
                    "key": f"task-{k}",
                    "position": k,
                    "status": "done",
                    "note": "",
                    "spec": {
                        "key": f"task-{k}",
                        "name": f"Task {k}",
                        "kind": "manual",
                        "group": None,
                        "order": k,
                        "purpose": None,
                        "job": None,
                    },
                }
                for rid in ids
                for k in range(5)
            ],
        )
    chunk = 50_000
    for start in range(0, events, chunk):
        with store.begin() as tx:
            tx.conn.execute(
                t.events.insert(),
                [
                    {
                        "release_id": ids[n % releases],
                        "at": base + timedelta(seconds=n),
                        "actor": "itsm-bridge",
                        "kind": "step",
                        "message": f"step {n % 18 + 1}: done",
                        "evidence": {"n": n},
                    }
                    for n in range(start, min(start + chunk, events))
                ],
            )
    print(f"built {releases} releases, {events} events in {time.perf_counter() - started:.1f} s")
    store.close()
    return ids


def timed(fn, repeat: int = 20) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, max(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    url = args.database
    if url is None:
        path = RESULTS / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    ids = build(url, args.releases, args.events)
    store = open_store(url)
    sample = random.sample(ids, 20)

    def show() -> None:
        with store.begin() as tx:
            release_json(tx, random.choice(sample))

    def list_all() -> None:
        with store.begin() as tx:
            tx.release_summaries()

    def list_state() -> None:
        with store.begin() as tx:
            tx.release_summaries(state="closed")

    for name, fn in (
        ("show (one release, ~100 events)", show),
        ("list (all releases)", list_all),
        ("list --state closed", list_state),
    ):
        median, worst = timed(fn)
        print(f"in-process {name:<34} median {median:7.1f} ms   max {worst:7.1f} ms")

    config = RESULTS / "bench.yaml"
    config.write_text(yaml.safe_dump({"database": url}))
    cli = [sys.executable, "-m", "itsm_bridge.cli", "-c", str(config), "release"]
    for name, argv in (
        ("release show ID --json", ["show", sample[0], "--json"]),
        ("release list --state closed", ["list", "--state", "closed"]),
        ("release list", ["list"]),
    ):

        def run(argv: list[str] = argv) -> None:
            subprocess.run(cli + argv, check=True, capture_output=True)

        median, worst = timed(run, repeat=5)
        print(f"whole CLI  {name:<34} median {median:7.1f} ms   max {worst:7.1f} ms")


if __name__ == "__main__":
    main()
