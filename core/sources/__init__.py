"""Where points come from: Prometheus, the simulator, a CSV replay (each a ``core.protocols.Source``).

    prometheus.py        instant and range queries on the interval grid, catch-up after downtime
    prometheus_http.py   the HTTP layer under it: GET, retry budget, decoding, actionable errors
    simulator.py         deterministic CPU-like hosts (also the fallback when Prometheus is down)
    replay.py            a recorded CSV on a simulated clock (evaluate, NAB, backfills)

:func:`open_source` is the one place that decides which live source the daemon runs on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from loguru import logger

from core.anomalies import Anomaly
from core.errors import ConfigError, SourceUnavailable
from core.sources.simulator import SimulatorSource

if TYPE_CHECKING:
    from core.config import Settings
    from core.protocols import Source

__all__ = ["open_simulator", "open_source"]


def open_simulator(settings: Settings) -> SimulatorSource:
    """Return the simulator the settings describe (``simulator.*``, the monitoring interval)."""
    m, sim = settings.monitoring, settings.simulator
    anomalies: dict[str, list[Anomaly]] = {}
    if sim.inject:
        # Injections are relative to now (the daemon's start): a demo or drill, not a replayable fact.
        start = time.time()
        source = SimulatorSource(sim.series, interval=m.interval_seconds)
        for inj in sim.inject:
            for host, _profile in source.hosts:
                if inj.host is None or inj.host == host:
                    event = Anomaly(inj.kind, start + inj.start_after_s, inj.duration_s, inj.magnitude)
                    anomalies.setdefault(host, []).append(event)
        logger.info(f"simulator: {len(sim.inject)} incident(s) injected relative to start")
    return SimulatorSource(
        sim.series,
        interval=m.interval_seconds,
        max_catchup=m.max_catchup_hours * 3600.0,
        seed=sim.seed,
        noise=sim.noise,
        anomaly_rate=sim.anomaly_rate,
        anomalies=anomalies,
    )


def open_source(settings: Settings) -> Source:
    """Return Prometheus if configured and reachable, else the simulator (loudly, if allowed).

    ``monitoring.source``: ``simulator`` (or ``auto`` without a URL) is the simulator; ``prometheus``
    without a URL is a ConfigError; unreachable at start falls back to the simulator when
    ``monitoring.fallback_to_simulator`` (explicitly set; the simulator's ``fallback_for`` then says
    why, and the daemon reports itself degraded), else raises SourceUnavailable (exit 4).
    """
    m, p, sim = settings.monitoring, settings.prometheus, settings.simulator
    simulator = open_simulator(settings)
    if m.source == "simulator" or (m.source == "auto" and not p.url):
        logger.info(f"source: simulator ({sim.series} series); set PROMETHEUS_URL to monitor real hosts")
        return simulator
    if not p.url:
        raise ConfigError(
            "monitoring.source is prometheus but no URL is set; set PROMETHEUS_URL or --prometheus-url"
        )
    from core.sources.prometheus import PrometheusSource

    metrics = settings.metric_list()
    source = PrometheusSource.from_settings(p, m, metrics)
    try:
        now_series = source.check()
    except SourceUnavailable as exc:
        source.close()
        if not m.fallback_to_simulator:
            raise
        logger.error(
            f"PROMETHEUS IS UNREACHABLE ({exc}). FALLING BACK TO THE SIMULATOR: the values scored "
            f"from now on are SIMULATED, not real (monitoring.fallback_to_simulator: false fails instead)"
        )
        simulator.fallback_for = "Prometheus unreachable"
        return simulator
    names = ", ".join(f"{x.name} ({x.query!r})" for x in metrics)
    logger.info(f"source: Prometheus at {source.url}, metrics {names} ({now_series} series now)")
    return source
