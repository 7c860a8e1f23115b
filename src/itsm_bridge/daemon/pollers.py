"""The daemon's poller scheduler: each poller on its own interval, on the leader only.

The jobs are the pollers plugins register (`register_pollers`: events and cursor stored
together by `pollers.run_poller`) and, for each plugin that collects work items, its intake
(`intake.collect`: demands and problems into the inbox, the plugin's cursor moved only on
success) every `server.intake_seconds`. The worker takes what they stored.

Each job runs again `interval` seconds after its last run, give or take `JITTER` (so replicas
and pollers do not fall into step), the first runs spread over the first tenth of their
interval. While a job's system fails, the wait doubles with each failure up to
`max(interval, MAX_BACKOFF)`; the first failure is one warning, the recovery one line,
nothing in between (Home Assistant's update coordinator does the same). `plugin_up` reports
each plugin's state to the metrics.

Only the leader polls (`Leader.check()` before every round, and at least every
`leader_check` seconds, so a replica takes over soon after the leader dies).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from itsm_bridge.errors import ConfigError
from itsm_bridge.intake import IntakeResult, collect
from itsm_bridge.plugins import PluginHost
from itsm_bridge.pollers import Poll, Poller, run_poller
from itsm_bridge.store import Store

if TYPE_CHECKING:
    from itsm_bridge.daemon.leader import Leader
    from itsm_bridge.daemon.metrics import Metrics

log = logging.getLogger(__name__)

JITTER = 0.1  # +-10% of each wait
MIN_INTERVAL = 1.0  # seconds: a poller registered with 0 still waits this long
MAX_BACKOFF = 900.0  # seconds: the longest wait of a failing poller (unless its interval is longer)
MAX_REASON = 200


@dataclass
class Job:
    """One poller as the scheduler runs it; `run()` returns how many new events it stored."""

    name: str
    plugin: str
    interval: float
    run: Callable[[], int]
    next_at: float = 0.0
    failures: int = 0


def plugin_jobs(store: Store, host: PluginHost, intake_seconds: float) -> list[Job]:
    """Every poller the enabled plugins register, and each intake source as a poller."""
    jobs: list[Job] = []
    names: set[str] = set()
    for plugin in host.implementers("register_pollers"):

        def register(name: str, interval_seconds: float, poll: Poll, plugin: str = plugin) -> None:
            if name in names:
                raise ConfigError(f"two plugins register a poller named {name!r}")
            names.add(name)
            poller = Poller(name, float(interval_seconds), poll)
            jobs.append(Job(name, plugin, poller.interval_seconds, _poller_run(store, poller)))

        host.call_one("register_pollers", plugin, register=register)
    for plugin in host.implementers("collect_work_items"):
        run = _intake_run(store, host, plugin)
        jobs.append(Job(f"intake.{plugin}", plugin, float(intake_seconds), run))
    return jobs


def _poller_run(store: Store, poller: Poller) -> Callable[[], int]:
    def run() -> int:
        _seen, new = run_poller(store, poller)
        return new

    return run


def _intake_run(store: Store, host: PluginHost, plugin: str) -> Callable[[], int]:
    def run() -> int:
        result = IntakeResult()
        collect(store, host, plugin, result)
        if result.errors:
            raise RuntimeError(result.errors[0])
        return result.collected

    return run


class PollerScheduler:
    """Runs the jobs on the leader until stopped; wakes the worker when events were stored."""

    def __init__(
        self,
        jobs: list[Job],
        leader: Leader,
        metrics: Metrics,
        wake: Callable[[], None],
        *,
        leader_check: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.jobs = jobs
        self.leader = leader
        self.metrics = metrics
        self.wake = wake
        self.leader_check = leader_check
        self.clock = clock
        self.rand = rand
        self.leading = False
        self.stopping = threading.Event()

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + JITTER * (2 * self.rand() - 1))

    def start_leading(self) -> None:
        """Spread the first runs over the first tenth of each interval."""
        now = self.clock()
        for job in self.jobs:
            job.next_at = now + self.rand() * JITTER * max(job.interval, MIN_INTERVAL)
            job.failures = 0

    def run(self) -> None:
        """The scheduler thread's body: until `stop()`."""
        while not self.stopping.is_set():
            self.stopping.wait(self.round())

    def round(self) -> float:
        """Check the lock, run the jobs due; returns the seconds until the next round."""
        if not self.leader.check():
            if self.leading:
                log.info("pollers stopped: another replica holds the poller lock")
            self.leading = False
            return self.leader_check
        if not self.leading:
            self.leading = True
            self.start_leading()
        self.run_due()
        if not self.jobs:
            return self.leader_check
        next_at = min(job.next_at for job in self.jobs)
        return max(0.0, min(next_at - self.clock(), self.leader_check))

    def run_due(self) -> int:
        """Run every job whose time has come; returns how many ran."""
        ran = 0
        for job in self.jobs:
            if self.stopping.is_set():
                break
            if job.next_at <= self.clock():
                self.run_job(job)
                ran += 1
        return ran

    def run_job(self, job: Job) -> None:
        """Run one job, then schedule its next run (backing off while it fails)."""
        base = max(job.interval, MIN_INTERVAL)
        try:
            new = job.run()
        except Exception as exc:
            job.failures += 1
            wait = min(base * 2**job.failures, max(base, MAX_BACKOFF))
            if job.failures == 1:
                log.warning(
                    "poller %s is failing, retrying with backoff (next in %.0f s): %s",
                    job.name,
                    wait,
                    _reason(exc),
                )
            self.metrics.plugin_up(job.plugin, False)
            job.next_at = self.clock() + self._jittered(wait)
            return
        if job.failures:
            log.warning("poller %s recovered after %d failed attempt(s)", job.name, job.failures)
        job.failures = 0
        self.metrics.plugin_up(job.plugin, True)
        job.next_at = self.clock() + self._jittered(base)
        if new:
            self.wake()

    def stop(self) -> None:
        self.stopping.set()


def _reason(exc: Exception) -> str:
    text = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:MAX_REASON]
