"""The event-driven worker: the inbox, the backlog intake, and due releases in a thread pool.

One loop thread runs passes. A pass (1) on the leader processes the inbox and takes stored work
items into the backlog, (2) claims as many due releases as the pool has free threads
(`Tx.claim_due`: each claim is the release's lease) and hands each to a pool thread, which
advances it (`Process.advance`), (3) works out how long to sleep: until the earliest due
release or the expiry of a lease another owner holds (`Tx.next_due_in`), never a fixed tick.
`wake()` (an event stored, a person acted, a NOTIFY from another replica, a pool thread done)
ends the sleep at once. `MAX_SLEEP` bounds it, for writers that send no NOTIFY (the CLI on
SQLite).

One release is advanced by one thread at a time: the claim leases it, the loop never claims a
release it is still advancing, and the inbox and the API act under owners of their own (an
owner is one holder of a lease, so they wait for a running step instead of taking it over).

Nothing kills the loop: an exception is logged and counted and the next pass runs; while the
database is away the loop backs off (0.5 s doubling to 10 s; a `wake()` still tries at
once), with one log line when it goes and one when it is back (/readyz probes the database
itself). `stop()` stops claiming; `drain(deadline)` lets the steps in flight
finish until the deadline, and drops the leases of those that did not (their outcome is then
refused by the lease fence: nothing is half-committed).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

import sqlalchemy as sa

from itsm_bridge.cycle import health, new_troubles
from itsm_bridge.inbox import inbox_pass
from itsm_bridge.intake import BATCH as INTAKE_BATCH
from itsm_bridge.intake import IntakeResult, take_into_backlog
from itsm_bridge.process import Process
from itsm_bridge.store.engine import database_reason

if TYPE_CHECKING:
    from itsm_bridge.daemon.context import DaemonContext
    from itsm_bridge.daemon.leader import Leader

log = logging.getLogger(__name__)

MAX_SLEEP = 60.0  # seconds: the longest sleep (a CLI on SQLite wakes nobody)
MIN_SLEEP = 0.05  # a pass that claimed nothing never loops faster than this
# After a pass that took a burst of inbox events (`BURST` or more), the next starts no sooner
# than `PASS_INTERVAL` after it: a burst of wakes (a webhook stored, each) is one pass per
# interval, acting on every event stored meanwhile, not one pass per event (which would
# spend the CPU and the database's write lock the HTTP server needs to store them). After a
# pass that took fewer (a pool thread finished, a job's notification came), a wake runs the
# next pass at once: an alert after a quiet spell waits for nobody.
PASS_INTERVAL = 0.02
BURST = 8
DB_BACKOFF_FIRST, DB_BACKOFF_MAX = 0.5, 10.0
ERROR_BACKOFF = 1.0  # after an unexpected error in a pass


class ThreadOwnedProcess(Process):
    """A Process whose lease owner is `<owner>:<thread id>`: what each HTTP request thread
    does under a lease (the API's commands) is a holder of its own, so two requests on one
    release, or a request and the worker, never pass for each other."""

    @property
    def owner(self) -> str:
        return f"{self._owner}:{threading.get_ident()}"

    @owner.setter
    def owner(self, value: str) -> None:
        self._owner = value


class Worker:
    """Runs passes until stopped; advances releases in a pool of `workers` threads."""

    def __init__(self, ctx: DaemonContext, leader: Leader, workers: int) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.process = ctx.process
        self.leader = leader
        self.slots = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="advance")
        # the inbox acts under an owner of its own (see the module docstring)
        self.inbox_process = Process(
            ctx.store,
            ctx.host,
            ctx.settings,
            clock=self.process.clock,
            owner=f"{self.process.owner}:inbox",
            lease_ttl=self.process.lease_ttl,
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.inflight: dict[str, Future[None]] = {}
        self.errors = 0  # unexpected exceptions, in passes and in advances
        self.passes = 0
        self.took = 0  # the inbox events the current pass took
        self.db_failures = 0  # consecutive passes the database refused
        self.db_problem = ""
        self._reported: set[str] = set()  # inbox failure lines already logged

    # -- signals ---------------------------------------------------------------------------
    def wake(self) -> None:
        """Run a pass now (thread-safe, never blocks)."""
        self._wake.set()

    def problems(self) -> list[str]:
        """Why this replica is not ready ([] when it is). Not the database: /readyz probes it
        itself, and the worker may still be backing off when it answers again."""
        if self.passes == 0:
            return ["starting: the worker has not completed a pass yet"]
        return []

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        """The loop thread's body: passes until `stop()`."""
        while not self._stopping.is_set():
            self._wake.clear()
            started = time.monotonic()
            self.took = 0
            delay = self.run_guarded()
            if self._wake.wait(delay) and self.took >= BURST:
                self._stopping.wait(PASS_INTERVAL - (time.monotonic() - started))

    def run_guarded(self) -> float:
        """One pass; never raises. Returns how long to sleep before the next."""
        try:
            delay = self.run_pass()
        except sa.exc.DBAPIError as exc:
            self.db_failures += 1
            reason = database_reason(exc, self.store.url)
            if not self.db_problem:
                log.warning("the database is unreachable, backing off: %s", reason)
            self.db_problem = reason or type(exc).__name__
            return min(DB_BACKOFF_FIRST * 2 ** (self.db_failures - 1), DB_BACKOFF_MAX)
        except Exception:
            self.errors += 1
            log.exception("worker pass failed; the next pass runs in %s s", ERROR_BACKOFF)
            return ERROR_BACKOFF
        if self.db_problem:
            log.warning("the database answers again (after %d failed passes)", self.db_failures)
        self.db_failures, self.db_problem = 0, ""
        self.passes += 1
        return delay

    def run_pass(self) -> float:
        """Inbox and intake (leader only), claims, and the time to sleep after (none when
        the inbox had more events than one pass takes)."""
        more = False
        if self.leader.held and not self._stopping.is_set():
            more = self._process_inbox()
            self._take_work_items()
        claimed = self._claim()
        if more:
            return 0.0
        with self._lock:
            free = self.slots - len(self.inflight)
            busy = list(self.inflight)
        if free <= 0:
            return MAX_SLEEP  # a pool thread that finishes wakes the loop
        with self.store.read() as tx:
            due_in = tx.next_due_in(self.process.clock(), exclude=busy)
        if due_in is None:
            return MAX_SLEEP
        floor = 0.0 if claimed else MIN_SLEEP
        return min(max(due_in, floor), MAX_SLEEP)

    def _process_inbox(self) -> bool:
        """One batch of the inbox; True when more events may be waiting."""
        failures, more, self.took = inbox_pass(self.store, self.inbox_process)
        for line in failures:
            if line not in self._reported:  # a failing event is retried every pass: log once
                self._reported.add(line)
                log.warning("%s", line)
        return more

    def _take_work_items(self) -> None:
        """Stored demands and problems into the backlog (the pollers collected them)."""
        host = self.ctx.host
        if not host.implementers("add_to_backlog"):
            return
        with self.store.read() as tx:
            pending = tx.inbox_pending(limit=INTAKE_BATCH, kind="work_item")
        result = IntakeResult()
        for row in pending:
            take_into_backlog(self.store, host, row, result)
        if result.created:
            log.info("intake: %d new backlog item(s)", result.created)

    # -- claims and the pool ---------------------------------------------------------------
    def _claim(self) -> int:
        if self._stopping.is_set():
            return 0
        with self._lock:
            free = self.slots - len(self.inflight)
            busy = list(self.inflight)
        if free <= 0:
            return 0
        process = self.process
        with self.store.begin() as tx:
            ids = tx.claim_due(process.clock(), process.owner, process.lease_ttl, free, busy)
        claimed_at = time.monotonic()
        for release_id in ids:
            with self._lock:
                future = self.pool.submit(self._advance, release_id, claimed_at)
                self.inflight[release_id] = future
            future.add_done_callback(functools.partial(self._done, release_id))
        return len(ids)

    def _done(self, release_id: str, _future: Future[None]) -> None:
        with self._lock:
            self.inflight.pop(release_id, None)
        self.wake()

    def _advance(self, release_id: str, claimed_at: float) -> None:
        """Advance one claimed release in a pool thread; log what it broke; never raise."""
        try:
            before = health(self.store, release_id)
            self.process.advance(release_id, claimed_at)
            for line in new_troubles(self.store, release_id, before):
                log.warning("%s", line)
        except sa.exc.DBAPIError as exc:  # the database is away: the loop backs off
            log.warning("release %s: %s", release_id, database_reason(exc, self.store.url))
            self._drop_lease(release_id)
        except Exception:
            with self._lock:  # pool threads count concurrently
                self.errors += 1
            log.exception("release %s: advancing failed", release_id)
            self._drop_lease(release_id)

    def _drop_lease(self, release_id: str) -> None:
        try:
            with self.store.begin() as tx:
                tx.drop_release_lease(release_id, self.process.owner)
        except Exception:  # the database is away: the lease expires instead
            log.debug("lease of %s not dropped", release_id)

    # -- stopping --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop claiming (the loop ends after its current pass)."""
        self._stopping.set()
        self._wake.set()

    def drain(self, deadline: float) -> list[str]:
        """Wait for the steps in flight until `deadline` (time.monotonic); drop the leases
        of those still running and return their release ids."""
        with self._lock:
            running = dict(self.inflight)
        if running:
            log.info("waiting for %d release(s) in flight", len(running))
            wait(list(running.values()), timeout=max(0.0, deadline - time.monotonic()))
        unfinished = [rid for rid, future in running.items() if not future.done()]
        for release_id in unfinished:
            log.warning("release %s: its step did not finish in time; lease dropped", release_id)
            self._drop_lease(release_id)
        self.pool.shutdown(wait=not unfinished, cancel_futures=True)
        return unfinished
