"""The daemon's own metrics (prometheus-client) and its ``/metrics``, ``/healthz``, ``/readyz`` endpoint.

Every metric is registered on an injected registry (a fresh one per daemon, so tests stay isolated).
Write-path counters are read from the forwarders at scrape time, so the hot path pays nothing for them.

``/healthz`` is 200 while the loop ticks (the last tick is younger than three intervals, or the daemon
is still starting), else 503; also 503 ("degraded: source simulator (Prometheus unreachable)") while
the daemon runs on a fallback source. ``anomaly_detector_source{source=...}`` is 1 for the source in
use. ``/readyz`` is 200 once the first tick has completed.

:func:`status_payload` is the schema of ``logs/system_report.json`` (a product file: status, counters,
models, settings without secrets), written by ``core.sinks.files.SystemReport``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.quality import QualitySnapshot
from core.records import ScoredRecord

__all__ = ["Telemetry", "TelemetryServer", "status_payload"]

PREFIX = "anomaly_detector"


class _Pull(Collector):
    """Collect values that live elsewhere (forwarders, model store) when Prometheus scrapes."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def collect(self) -> Iterable[Metric]:
        """Yield the write-path and model metrics."""
        writes = CounterMetricFamily(
            f"{PREFIX}_writes", "Database write batches by result", labels=["sink", "result"]
        )
        points = CounterMetricFamily(
            f"{PREFIX}_points_written", "Points acknowledged by the database", labels=["sink"]
        )
        retries = CounterMetricFamily(f"{PREFIX}_write_retries", "Write attempts retried", labels=["sink"])
        dropped = CounterMetricFamily(
            f"{PREFIX}_spool_dropped_records", "Records dropped because the spool was full", labels=["sink"]
        )
        depth = GaugeMetricFamily(
            f"{PREFIX}_spool_depth_records", "Scored records not yet in the database", labels=["sink"]
        )
        for name, stats in self.t.forwarder_stats().items():
            writes.add_metric([name, "success"], stats.get("batches_ok", 0))
            writes.add_metric([name, "failure"], stats.get("failures", 0))
            writes.add_metric([name, "rejected"], stats.get("dead_lettered", 0))
            points.add_metric([name], stats.get("points_written", 0))
            retries.add_metric([name], stats.get("retries", 0))
            dropped.add_metric([name], stats.get("dropped_records", 0))
            depth.add_metric([name], stats.get("lag_records", 0))
        age = GaugeMetricFamily(
            f"{PREFIX}_model_age_seconds", "Seconds since the series' model data ended", labels=["series"]
        )
        now = self.t.clock()
        for sid, trained_until in self.t.model_ends().items():
            age.add_metric([sid], max(0.0, now - trained_until))
        yield from (writes, points, retries, dropped, depth, age)
        yield from self._quality(now)
        outbox = self.t.alert_stats()
        if outbox:
            delivered = CounterMetricFamily(
                f"{PREFIX}_alert_notifications",
                "Alert deliveries by channel and result (sent, failed attempts, dropped)",
                labels=["channel", "result"],
            )
            pending = GaugeMetricFamily(
                f"{PREFIX}_alert_outbox_pending", "Alert deliveries waiting in the outbox", labels=["channel"]
            )
            for channel, counts in outbox.items():
                for result in ("sent", "failed", "dropped"):
                    delivered.add_metric([channel, result], counts.get(result, 0))
                pending.add_metric([channel], counts.get("pending", 0))
            yield from (delivered, pending)

    def _quality(self, now: float) -> Iterable[Metric]:
        """Yield the data-quality metrics: fleet aggregates, then per series for the worst ``cap``."""
        snap = self.t.quality_snapshot(now)
        if snap is None:
            return
        fam = GaugeMetricFamily
        tracked = fam(f"{PREFIX}_quality_series", "Series whose data quality is tracked", labels=["metric"])
        stale = fam(f"{PREFIX}_stale_series", "Series with no point past the stale cut", labels=["metric"])
        worst = fam(
            f"{PREFIX}_quality_completeness_min",
            "Lowest completeness of a series of the metric",
            labels=["metric"],
        )
        if snap.series:
            names, which = np.unique(np.asarray(snap.metrics), return_inverse=True)
            counts = np.bincount(which, minlength=len(names))
            stale_counts = np.bincount(which, weights=snap.stale, minlength=len(names))
            lowest = np.full(len(names), np.inf)
            np.minimum.at(lowest, which, snap.completeness)
            for j, metric in enumerate(names.tolist()):
                tracked.add_metric([metric], int(counts[j]))
                stale.add_metric([metric], int(stale_counts[j]))
                worst.add_metric([metric], float(lowest[j]))
        invalid = CounterMetricFamily(
            f"{PREFIX}_invalid_points",
            "Points that were NaN, inf or outside the physical range",
            labels=["metric", "kind"],
        )
        for (metric, kind), count in sorted(snap.invalid_total.items()):
            invalid.add_metric([metric, kind], count)
        dropped = CounterMetricFamily(f"{PREFIX}_series_dropped", "Series dropped after their stale TTL")
        dropped.add_metric([], snap.dropped_total)
        yield from (tracked, stale, worst, invalid, dropped)
        cap = self.t.quality_cap
        # Worst first: stale series by staleness, then the least complete.
        order = np.lexsort((snap.completeness, -snap.staleness))[:cap]
        per = {
            "series_staleness_seconds": ("Seconds since the series' newest point", snap.staleness),
            "series_completeness": ("Share of the window's expected points present", snap.completeness),
            "series_lateness_seconds": ("Poll time minus the newest point's timestamp", snap.lateness),
            "series_stale": ("1 while the series is stale", snap.stale.astype(float)),
        }
        labels = ["series", "metric", "host"]
        for name, (doc, values) in per.items():
            family = fam(f"{PREFIX}_{name}", f"{doc} (the worst {cap} series only)", labels=labels)
            for i in order.tolist():
                family.add_metric([snap.series[i], snap.metrics[i], snap.hosts[i]], float(values[i]))
            yield family
        omitted = fam(f"{PREFIX}_quality_series_omitted", "Tracked series left out of the per-series gauges")
        omitted.add_metric([], max(0, len(snap.series) - cap))
        yield omitted


class Telemetry:
    """Counters and gauges of one daemon; implements the monitor's TickObserver."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.last_tick: float | None = None
        r = self.registry
        self.ticks = Counter(f"{PREFIX}_ticks", "Loop ticks completed", registry=r)
        self.missed = Counter(
            f"{PREFIX}_missed_ticks", "Grid times skipped because a tick overran", registry=r
        )
        self.points = Counter(f"{PREFIX}_points_scored", "Points scored", registry=r)
        self.anomalies = Counter(f"{PREFIX}_anomalies", "Anomalies flagged", ["severity"], registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Failed polls and writes", ["kind"], registry=r)
        self.tick_seconds = Histogram(
            f"{PREFIX}_tick_duration_seconds",
            "Duration of one poll-score-write tick",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.series = Gauge(f"{PREFIX}_series", "Series seen by the loop", registry=r)
        self.up = Gauge(f"{PREFIX}_up", "1 while the loop is ticking on time", registry=r)
        self.refits = Counter(f"{PREFIX}_refits", "Model refits", ["result"], registry=r)
        self.info = Gauge(f"{PREFIX}_build_info", "Source and version", ["version", "source"], registry=r)
        self.source = Gauge(f"{PREFIX}_source", "1 for the source the loop reads", ["source"], registry=r)
        self.degraded: str | None = None
        for severity in ("LOW", "MEDIUM", "HIGH", "CRITICAL"):
            self.anomalies.labels(severity=severity)
        self._forwarders: dict[str, Callable[[], Mapping[str, float]]] = {}
        self._models: Callable[[], Mapping[str, float]] = dict
        self._alerts: Callable[[], Mapping[str, Mapping[str, int]]] = dict
        self._quality: Callable[[float], QualitySnapshot] | None = None
        self.quality_cap = 0
        self._lock = threading.Lock()
        r.register(_Pull(self))

    def set_source(self, name: str, degraded: str | None = None) -> None:
        """Expose the source in use; ``degraded`` (why it is a fallback) makes /healthz answer 503."""
        for known in sorted({"prometheus", "simulator", name}):
            self.source.labels(source=known).set(1 if known == name else 0)
        self.degraded = f"degraded: source {name} ({degraded})" if degraded else None

    def add_forwarder(self, name: str, stats: Callable[[], Mapping[str, float]]) -> None:
        """Expose a database forwarder's counters (read at scrape time)."""
        self._forwarders[name] = stats

    def watch_models(self, model_ends: Callable[[], Mapping[str, float]]) -> None:
        """Expose model age per series from a callable giving series -> end of training data."""
        self._models = model_ends

    def watch_alerts(self, stats: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        """Expose the alert outbox's counters per channel (read at scrape time)."""
        self._alerts = stats

    def watch_quality(self, snapshot: Callable[[float], QualitySnapshot], cap: int = 500) -> None:
        """Expose data quality (``core.quality``): fleet aggregates, per-series gauges for ``cap`` series."""
        self._quality, self.quality_cap = snapshot, cap

    def quality_snapshot(self, now: float) -> QualitySnapshot | None:
        """Return the tracker's current snapshot, or None without a tracker."""
        return None if self._quality is None else self._quality(now)

    def alert_stats(self) -> Mapping[str, Mapping[str, int]]:
        """Return the alert outbox's counters per channel (sent, failed, dropped, pending)."""
        return self._alerts()

    def forwarder_stats(self) -> dict[str, Mapping[str, float]]:
        """Return the current counters of every forwarder."""
        return {name: stats() for name, stats in self._forwarders.items()}

    def model_ends(self) -> Mapping[str, float]:
        """Return series -> end of the data its model was trained on."""
        return self._models()

    def on_tick(self, now: float, seconds: float, records: Sequence[ScoredRecord]) -> None:
        """Record one completed tick."""
        self.ticks.inc()
        self.tick_seconds.observe(seconds)
        self.points.inc(len(records))
        for r in records:
            if r.is_anomaly:
                self.anomalies.labels(severity=r.severity).inc()
        self.last_tick = self.clock()
        self.up.set(1)

    def on_missed(self, count: int) -> None:
        """Record skipped grid times."""
        self.missed.inc(count)

    def on_error(self, kind: str, exc: BaseException) -> None:
        """Record a failed poll or write."""
        self.errors.labels(kind=kind).inc()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Return (healthy, details): the loop ticked within three intervals, on its configured source."""
        now = self.clock()
        grace = max(3 * self.interval, 30.0)
        if self.last_tick is None:
            ok = now - self.started < grace
            age = None
        else:
            age = now - self.last_tick
            ok = age < grace
        self.up.set(1 if ok else 0)
        status = "ok" if ok else "stalled"
        if self.degraded is not None:
            ok, status = False, self.degraded if ok else f"stalled, {self.degraded}"
        return ok, {
            "status": status,
            "last_tick_age_seconds": age,
            "interval": self.interval,
        }

    def ready(self) -> bool:
        """Return whether the first tick has completed."""
        return self.last_tick is not None

    def render(self) -> bytes:
        """Return the metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class TelemetryServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread."""

    def __init__(self, telemetry: Telemetry, host: str = "127.0.0.1", port: int = 9108) -> None:
        self.telemetry = telemetry
        handler = _handler_for(telemetry)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="telemetry", daemon=True)

    @property
    def port(self) -> int:
        """Return the bound port (useful when 0 was asked for)."""
        return int(self.httpd.server_address[1])

    def start(self) -> TelemetryServer:
        """Start serving."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(telemetry: Telemetry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, telemetry.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz":
                ok, details = telemetry.health()
                self._send(200 if ok else 503, json.dumps(details).encode(), "application/json")
            elif path == "/readyz":
                ready = telemetry.ready()
                body = json.dumps({"status": "ready" if ready else "starting"}).encode()
                self._send(200 if ready else 503, body, "application/json")
            else:
                self._send(
                    404, b'{"error": "not found; try /metrics, /healthz or /readyz"}', "application/json"
                )

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
            """Keep scrapes out of the terminal."""

    return Handler


def status_payload(
    *,
    version: str,
    started_at: float,
    source: str,
    model_version: str | None,
    models: Mapping[str, Any],
    monitor: Any,
    refits: Any,
    spool: Mapping[str, Any],
    forwarders: Mapping[str, Mapping[str, float]],
    settings: Mapping[str, Any],
    status: str = "running",
) -> dict[str, Any]:
    """Return the body of ``system_report.json``; ``monitor`` and ``refits`` are the loop's stats."""
    return {
        "status": status,
        "version": version,
        "pid": os.getpid(),
        "updated_at": time.time(),
        "started_at": started_at,
        "source": source,
        "model_version": model_version,
        "models": {sid: {"kind": mod.kind, "trained_until": mod.train_end} for sid, mod in models.items()},
        "monitor": asdict(monitor),
        "refits": asdict(refits),
        "spool": dict(spool),
        "forwarders": dict(forwarders),
        "settings": settings,
    }
