"""`itsm-bridge sandbox`: serve the ServiceNow, Jira and Jenkins sandboxes until interrupted.

    itsm-bridge sandbox [--seed FILE] [--host H] [--jira-port N] [--servicenow-port N]
                        [--jenkins-port N]

Prints one `<system> <url>` line per server (servicenow, jira, jenkins, in that order) once all
three listen, then serves until SIGINT or SIGTERM and exits 0. A bad seed exits 2 (the message
names the file and the problem); a port that cannot be bound exits 1. Wired into
`itsm_bridge.cli` through `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

EXIT_OK = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sandbox` sub-command to the `itsm-bridge` parser."""
    parser = subparsers.add_parser(
        "sandbox",
        help="serve local ServiceNow, Jira and Jenkins sandboxes until interrupted",
        description=(
            "Serve local servers that speak the ServiceNow, Jira and Jenkins APIs, filled "
            "from a seed file. Prints one '<system> <url>' line per server, then serves "
            "until SIGINT or SIGTERM. Credentials: sandbox / sandbox unless the seed sets "
            "others. See docs/sandbox.md."
        ),
    )
    parser.add_argument(
        "--seed",
        metavar="FILE",
        help="seed file (default: the packaged copy of config/sandbox-seed.yaml)",
    )
    parser.add_argument(
        "--host", metavar="H", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    for system in ("jira", "servicenow", "jenkins"):
        parser.add_argument(
            f"--{system}-port",
            metavar="N",
            type=_port,
            default=0,
            help=f"port of the {system} sandbox (default: 0, a free port)",
        )
    parser.set_defaults(func=cmd_sandbox)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, not {value}")
    return value


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Start the three servers, print their URLs, serve until SIGINT/SIGTERM, stop cleanly."""
    from itsm_bridge_sandbox import SYSTEMS, Sandbox, default_seed_path, load_seed

    source = Path(args.seed) if args.seed else default_seed_path()
    sandbox = Sandbox(load_seed(source), source=source)  # ConfigError: exit 2
    ports = {system: int(getattr(args, f"{system}_port", 0) or 0) for system in SYSTEMS}
    stop = threading.Event()
    with _stop_on_signals(stop):
        urls = sandbox.start(args.host, ports)  # OperationFailed: exit 1
        try:
            for system in SYSTEMS:
                print(f"{system} {urls[system]}")
            sys.stdout.flush()
            while not stop.wait(0.2):
                pass
        finally:
            sandbox.stop()
    return EXIT_OK


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (instead of raising) while inside the block."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread; callers set `stop` themselves
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
