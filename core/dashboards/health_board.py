"""The detector's own health dashboard (Prometheus scrapes its /metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.dashboards._grafana import (
    HEALTH_DASHBOARD_UID,
    _dashboard,
    _grid,
    _override,
    _panel,
    _prom_target,
    _stat_options,
    _thresholds,
    _timeseries_custom,
    _ts_options,
)
from core.dashboards.queries import (
    _RATE,
    _WRITE_FAILED,
    TICK_P99_EXPR,
)


def _stat(
    title: str, description: str, x: int, expr: str, unit: str, steps: dict[str, Any]
) -> dict[str, Any]:
    return _panel(
        "stat",
        title,
        description,
        _grid(x, 0, 4, 4),
        [_prom_target("A", expr)],
        defaults={"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"}},
        options={**_stat_options(), "textMode": "value"},
    )


def _series(
    title: str,
    description: str,
    grid: dict[str, int],
    targets: list[dict[str, Any]],
    unit: str,
    overrides: Sequence[dict[str, Any]] = (),
    **custom: Any,
) -> dict[str, Any]:
    defaults = {"unit": unit, "color": {"mode": "palette-classic"}, "custom": _timeseries_custom(**custom)}
    options = _ts_options(("lastNotNull", "max"))
    return _panel(
        "timeseries",
        title,
        description,
        grid,
        targets,
        defaults=defaults,
        overrides=overrides,
        options=options,
    )


def _health_panels() -> list[dict[str, Any]]:
    zero_ok = _thresholds((None, "green"), (1, "red"))
    bars: dict[str, Any] = {
        "drawStyle": "bars",
        "fillOpacity": 80,
        "stacking": {"group": "A", "mode": "normal"},
    }
    p = _prom_target
    return [
        _stat(
            "Detector up",
            "anomaly_detector_up: 1 while the loop ticks on time.",
            0,
            "min(anomaly_detector_up)",
            "none",
            _thresholds((None, "red"), (1, "green")),
        ),
        _stat(
            "Write failures",
            "Failed or rejected write batches over the time range (failed ones are retried from the spool).",
            4,
            f"sum(increase(anomaly_detector_writes_total{{{_WRITE_FAILED}}}[$__range]))",
            "short",
            zero_ok,
        ),
        _stat(
            "Spool depth",
            "Scored records not yet in the database (waiting in the disk spool).",
            8,
            "sum(anomaly_detector_spool_depth_records)",
            "short",
            _thresholds((None, "green"), (1, "orange"), (10000, "red")),
        ),
        _stat(
            "Dropped records",
            "Records dropped over the time range because the spool was full: data lost.",
            12,
            "sum(increase(anomaly_detector_spool_dropped_records_total[$__range]))",
            "short",
            zero_ok,
        ),
        _stat(
            "Missed ticks",
            "Grid times skipped over the time range because a tick overran its deadline.",
            16,
            "sum(increase(anomaly_detector_missed_ticks_total[$__range]))",
            "short",
            zero_ok,
        ),
        _stat(
            "Tick duration p99",
            "99th percentile of one poll-score-write tick over the time range.",
            20,
            TICK_P99_EXPR.replace(_RATE, "$__range"),
            "s",
            _thresholds((None, "green"), (5, "orange"), (30, "red")),
        ),
        _series(
            "Ticks and points",
            "Loop ticks, points scored and ticks missed per second.",
            _grid(0, 4, 12, 8),
            [
                p("A", f"sum(rate(anomaly_detector_ticks_total[{_RATE}]))", "ticks"),
                p("B", f"sum(rate(anomaly_detector_points_scored_total[{_RATE}]))", "points scored"),
                p("C", f"sum(rate(anomaly_detector_missed_ticks_total[{_RATE}]))", "missed ticks"),
            ],
            "ops",
        ),
        _series(
            "Writes by sink and result",
            "Write batches per second by sink and result (success, failure, rejected), retries and "
            "points acknowledged by the database.",
            _grid(12, 4, 12, 8),
            [
                p(
                    "A",
                    f"sum by (sink, result) (rate(anomaly_detector_writes_total[{_RATE}]))",
                    "{{sink}} {{result}}",
                ),
                p(
                    "B",
                    f"sum by (sink) (rate(anomaly_detector_write_retries_total[{_RATE}]))",
                    "{{sink}} retries",
                ),
                p(
                    "C",
                    f"sum by (sink) (rate(anomaly_detector_points_written_total[{_RATE}]))",
                    "{{sink}} points",
                ),
            ],
            "ops",
        ),
        _series(
            "Spool depth by sink",
            "Records waiting in the disk spool: grows while a sink is down, drains when it is back. "
            "Dropped records are lost for good.",
            _grid(0, 12, 12, 8),
            [
                p("A", "sum by (sink) (anomaly_detector_spool_depth_records)", "{{sink}} waiting"),
                p(
                    "B",
                    f"sum by (sink) (increase(anomaly_detector_spool_dropped_records_total[{_RATE}]))",
                    "{{sink}} dropped",
                ),
            ],
            "short",
        ),
        _series(
            "Tick duration",
            "Median and 99th percentile of the tick duration.",
            _grid(12, 12, 12, 8),
            [p("A", TICK_P99_EXPR, "p99"), p("B", TICK_P99_EXPR.replace("0.99", "0.5"), "p50")],
            "s",
        ),
        _series(
            "Anomalies per minute by severity",
            "Anomalous points per minute, by severity.",
            _grid(0, 20, 12, 8),
            [
                p(
                    "A",
                    f"sum by (severity) (rate(anomaly_detector_anomalies_total[{_RATE}])) * 60",
                    "{{severity}}",
                )
            ],
            "short",
            **bars,
        ),
        _series(
            "Model age by series",
            "Seconds since the end of the data each series' model was trained on; refits reset it.",
            _grid(12, 20, 12, 8),
            [p("A", "max by (series) (anomaly_detector_model_age_seconds)", "{{series}}")],
            "s",
        ),
        _series(
            "Errors and refits",
            "Failed polls and writes by kind, and model refits by result, per interval.",
            _grid(0, 28, 12, 8),
            [
                p(
                    "A",
                    f"sum by (kind) (increase(anomaly_detector_errors_total[{_RATE}]))",
                    "{{kind}} errors",
                ),
                p(
                    "B",
                    f"sum by (result) (increase(anomaly_detector_refits_total[{_RATE}]))",
                    "refit {{result}}",
                ),
            ],
            "short",
            **bars,
        ),
        _series(
            "Series and host CPU",
            "Series the loop scores, and CPU busy percent straight from node_exporter (what it polls).",
            _grid(12, 28, 12, 8),
            [
                p("A", "max(anomaly_detector_series)", "series scored"),
                p(
                    "B",
                    f'100 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{_RATE}])) * 100',
                    "CPU % {{instance}}",
                ),
            ],
            "short",
            overrides=[
                _override("byFrameRefID", "B", **{"unit": "percent", "custom.axisPlacement": "right"}),
            ],
        ),
        _series(
            "Alert outbox",
            "Alert deliveries waiting in the durable outbox by channel (a receiver is down while it "
            "grows), and deliveries sent, failed (retried) and dropped (lost) per interval.",
            _grid(0, 36, 24, 8),
            [
                p("A", "sum by (channel) (anomaly_detector_alert_outbox_pending)", "{{channel}} pending"),
                p(
                    "B",
                    "sum by (channel, result) "
                    f"(increase(anomaly_detector_alert_notifications_total[{_RATE}]))",
                    "{{channel}} {{result}}",
                ),
            ],
            "short",
        ),
        _series(
            "Data quality",
            "Series stale now (no point for 1.5 intervals; after monitoring.quality.series_ttl_hours "
            "they are dropped) and the lowest completeness per metric (right axis), and invalid points "
            "(NaN, inf, outside the physical range) per interval.",
            _grid(0, 44, 24, 8),
            [
                p("A", "sum by (metric) (anomaly_detector_stale_series)", "{{metric}} stale series"),
                p("B", "min by (metric) (anomaly_detector_quality_completeness_min)", "{{metric}} complete"),
                p(
                    "C",
                    f"sum by (metric, kind) (increase(anomaly_detector_invalid_points_total[{_RATE}]))",
                    "{{metric}} invalid ({{kind}})",
                ),
            ],
            "short",
            overrides=[
                _override("byFrameRefID", "B", **{"unit": "percentunit", "custom.axisPlacement": "right"}),
            ],
        ),
    ]


def health_dashboard() -> dict[str, Any]:
    """Return the detector's own health dashboard (Prometheus)."""
    return _dashboard(
        HEALTH_DASHBOARD_UID,
        "Anomaly detector health",
        "The detector's own metrics (/metrics on port 9108, scraped by Prometheus). "
        "Generated by `python -m core.dashboards`: do not edit by hand.",
        _health_panels(),
        [],
    )
