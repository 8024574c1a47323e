"""Generate the Grafana dashboards and alert rules from one definition: ``python -m core.dashboards``.

    this module ──> grafana_dashboard.json                          main dashboard (InfluxDB 2.x, Flux)
                ──> grafana/dashboards/anomaly-detection.json       the same file, provisioned
                ──> grafana/dashboards/detector-health.json         the daemon's own metrics (Prometheus)
                ──> grafana/provisioning/alerting/alert_rules.yaml  Grafana-managed alert rules

The generated files are committed and a test fails when they differ from what this module renders:
edit the definition here and re-run the module, never the JSON. Every query names measurements, tags
and fields through the constants of :mod:`core.sinks.lineproto` (the schema the sink writes);
:func:`flux_references` and :func:`promql_metric_names` pull the names back out of any query so tests
can check them against the sink and the daemon's metrics.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.scoring import SEVERITIES
from core.sinks.lineproto import (
    ANOMALY_MEASUREMENT,
    CPU_MEASUREMENT,
    FIELD_ANOMALY_SCORE,
    FIELD_CONFIDENCE,
    FIELD_CPU_USAGE,
    FIELD_IS_ANOMALY,
    FIELD_THRESHOLD,
    FIELD_YHAT_LOWER,
    FIELD_YHAT_UPPER,
    METRIC_TYPE_ACTUAL,
    METRIC_TYPE_FORECASTED,
    TAG_HOST,
    TAG_METRIC_TYPE,
    TAG_SEVERITY,
)

__all__ = [
    "ALERT_RULES_PATH",
    "HEALTH_DASHBOARD_UID",
    "INFLUX_DATASOURCE_UID",
    "MAIN_DASHBOARD_PATH",
    "MAIN_DASHBOARD_UID",
    "PROMETHEUS_DATASOURCE_UID",
    "FluxRefs",
    "alert_rules",
    "flux_references",
    "health_dashboard",
    "iter_queries",
    "main",
    "main_dashboard",
    "promql_metric_names",
    "render_files",
]

# Fixed uids: grafana/provisioning/datasources/datasources.yaml declares the same two.
INFLUX_DATASOURCE_UID = "influxdb-anomaly"
PROMETHEUS_DATASOURCE_UID = "prometheus-anomaly"
MAIN_DASHBOARD_UID = "cpu-anomaly-detection"
HEALTH_DASHBOARD_UID = "anomaly-detector-health"

MAIN_DASHBOARD_PATH = "grafana_dashboard.json"
DASHBOARDS_DIR = "grafana/dashboards"
ALERT_RULES_PATH = "grafana/provisioning/alerting/alert_rules.yaml"
ALERT_FOLDER = "Anomaly detector"
DETECTOR_JOB = "anomaly-detector"  # the job name in deploy/prometheus.yml

# Alert thresholds, in one place (each rule's annotations say the same numbers in words).
SUSTAINED_WINDOW_S = 900
SUSTAINED_RATE = 0.5
NO_DATA_WINDOW_S = 300
CRITICAL_WINDOW_S = 300

_INFLUX = {"type": "influxdb", "uid": INFLUX_DATASOURCE_UID}
_PROM = {"type": "prometheus", "uid": PROMETHEUS_DATASOURCE_UID}
_EXPR = {"type": "__expr__", "uid": "__expr__"}
_SCHEMA_VERSION = 39
_TAGS = ["anomaly-detector"]
# Anomalous severities (every one but NONE), mildest first.
_SEVERITY_COLORS = dict(zip(SEVERITIES[1:], ("yellow", "orange", "red", "dark-red"), strict=True))

# ---------------------------------------------------------------------------------------------------
# Flux building blocks. Dashboards read the bucket from the $bucket variable; alert rules cannot see
# dashboard variables, so they read the datasource's default bucket.
_DASH_BUCKET = '"${bucket}"'
_ALERT_BUCKET = "v.defaultBucket"
_HOST_FILTER = f"  |> filter(fn: (r) => r.{TAG_HOST} =~ /^${{host:regex}}$/)"


def _from(bucket: str, measurement: str) -> list[str]:
    return [
        f"from(bucket: {bucket})",
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
        f'  |> filter(fn: (r) => r._measurement == "{measurement}")',
    ]


def _fields(*names: str) -> str:
    test = " or ".join(f'r._field == "{name}"' for name in names)
    return f"  |> filter(fn: (r) => {test})"


def _tag(tag: str, value: str, op: str = "==") -> str:
    return f'  |> filter(fn: (r) => r.{tag} {op} "{value}")'


def _flux(*lines: str) -> str:
    return "\n".join(lines)


def _cols(*names: str) -> str:
    return ", ".join(f'"{name}"' for name in names)


ACTUAL_QUERY = _flux(
    *_from(_DASH_BUCKET, CPU_MEASUREMENT),
    _tag(TAG_METRIC_TYPE, METRIC_TYPE_ACTUAL),
    _fields(FIELD_CPU_USAGE),
    _HOST_FILTER,
    "  |> group()",
    "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
    '  |> keep(columns: ["_time", "_value"])',
    '  |> rename(columns: {_value: "actual"})',
)

FORECAST_QUERY = _flux(
    *_from(_DASH_BUCKET, CPU_MEASUREMENT),
    _tag(TAG_METRIC_TYPE, METRIC_TYPE_FORECASTED),
    _fields(FIELD_CPU_USAGE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER),
    _HOST_FILTER,
    '  |> group(columns: ["_field"])',
    "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
    "  |> group()",
    '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
    f"  |> keep(columns: [{_cols('_time', FIELD_CPU_USAGE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER)}])",
    # Field names double as series names: the band's fill refers to yhat_lower by name.
    f'  |> rename(columns: {{{FIELD_CPU_USAGE}: "yhat"}})',
)

SCORE_QUERY = _flux(
    *_from(_DASH_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_ANOMALY_SCORE),
    _HOST_FILTER,
    f'  |> group(columns: ["{TAG_HOST}"])',
    "  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)",
    f"  |> keep(columns: [{_cols('_time', '_value', TAG_HOST)}])",
)

SEVERITY_COUNT_QUERY = _flux(
    *_from(_DASH_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_IS_ANOMALY),
    _tag(TAG_SEVERITY, "NONE", "!="),
    _HOST_FILTER,
    "  |> filter(fn: (r) => r._value == true)",
    f'  |> group(columns: ["{TAG_SEVERITY}"])',
    "  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: true)",
    f"  |> keep(columns: [{_cols('_time', '_value', TAG_SEVERITY)}])",
)

_TABLE_COLUMNS = ("_time", TAG_HOST, TAG_SEVERITY, FIELD_ANOMALY_SCORE, FIELD_CONFIDENCE, FIELD_THRESHOLD)
RECENT_ANOMALIES_QUERY = _flux(
    *_from(_DASH_BUCKET, ANOMALY_MEASUREMENT),
    # Severity is NONE exactly when the point is not an anomaly: a cheap pre-filter before the pivot.
    _tag(TAG_SEVERITY, "NONE", "!="),
    _HOST_FILTER,
    _fields(FIELD_IS_ANOMALY, FIELD_ANOMALY_SCORE, FIELD_CONFIDENCE, FIELD_THRESHOLD),
    '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
    f"  |> filter(fn: (r) => r.{FIELD_IS_ANOMALY} == true)",
    "  |> group()",
    f"  |> keep(columns: [{_cols(*_TABLE_COLUMNS)}])",
    '  |> sort(columns: ["_time"], desc: true)',
    "  |> limit(n: 200)",
)

ANOMALY_RATE_QUERY = _flux(
    *_from(_DASH_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_IS_ANOMALY),
    _HOST_FILTER,
    "  |> toFloat()",
    f'  |> group(columns: ["{TAG_HOST}"])',
    "  |> mean()",
)

LATEST_SCORE_QUERY = _flux(
    *_from(_DASH_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_ANOMALY_SCORE),
    _HOST_FILTER,
    # One table per host and severity: the last of each, then the latest of those per host.
    "  |> last()",
    f'  |> group(columns: ["{TAG_HOST}"])',
    '  |> sort(columns: ["_time"])',
    "  |> last()",
)

BUCKET_VARIABLE_QUERY = _flux(
    "buckets()",
    "  |> filter(fn: (r) => r.name !~ /^_/)",
    '  |> rename(columns: {name: "_value"})',
    '  |> keep(columns: ["_value"])',
)

HOST_VARIABLE_QUERY = _flux(
    'import "influxdata/influxdb/schema"',
    "",
    "schema.tagValues(",
    f"  bucket: {_DASH_BUCKET},",
    f'  tag: "{TAG_HOST}",',
    f'  predicate: (r) => r._measurement == "{ANOMALY_MEASUREMENT}",',
    "  start: -30d,",
    ")",
)

# ---------------------------------------------------------------------------------------------------
# Panels.


def _grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"h": h, "w": w, "x": x, "y": y}


def _flux_target(ref: str, query: str) -> dict[str, Any]:
    return {"datasource": dict(_INFLUX), "query": query, "refId": ref}


def _prom_target(ref: str, expr: str, legend: str = "__auto") -> dict[str, Any]:
    return {
        "datasource": dict(_PROM),
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
    }


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def _override(matcher: str, name: str, **props: Any) -> dict[str, Any]:
    return {
        "matcher": {"id": matcher, "options": name},
        "properties": [{"id": key, "value": value} for key, value in props.items()],
    }


def _timeseries_custom(**changes: Any) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "axisPlacement": "auto",
        "drawStyle": "line",
        "fillOpacity": 0,
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "none"},
        "thresholdsStyle": {"mode": "off"},
    }
    custom.update(changes)
    return custom


def _panel(
    kind: str,
    title: str,
    description: str,
    grid: dict[str, int],
    targets: Sequence[dict[str, Any]],
    *,
    defaults: dict[str, Any],
    overrides: Sequence[dict[str, Any]] = (),
    options: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    datasource = targets[0]["datasource"]
    return {
        "datasource": dict(datasource),
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "gridPos": grid,
        "options": options,
        "targets": list(targets),
        "title": title,
        "type": kind,
        **extra,
    }


def _legend(mode: str = "list", calcs: Sequence[str] = ()) -> dict[str, Any]:
    return {"calcs": list(calcs), "displayMode": mode, "placement": "bottom", "showLegend": True}


def _ts_options(calcs: Sequence[str] = ()) -> dict[str, Any]:
    mode = "table" if calcs else "list"
    return {"legend": _legend(mode, calcs), "tooltip": {"mode": "multi", "sort": "desc"}}


def _stat_options(calc: str = "lastNotNull") -> dict[str, Any]:
    return {
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "textMode": "value_and_name",
    }


def _main_panels() -> list[dict[str, Any]]:
    host_name = "${__field.labels.host}"
    score_steps = _thresholds((None, "green"), (1.0, "yellow"), (2.0, "orange"), (3.0, "red"))
    band = "#5794F2"
    return [
        _panel(
            "stat",
            "Anomaly rate per host, last hour",
            "Share of scored points flagged anomalous in the last hour (is_anomaly), per host.",
            _grid(0, 0, 12, 5),
            [_flux_target("A", ANOMALY_RATE_QUERY)],
            defaults={
                "displayName": host_name,
                "unit": "percentunit",
                "decimals": 1,
                "min": 0,
                "max": 1,
                "thresholds": _thresholds((None, "green"), (0.05, "orange"), (SUSTAINED_RATE, "red")),
                "color": {"mode": "thresholds"},
            },
            options=_stat_options(),
            timeFrom="1h",
        ),
        _panel(
            "stat",
            "Latest anomaly score per host",
            "The most recent anomaly score of each host: 1.0 is the band edge, above 1 is anomalous.",
            _grid(12, 0, 12, 5),
            [_flux_target("A", LATEST_SCORE_QUERY)],
            defaults={
                "displayName": host_name,
                "unit": "none",
                "decimals": 2,
                "thresholds": score_steps,
                "color": {"mode": "thresholds"},
            },
            options=_stat_options(),
        ),
        _panel(
            "timeseries",
            "CPU usage vs forecast: $host",
            "Actual CPU usage against the model's forecast (yhat) and its band (yhat_lower to "
            "yhat_upper, shaded). Points outside the band score above 1.0.",
            _grid(0, 5, 12, 9),
            [_flux_target("A", ACTUAL_QUERY), _flux_target("B", FORECAST_QUERY)],
            defaults={
                "unit": "percent",
                "decimals": 1,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "custom": _timeseries_custom(),
            },
            overrides=[
                _override(
                    "byName",
                    "actual",
                    **{"color": {"fixedColor": "orange", "mode": "fixed"}, "custom.lineWidth": 2},
                ),
                _override(
                    "byName",
                    "yhat",
                    **{
                        "color": {"fixedColor": band, "mode": "fixed"},
                        "custom.lineStyle": {"dash": [10, 10], "fill": "dash"},
                    },
                ),
                _override(
                    "byName",
                    FIELD_YHAT_UPPER,
                    **{
                        "color": {"fixedColor": band, "mode": "fixed"},
                        "custom.fillBelowTo": FIELD_YHAT_LOWER,
                        "custom.fillOpacity": 20,
                        "custom.lineWidth": 0,
                    },
                ),
                _override(
                    "byName",
                    FIELD_YHAT_LOWER,
                    **{"color": {"fixedColor": band, "mode": "fixed"}, "custom.lineWidth": 0},
                ),
            ],
            options=_ts_options(),
            repeat="host",
            repeatDirection="h",
            maxPerRow=2,
        ),
        _panel(
            "timeseries",
            "Anomaly score",
            "Highest anomaly score per host and interval. The red line at 1.0 is the band edge: "
            "above it a point is an anomaly (LOW above 1, MEDIUM above 1.5, HIGH above 2, CRITICAL "
            "above 3 with the default cut points).",
            _grid(0, 14, 12, 8),
            [_flux_target("A", SCORE_QUERY)],
            defaults={
                "displayName": host_name,
                "unit": "none",
                "decimals": 2,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "thresholds": _thresholds((None, "green"), (1.0, "red")),
                "custom": _timeseries_custom(
                    showPoints="auto", thresholdsStyle={"mode": "line"}, scaleDistribution={"type": "linear"}
                ),
            },
            options=_ts_options(("max", "mean")),
        ),
        _panel(
            "timeseries",
            "Anomalies by severity",
            "Number of anomalous points per interval, stacked by severity.",
            _grid(12, 14, 12, 8),
            [_flux_target("A", SEVERITY_COUNT_QUERY)],
            defaults={
                "displayName": "${__field.labels.severity}",
                "unit": "short",
                "decimals": 0,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "custom": _timeseries_custom(
                    drawStyle="bars", fillOpacity=80, stacking={"group": "A", "mode": "normal"}
                ),
            },
            overrides=[
                _override("byName", severity, **{"color": {"fixedColor": color, "mode": "fixed"}})
                for severity, color in _SEVERITY_COLORS.items()
            ],
            options=_ts_options(("sum",)),
        ),
        _panel(
            "table",
            "Recent anomalies",
            "The latest 200 anomalous points in the time range, newest first.",
            _grid(0, 22, 24, 10),
            [_flux_target("A", RECENT_ANOMALIES_QUERY)],
            defaults={"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True}},
            overrides=[
                _override("byName", "_time", displayName="time"),
                _override(
                    "byName",
                    TAG_SEVERITY,
                    **{
                        "custom.cellOptions": {"type": "color-background"},
                        "mappings": [
                            {
                                "type": "value",
                                "options": {
                                    name: {"color": color, "index": i}
                                    for i, (name, color) in enumerate(_SEVERITY_COLORS.items())
                                },
                            }
                        ],
                    },
                ),
                _override(
                    "byName",
                    FIELD_ANOMALY_SCORE,
                    **{
                        "decimals": 2,
                        "thresholds": score_steps,
                        "custom.cellOptions": {"type": "color-text"},
                    },
                ),
                _override("byName", FIELD_CONFIDENCE, unit="percentunit", decimals=0),
                _override("byName", FIELD_THRESHOLD, decimals=2),
            ],
            options={
                "cellHeight": "sm",
                "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
                "showHeader": True,
                "sortBy": [{"desc": True, "displayName": "time"}],
            },
        ),
    ]


def _variables() -> list[dict[str, Any]]:
    common = {"datasource": dict(_INFLUX), "hide": 0, "skipUrlSync": False, "type": "query"}
    return [
        {
            **common,
            "current": {},
            "definition": BUCKET_VARIABLE_QUERY,
            "description": "InfluxDB bucket the detector writes to (INFLUXDB_BUCKET).",
            "includeAll": False,
            "label": "Bucket",
            "multi": False,
            "name": "bucket",
            "options": [],
            "query": BUCKET_VARIABLE_QUERY,
            "refresh": 1,
            "regex": "",
            "sort": 1,
        },
        {
            **common,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "definition": HOST_VARIABLE_QUERY,
            "description": "Hosts seen in the last 30 days.",
            "includeAll": True,
            "label": "Host",
            "multi": True,
            "name": "host",
            "options": [],
            "query": HOST_VARIABLE_QUERY,
            "refresh": 2,
            "regex": "",
            "sort": 1,
        },
    ]


def _dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]
) -> dict[str, Any]:
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": list(_TAGS),
                "targetBlank": False,
                "title": "Anomaly detector",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": _SCHEMA_VERSION,
        "tags": list(_TAGS),
        "templating": {"list": variables},
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def main_dashboard() -> dict[str, Any]:
    """Return the main dashboard: CPU vs forecast band, scores, anomalies (InfluxDB, Flux)."""
    return _dashboard(
        MAIN_DASHBOARD_UID,
        "CPU anomaly detection",
        "CPU usage scored against a forecast band; written by `python main.py --mode monitor`. "
        "Generated by `python -m core.dashboards`: do not edit by hand.",
        _main_panels(),
        _variables(),
    )


# ---------------------------------------------------------------------------------------------------
# The daemon's own health (Prometheus scrapes its /metrics).

_RATE = "$__rate_interval"
# writes_total{result}: success | failure (retried, then spooled) | rejected (refused by the database).
_WRITE_FAILED = 'result!="success"'
TICK_P99_EXPR = (
    f"histogram_quantile(0.99, sum by (le) (rate(anomaly_detector_tick_duration_seconds_bucket[{_RATE}])))"
)
DETECTOR_UP_EXPR = (
    f'min by (instance) (anomaly_detector_up) or min by (instance) (up{{job="{DETECTOR_JOB}"}})'
)
WRITE_FAILURES_EXPR = f"sum by (sink) (increase(anomaly_detector_writes_total{{{_WRITE_FAILED}}}[10m]))"
SPOOL_DEPTH_EXPR = "max by (sink) (anomaly_detector_spool_depth_records)"
SPOOL_DROPPED_EXPR = "sum by (sink) (increase(anomaly_detector_spool_dropped_records_total[15m]))"


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


# ---------------------------------------------------------------------------------------------------
# Alert rules (Grafana unified alerting, file provisioning format, apiVersion 1).
# Labels and data are interpolated from the environment by Grafana, so they hold no "$"; annotations
# are not, so they may use {{ $labels.host }}.

CRITICAL_ALERT_QUERY = _flux(
    *_from(_ALERT_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_ANOMALY_SCORE),
    _tag(TAG_SEVERITY, "CRITICAL"),
    f'  |> group(columns: ["{TAG_HOST}"])',
    f"  |> keep(columns: [{_cols('_time', '_value', TAG_HOST)}])",
    '  |> sort(columns: ["_time"])',
)

SUSTAINED_ALERT_QUERY = _flux(
    *_from(_ALERT_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_IS_ANOMALY),
    "  |> toFloat()",
    f'  |> group(columns: ["{TAG_HOST}"])',
    f"  |> keep(columns: [{_cols('_time', '_value', TAG_HOST)}])",
    '  |> sort(columns: ["_time"])',
)

NO_DATA_ALERT_QUERY = _flux(
    *_from(_ALERT_BUCKET, ANOMALY_MEASUREMENT),
    _fields(FIELD_ANOMALY_SCORE),
    "  |> group()",
    "  |> aggregateWindow(every: 1m, fn: count, createEmpty: false)",
)


def _query_node(datasource: dict[str, str], seconds: int, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": "A",
        "relativeTimeRange": {"from": seconds, "to": 0},
        "datasourceUid": datasource["uid"],
        "model": {
            "refId": "A",
            "datasource": dict(datasource),
            "intervalMs": 1000,
            "maxDataPoints": 43200,
            **model,
        },
    }


def _rule(
    uid: str,
    title: str,
    query: dict[str, Any],
    reducer: str,
    op: str,
    threshold: float,
    *,
    pending: str,
    no_data: str,
    severity: str,
    summary: str,
    description: str,
    panel: tuple[str, int] | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            query,
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "B",
                    "datasource": dict(_EXPR),
                    "type": "reduce",
                    "expression": "A",
                    "reducer": reducer,
                    "settings": {"mode": "dropNN"},
                },
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "datasource": dict(_EXPR),
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [{"evaluator": {"type": op, "params": [threshold]}}],
                },
            },
        ],
        "noDataState": no_data,
        "execErrState": "Error",
        "for": pending,
        "annotations": {"summary": summary, "description": description},
        "labels": {"severity": severity, "component": DETECTOR_JOB},
        "isPaused": False,
    }
    if panel is not None:
        rule["dashboardUid"], rule["panelId"] = panel
    return rule


def _panel_id(dashboard: dict[str, Any], title: str) -> int:
    return next(int(p["id"]) for p in dashboard["panels"] if p["title"] == title)


def alert_rules() -> dict[str, Any]:
    """Return the alert rules file: anomaly alerts on InfluxDB, detector health on Prometheus."""
    main = main_dashboard()
    score_panel = (MAIN_DASHBOARD_UID, _panel_id(main, "Anomaly score"))
    rate_panel = (MAIN_DASHBOARD_UID, _panel_id(main, "Anomaly rate per host, last hour"))
    flux_rules = [
        _rule(
            "anomaly-critical",
            "CPU anomaly CRITICAL",
            _query_node(_INFLUX, CRITICAL_WINDOW_S, {"query": CRITICAL_ALERT_QUERY}),
            "count",
            "gt",
            0,
            pending="0s",
            no_data="OK",
            severity="critical",
            summary="CRITICAL CPU anomaly on {{ $labels.host }}",
            description="{{ $values.B }} point(s) of {{ $labels.host }} scored CRITICAL (score above 3 "
            "with the default cut points: far outside the forecast band) in the last 5 minutes.",
            panel=score_panel,
        ),
        _rule(
            "anomaly-sustained",
            "Sustained CPU anomalies",
            _query_node(_INFLUX, SUSTAINED_WINDOW_S, {"query": SUSTAINED_ALERT_QUERY}),
            "mean",
            "gt",
            SUSTAINED_RATE,
            pending="5m",
            no_data="OK",
            severity="warning",
            summary="{{ $labels.host }}: more than half of the points anomalous for 15 minutes",
            description="Anomaly rate of {{ $labels.host }} over the last 15 minutes is "
            "{{ humanizePercentage $values.B.Value }} (threshold 50%). A lasting change of load or a stale "
            "model: check the host, then whether the model needs a refit.",
            panel=rate_panel,
        ),
        _rule(
            "anomaly-no-data",
            "Anomaly detector writes no data",
            _query_node(_INFLUX, NO_DATA_WINDOW_S, {"query": NO_DATA_ALERT_QUERY}),
            "sum",
            "lt",
            1,
            pending="1m",
            no_data="Alerting",
            severity="critical",
            summary="No anomaly_detection points written in the last 5 minutes",
            description="The detector wrote nothing to InfluxDB for 5 minutes: it is down, cannot reach "
            "Prometheus, or cannot write (see the Anomaly detector health dashboard and its spool depth).",
            panel=score_panel,
        ),
    ]
    prom_rules = [
        _rule(
            "detector-down",
            "Anomaly detector down",
            _query_node(_PROM, 300, {"expr": DETECTOR_UP_EXPR, "instant": True, "range": False}),
            "last",
            "lt",
            1,
            pending="2m",
            no_data="Alerting",
            severity="critical",
            summary="Anomaly detector {{ $labels.instance }} is down or not scraped",
            description="anomaly_detector_up is below 1, or Prometheus cannot scrape the detector's "
            "/metrics.",
        ),
        _rule(
            "detector-write-failures",
            "Anomaly detector write failures",
            _query_node(_PROM, 600, {"expr": WRITE_FAILURES_EXPR, "instant": True, "range": False}),
            "last",
            "gt",
            0,
            pending="5m",
            no_data="OK",
            severity="warning",
            summary="Writes to {{ $labels.sink }} are failing",
            description="{{ $values.B }} failed write(s) to {{ $labels.sink }} in the last 10 minutes. "
            "Records are spooled to disk and replayed, not lost; check that the sink is up and the token "
            "is valid.",
        ),
        _rule(
            "detector-spool-backlog",
            "Anomaly detector spool backlog",
            _query_node(_PROM, 300, {"expr": SPOOL_DEPTH_EXPR, "instant": True, "range": False}),
            "last",
            "gt",
            0,
            pending="15m",
            no_data="OK",
            severity="warning",
            summary="{{ $values.B }} records waiting in the spool for {{ $labels.sink }}",
            description="The spool for {{ $labels.sink }} has not drained for 15 minutes: the sink is down "
            "or slower than the detector. The spool is bounded (spool.max_bytes): past it the oldest "
            "records are dropped.",
        ),
        _rule(
            "detector-spool-dropping",
            "Anomaly detector dropping records",
            _query_node(_PROM, 900, {"expr": SPOOL_DROPPED_EXPR, "instant": True, "range": False}),
            "last",
            "gt",
            0,
            pending="0s",
            no_data="OK",
            severity="critical",
            summary="{{ $values.B }} records for {{ $labels.sink }} dropped in 15 minutes: data lost",
            description="The spool for {{ $labels.sink }} is full (spool.max_bytes) and its oldest records "
            "are being dropped. Bring the sink back or raise spool.max_bytes.",
        ),
    ]
    group = {"orgId": 1, "folder": ALERT_FOLDER, "interval": "1m"}
    return {
        "apiVersion": 1,
        "groups": [
            {**group, "name": "cpu-anomalies", "rules": flux_rules},
            {**group, "name": "detector-health", "rules": prom_rules},
        ],
    }


# ---------------------------------------------------------------------------------------------------
# Query introspection, for the tests that keep dashboards and the sink in agreement.


@dataclass(frozen=True)
class FluxRefs:
    """Names one Flux query reads: measurements, fields, other columns (tags) and compared tag values."""

    measurements: frozenset[str]
    fields: frozenset[str]
    columns: frozenset[str]
    tag_values: frozenset[tuple[str, str]]


_R_COLUMN = r'\br(?:\.(\w+)|\[\s*"([^"]+)"\s*\])'
_RE_COMPARE = re.compile(_R_COLUMN + r'\s*(==|!=)\s*"([^"]*)"')
_RE_COLUMN = re.compile(_R_COLUMN)
_RE_COLUMN_LIST = re.compile(r"\b(?:columns|rowKey|columnKey)\s*:\s*\[([^\]]*)\]")
_RE_NAMED_COLUMN = re.compile(r'\b(?:valueColumn|tag|column)\s*:\s*"([^"]+)"')
_RE_RENAME = re.compile(r"\brename\(\s*columns\s*:\s*\{([^}]*)\}")
_RE_RENAME_PAIR = re.compile(r'(\w+)\s*:\s*"([^"]+)"')
_RE_WITH = re.compile(r"\bwith\s+(\w+)\s*:")
_RE_SET_KEY = re.compile(r'\bset\(\s*key\s*:\s*"([^"]+)"')
_RE_STRING = re.compile(r'"([^"]*)"')


def flux_references(query: str) -> FluxRefs:
    """Return the measurements, fields, columns and tag values a Flux query refers to.

    Columns are the non-underscore columns the query reads (``r.host``, ``r["host"]``, names in
    ``columns: [...]``, ``tag: "host"``), minus the ones it creates (rename targets, ``with x:``,
    ``set(key: ...)``). Tag values are the ``(column, "value")`` pairs compared with ``==`` or ``!=``.
    """
    measurements: set[str] = set()
    fields: set[str] = set()
    tag_values: set[tuple[str, str]] = set()
    for match in _RE_COMPARE.finditer(query):
        column, value = match.group(1) or match.group(2), match.group(4)
        if column == "_measurement":
            measurements.add(value)
        elif column == "_field":
            fields.add(value)
        elif not column.startswith("_"):
            tag_values.add((column, value))
    read = {m.group(1) or m.group(2) for m in _RE_COLUMN.finditer(query)}
    for listed in _RE_COLUMN_LIST.finditer(query):
        read.update(_RE_STRING.findall(listed.group(1)))
    read.update(_RE_NAMED_COLUMN.findall(query))
    created: set[str] = set(_RE_WITH.findall(query)) | set(_RE_SET_KEY.findall(query))
    for renamed in _RE_RENAME.finditer(query):
        for old, new in _RE_RENAME_PAIR.findall(renamed.group(1)):
            read.add(old)
            created.add(new)
    columns = {name for name in read - created if not name.startswith("_")}
    return FluxRefs(frozenset(measurements), frozenset(fields), frozenset(columns), frozenset(tag_values))


_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
)
_RE_PROMQL_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RE_PROMQL_IDENT = re.compile(r"[A-Za-z_:][\w:]*")


def promql_metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables ($__rate_interval, ${x})
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # label matchers and range selectors
    text = _RE_PROMQL_LABEL_LIST.sub(" ", text)
    names = set()
    for match in _RE_PROMQL_IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # a number's exponent or suffix, e.g. 1e3
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or aggregation
            continue
        if match.group() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def iter_queries(document: Any) -> Iterator[tuple[str, str]]:
    """Yield ``("flux", query)`` and ``("promql", expr)`` for every query in a dashboard or rules file."""
    if isinstance(document, dict):
        datasource = document.get("datasource")
        kind = datasource.get("type") if isinstance(datasource, dict) else None
        if kind == "influxdb" and isinstance(document.get("query"), str):
            yield "flux", document["query"]
        if isinstance(document.get("expr"), str):
            yield "promql", document["expr"]
        for value in document.values():
            yield from iter_queries(value)
    elif isinstance(document, list):
        for item in document:
            yield from iter_queries(item)


# ---------------------------------------------------------------------------------------------------
# Rendering.


class _BlockDumper(yaml.SafeDumper):
    """Write multi-line strings (Flux queries) as ``|`` blocks so the rules file stays readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)

_YAML_HEADER = (
    "# Grafana unified alerting rules (file provisioning, apiVersion 1).\n"
    "# Generated by `python -m core.dashboards` from core/dashboards.py: edit there, not here.\n"
    "# Alerts go to Grafana's default notification policy; add contact points in the UI or in a\n"
    "# sibling file of this directory (contactPoints / policies).\n"
)


def _json_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_files() -> dict[str, str]:
    """Return every generated file: path relative to the repository root -> content."""
    main = _json_text(main_dashboard())
    rules = yaml.dump(alert_rules(), Dumper=_BlockDumper, sort_keys=False, width=110, allow_unicode=True)
    return {
        MAIN_DASHBOARD_PATH: main,
        f"{DASHBOARDS_DIR}/anomaly-detection.json": main,
        f"{DASHBOARDS_DIR}/detector-health.json": _json_text(health_dashboard()),
        ALERT_RULES_PATH: _YAML_HEADER + rules,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files under ``--root`` (or with ``--check`` report those out of date)."""
    parser = argparse.ArgumentParser(prog="python -m core.dashboards", description=main.__doc__)
    parser.add_argument("--root", default=".", help="repository root (default: the current directory)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    root = Path(args.root)
    stale = []
    for relative, text in render_files().items():
        path = root / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(relative)
        if not args.check:
            from core.fsutil import atomic_write_text

            atomic_write_text(path, text)
    verb = "out of date" if args.check else "written"
    for relative in stale:
        print(f"{relative}: {verb}")
    if args.check and stale:
        print("run `python -m core.dashboards` to regenerate", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
