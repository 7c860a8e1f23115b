"""`itsm-bridge run`: the daemon. Builds the shared context, starts the threads, serves HTTP
with uvicorn, and stops gracefully on SIGTERM or SIGINT.

Threads: the poller scheduler (`pollers.py`, leader only), on PostgreSQL the listener and the
notifier (`listen.py`), the worker loop and its pool (`worker.py`), and uvicorn's event loop.
uvicorn runs in a thread of its own: it installs signal handlers only on the main thread, and
after a graceful stop it would raise the captured signal again (ending the process with it
rather than with 0), so the main thread owns the signals and tells uvicorn to stop
(`Server.should_exit`).

On SIGTERM/SIGINT: uvicorn stops accepting and finishes the requests in flight, the worker
stops claiming, and the steps in flight may finish until `server.shutdown_seconds` (default
8); the leases of those that did not are dropped (the lease fence refuses their outcome, so
nothing is half-committed) and the process exits 0. A second signal stops at once.

Refuses to start (exit 2, one line) without `server.token`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import time
from signal import SIGINT, SIGTERM
from types import FrameType
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import ConfigError, OperationFailed
from itsm_bridge.settings import BridgeSettings, load_settings

if TYPE_CHECKING:
    from itsm_bridge.daemon.context import DaemonContext

log = logging.getLogger(__name__)

STARTUP_SECONDS = 30.0  # uvicorn must be listening by then
EXIT_OK = 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run` to the `itsm-bridge` parser."""
    parser = sub.add_parser(
        "run",
        help="the daemon: REST API, webhooks, pollers and the worker, until SIGTERM",
        description="Serve the REST API and webhooks on server.listen, run the pollers (on "
        "one replica) and advance every release as it becomes due. Stops gracefully on "
        "SIGTERM or SIGINT (exit 0). Needs server.token. See docs/daemon.md.",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="readable text (default) or one JSON object per line",
    )
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    check_settings(settings)
    from itsm_bridge.daemon.logs import configure_logging

    root = logging.getLogger()
    for handler in list(root.handlers):  # the CLI's default handler: the daemon logs its own
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    configure_logging(args.log_format, bool(args.verbose))
    daemon = Daemon(settings)
    daemon.freeze_gc = True  # this process is the daemon's own
    return daemon.serve()


def check_settings(settings: BridgeSettings) -> None:
    """What the daemon needs beyond a valid file: a bearer token for its API."""
    token = settings.server.token
    if token is None or not token.get_secret_value().strip():
        raise ConfigError(
            "server.token: the daemon needs a bearer token for /api/v1; set server.token, "
            "e.g. token: {$env: BRIDGE_API_TOKEN}"
        )


def listen_address(listen: str) -> tuple[str, int]:
    """`server.listen` ("host:port", "[::1]:8765") as (host, port) for uvicorn."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython: 700)


def freeze_startup_objects() -> None:
    """Leave what start-up built (modules, plugins, the app, SQLAlchemy's tables) out of
    the garbage collector's full collections, which otherwise walk it all every few hundred
    requests (tens of milliseconds each, with every request waiting on the GIL meanwhile):
    `gc.freeze()` moves every object alive now to a permanent generation. Young collections
    then come every `GC_YOUNG_THRESHOLD` allocations rather than 700: the full collections
    they lead to (a few milliseconds each, still) come about 14 times less often, and each
    young one stays well under a millisecond."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class Daemon:
    """Everything `run` starts, built from the settings (opens the store, loads plugins)."""

    def __init__(self, settings: BridgeSettings) -> None:
        from itsm_bridge import http
        from itsm_bridge.commands import ReleaseCommands
        from itsm_bridge.daemon.context import DaemonContext
        from itsm_bridge.daemon.leader import make_leader
        from itsm_bridge.daemon.listen import Listener, Notifier
        from itsm_bridge.daemon.metrics import Metrics
        from itsm_bridge.daemon.pollers import PollerScheduler, plugin_jobs
        from itsm_bridge.daemon.worker import ThreadOwnedProcess, Worker
        from itsm_bridge.plugins import load_plugins
        from itsm_bridge.process import Process
        from itsm_bridge.store import open_store

        self.settings = settings
        server = settings.server
        host = load_plugins(settings)
        self.store = store = open_store(settings.database)
        metrics = Metrics(store)
        http.set_observer(metrics.outbound)
        process = Process(store, host, settings, on_step=metrics.step)
        # API commands wait for a running step instead of sharing the worker's lease owner
        api_process = ThreadOwnedProcess(
            store, host, settings, owner=f"{process.owner}:api", lease_ttl=process.lease_ttl
        )
        postgres = store.dialect == "postgresql"
        self.notifier = Notifier(store) if postgres else None
        self.leader = make_leader(settings.database, on_change=lambda _held: self.worker.wake())
        self.ctx: DaemonContext = DaemonContext(
            settings=settings,
            store=store,
            host=host,
            process=process,
            commands=ReleaseCommands(api_process),
            metrics=metrics,
            wake=self.wake,
            not_ready=self.not_ready,
        )
        self.worker = Worker(self.ctx, self.leader, server.workers)
        jobs = plugin_jobs(store, host, server.intake_seconds)
        self.scheduler = PollerScheduler(
            jobs,
            self.leader,
            metrics,
            self.worker.wake,
            leader_check=min(5.0, server.lease_seconds / 2),
        )
        self.listener = Listener(settings.database, self.worker.wake) if postgres else None
        self.stopping = threading.Event()
        self.signals: list[int] = []
        self.threads: list[threading.Thread] = []
        self.exit = os._exit  # leaves threads stuck in a plugin call behind (tests replace it)
        # Freeze what start-up built out of the garbage collector's way before serving; only
        # in a process of its own (`cmd_run`): it concerns every object of the process.
        self.freeze_gc = False

    def wake(self) -> None:
        """An event was stored or a person acted: this worker now, the others by NOTIFY."""
        self.worker.wake()
        if self.notifier is not None:
            self.notifier.notify()

    def not_ready(self) -> list[str]:
        return self.worker.problems()

    # -- running ---------------------------------------------------------------------------
    def _start(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        if len(self.signals) > 1:
            log.warning("second signal: stopping now")
            logging.shutdown()
            self.exit(1)
        self.stopping.set()

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or `stopping` is set); 0 after a graceful stop."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, self._on_signal) for s in (SIGTERM, SIGINT)}
        try:
            return self._serve()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _serve(self) -> int:
        import uvicorn

        from itsm_bridge.daemon.app import create_app

        self._start("pollers", self.scheduler.run)
        if self.listener is not None:
            self._start("listener", self.listener.run)
        if self.notifier is not None:
            self._start("notifier", self.notifier.run)
        self._start("worker", self.worker.run)
        address, port = listen_address(self.settings.server.listen)
        config = uvicorn.Config(
            create_app(self.ctx),
            host=address,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            ws="none",  # no websocket route: nothing to import or to parse upgrades for
            timeout_graceful_shutdown=max(1, int(self.settings.server.shutdown_seconds)),
        )
        if self.freeze_gc:
            freeze_startup_objects()
        self.server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def serve_http() -> None:
            try:
                self.server.run()
            except BaseException as exc:  # SystemExit when the port cannot be bound
                failure.append(exc)

        http = threading.Thread(target=serve_http, name="http", daemon=True)
        http.start()
        started = time.monotonic()
        while not self.server.started and http.is_alive():
            if time.monotonic() - started > STARTUP_SECONDS or self.stopping.wait(0.02):
                break
        if not self.server.started and not self.stopping.is_set():
            self.shutdown(http)
            raise OperationFailed(
                f"cannot serve on {self.settings.server.listen} (the log above says why); "
                "free the port or change server.listen"
            )
        log.info(
            "itsm-bridge serving on http://%s:%d (%s, %d worker threads)",
            address,
            port,
            self.store.dialect,
            self.settings.server.workers,
        )
        while not self.stopping.wait(0.5):
            if not http.is_alive():
                log.error("the HTTP server stopped on its own; stopping")
                break
        return self.shutdown(http)

    def shutdown(self, http: threading.Thread) -> int:
        """Stop accepting, stop claiming, let steps in flight finish until the deadline."""
        seconds = self.settings.server.shutdown_seconds
        names = ", ".join(signal.Signals(s).name for s in self.signals) or "a stop request"
        log.info("%s: stopping (steps in flight have %s s to finish)", names, seconds)
        deadline = time.monotonic() + seconds
        self.server.should_exit = True
        self.worker.stop()
        self.scheduler.stop()
        for part in (self.listener, self.notifier):
            if part is not None:
                part.stop()
        unfinished = self.worker.drain(deadline)
        http.join(max(0.1, deadline - time.monotonic()))
        self.leader.release()
        if unfinished or http.is_alive():
            log.warning("stopped with work unfinished (leases dropped)")
            logging.shutdown()
            sys.stdout.flush()
            self.exit(EXIT_OK)  # the pool's threads are stuck in a plugin call: do not wait
        self.store.close()
        log.info("stopped")
        return EXIT_OK
