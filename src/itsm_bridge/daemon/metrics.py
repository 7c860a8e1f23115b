"""The daemon's prometheus metrics, served at `/metrics`.

One `Metrics` object owns its own `CollectorRegistry` (never the global one, so tests and
several apps in one process do not collide). The daemon's parts report through its methods;
releases by state and the inbox depth are read from the store when Prometheus scrapes, so
they are right on every replica without bookkeeping.

Series:
- `itsm_bridge_webhooks_total{source, status}`: webhook deliveries by route and HTTP answer.
- `itsm_bridge_step_duration_seconds{step, status}`: one observation per step run.
- `itsm_bridge_outbound_requests_total{plugin, status}`: vendor calls by HTTP status, or
  `error` for a network fault.
- `itsm_bridge_plugin_up{plugin}`: 1 while a plugin's system answers its poller, else 0.
- `itsm_bridge_deliveries_total{channel, result}`: stakeholder notices, `ok` or `failed`.
- `itsm_bridge_releases{state}`: releases in each state (every state, zeros included).
- `itsm_bridge_inbox_depth`: inbound events stored and not yet processed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from itsm_bridge.models import ReleaseState
from itsm_bridge.store import schema as t

if TYPE_CHECKING:
    from itsm_bridge.store import Store

log = logging.getLogger(__name__)

PREFIX = "itsm_bridge"
# Steps call vendors: from a few milliseconds (a lookup) to minutes (a slow create).
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """Every metric of the daemon, in a registry of its own; thread-safe (prometheus-client
    metrics are), so the HTTP threads, the worker and the pollers report concurrently."""

    def __init__(self, store: Store | None = None) -> None:
        """:param store: read at scrape time for releases by state and inbox depth (None: those
        two series are left out)."""
        self.registry = CollectorRegistry()
        self._webhooks = Counter(
            f"{PREFIX}_webhooks",
            "Webhook deliveries by route (source) and HTTP status answered.",
            ["source", "status"],
            registry=self.registry,
        )
        self._steps = Histogram(
            f"{PREFIX}_step_duration_seconds",
            "Duration of each step run, by step number and the status it ended in.",
            ["step", "status"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self._outbound = Counter(
            f"{PREFIX}_outbound_requests",
            "Outbound calls to vendors by plugin and HTTP status ('error': no answer).",
            ["plugin", "status"],
            registry=self.registry,
        )
        self._plugin_up = Gauge(
            f"{PREFIX}_plugin_up",
            "1 while the plugin's system answers (its poller succeeds), else 0.",
            ["plugin"],
            registry=self.registry,
        )
        self._deliveries = Counter(
            f"{PREFIX}_deliveries",
            "Stakeholder notice deliveries by channel and result (ok, failed).",
            ["channel", "result"],
            registry=self.registry,
        )
        if store is not None:
            self.registry.register(StoreCollector(store))

    def webhook(self, source: str, status: int) -> None:
        """Count one webhook delivery to route `source` answered with `status`."""
        self._webhooks.labels(source=source, status=str(status)).inc()

    def step(self, number: int, status: str, seconds: float) -> None:
        """Observe one step run (`Process(on_step=metrics.step)`)."""
        self._steps.labels(step=str(number), status=status).observe(max(0.0, seconds))

    def outbound(self, plugin: str, status: str) -> None:
        """Count one outbound vendor call (`http.set_observer(metrics.outbound)`)."""
        self._outbound.labels(plugin=plugin, status=status).inc()

    def plugin_up(self, plugin: str, up: bool) -> None:
        """Set whether `plugin`'s system answers."""
        self._plugin_up.labels(plugin=plugin).set(1 if up else 0)

    def delivery(self, channel: str, ok: bool) -> None:
        """Count one stakeholder notice delivered (or not) through `channel`."""
        self._deliveries.labels(channel=channel, result="ok" if ok else "failed").inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every series, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


class StoreCollector:
    """Releases by state and inbox depth, counted by the database at scrape time.

    When the database does not answer, both series are left out of that scrape (one warning
    in the log) rather than failing the whole page: the other series still help then.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        """The names this collector yields (checked for clashes; no database query)."""
        return [
            GaugeMetricFamily(f"{PREFIX}_releases", "", labels=["state"]),
            GaugeMetricFamily(f"{PREFIX}_inbox_depth", ""),
        ]

    def collect(self) -> Iterator[Metric]:
        """Query the store once per scrape."""
        try:
            with self.store.read() as tx:
                c = t.releases.c
                rows = tx.conn.execute(sa.select(c.state, sa.func.count()).group_by(c.state))
                counts: dict[str, int] = {str(state): int(n) for state, n in rows}
                depth = tx.conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t.inbox)
                    .where(t.inbox.c.processed_at.is_(None))
                ).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", type(exc).__name__)
            return
        releases = GaugeMetricFamily(
            f"{PREFIX}_releases", "Releases in each state.", labels=["state"]
        )
        for state in ReleaseState:
            releases.add_metric([state.value], counts.get(state.value, 0))
        yield releases
        yield GaugeMetricFamily(
            f"{PREFIX}_inbox_depth", "Inbound events stored and not yet processed.", value=depth
        )
