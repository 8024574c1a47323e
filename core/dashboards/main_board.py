"""The main dashboard: CPU usage against its forecast band, anomaly scores, recent anomalies (Flux)."""

from __future__ import annotations

from typing import Any

from core.dashboards._grafana import (
    _INFLUX,
    _SEVERITY_COLORS,
    MAIN_DASHBOARD_UID,
    SUSTAINED_RATE,
    _dashboard,
    _flux_target,
    _grid,
    _override,
    _panel,
    _stat_options,
    _thresholds,
    _timeseries_custom,
    _ts_options,
)
from core.dashboards.queries import (
    ACTUAL_QUERY,
    ANOMALY_RATE_QUERY,
    BUCKET_VARIABLE_QUERY,
    FORECAST_QUERY,
    HOST_VARIABLE_QUERY,
    LATEST_SCORE_QUERY,
    RECENT_ANOMALIES_QUERY,
    SCORE_QUERY,
    SEVERITY_COUNT_QUERY,
)
from core.sinks.lineproto import (
    FIELD_ANOMALY_SCORE,
    FIELD_CONFIDENCE,
    FIELD_THRESHOLD,
    FIELD_YHAT_LOWER,
    FIELD_YHAT_UPPER,
    TAG_SEVERITY,
)


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
