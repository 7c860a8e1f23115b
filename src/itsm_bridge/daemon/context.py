"""What the daemon's parts share: one object built at start, read by the HTTP app and the
worker alike. The HTTP app never reaches past it into the process or the store's internals:
it goes through the application layer (`commands`, `views`) and the inbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from itsm_bridge.commands import ReleaseCommands
from itsm_bridge.plugins import PluginHost
from itsm_bridge.process import Process
from itsm_bridge.settings import BridgeSettings
from itsm_bridge.store import Store

if TYPE_CHECKING:
    from itsm_bridge.daemon.metrics import Metrics


@dataclass
class DaemonContext:
    settings: BridgeSettings
    store: Store
    host: PluginHost
    process: Process
    commands: ReleaseCommands
    metrics: Metrics
    # Wake the worker now (an event was stored, a person acted): it processes the inbox and
    # advances due releases at once instead of sleeping until the next due time.
    wake: Callable[[], None] = field(default=lambda: None)
    # Why the daemon is not ready ([] when it is): plugins not initialised, database away.
    not_ready: Callable[[], list[str]] = field(default=lambda: [])
