"""The main dashboard, one panel list in two query languages: Flux (InfluxDB 2.x) and InfluxQL (1.x).

Any metric: the ``metric`` variable (the tag every point carries) selects it; the band reads both
value measurements (``cpu_metrics``/``cpu_usage`` for CPU, ``metric_values``/``value`` otherwise).
Each panel names its Flux query (``queries.py``) and its InfluxQL twin (``influxql.py``); a panel that
InfluxQL cannot compute in one query says how it differs there (two counts and a transformation).
"""

from __future__ import annotations

from typing import Any

from core.dashboards import influxql as iq
from core.dashboards._grafana import (
    _SEVERITY_COLORS,
    INFLUXQL_DASHBOARD_UID,
    MAIN_DASHBOARD_UID,
    SUSTAINED_RATE,
    _dashboard,
    _flux_target,
    _grid,
    _influxql_target,
    _override,
    _panel,
    _stat_options,
    _thresholds,
    _timeseries_custom,
    _ts_options,
)
from core.dashboards.main_parts import SCORE_STEPS, STATUS_MAPPINGS, Lang, table_panels, variables
from core.dashboards.queries import (
    ANOMALY_COUNT_QUERY,
    CONFIDENCE_QUERY,
    FLEET_RATE_QUERY,
    METRIC_ACTUAL_QUERY,
    METRIC_FORECAST_QUERY,
    METRIC_LATEST_SCORE_QUERY,
    METRIC_RATE_QUERY,
    METRIC_SCORE_QUERY,
    METRIC_SEVERITY_COUNT_QUERY,
    STATUS_QUERY,
)
from core.sinks.lineproto import (
    FIELD_YHAT_LOWER,
    FIELD_YHAT_UPPER,
)

_HOST_NAME = "${__field.labels.host}"
_BAND = "#5794F2"


def _gauge_options() -> dict[str, Any]:
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
        "orientation": "auto",
    }


def _status_panels(lang: Lang) -> list[dict[str, Any]]:
    flux = lang == "flux"
    rate_targets = (
        [_flux_target("A", FLEET_RATE_QUERY)]
        if flux
        else [_influxql_target("A", iq.ANOMALOUS, "anomalous"), _influxql_target("B", iq.SCORED, "scored")]
    )
    return [
        _panel(
            "stat",
            "Current status per host",
            "The latest decision of each host for the selected metric: ANOMALY while its newest "
            "point is anomalous.",
            _grid(0, 0, 6, 5),
            [_flux_target("A", STATUS_QUERY) if flux else _influxql_target("A", iq.STATUS, "$tag_host")],
            defaults={
                "displayName": _HOST_NAME,
                "mappings": STATUS_MAPPINGS,
                "color": {"mode": "thresholds"},
            },
            options=_stat_options(),
        ),
        _panel(
            "stat",
            "Anomalies, last hour",
            "Anomalous points of the selected metric and hosts in the last hour.",
            _grid(6, 0, 6, 5),
            [_flux_target("A", ANOMALY_COUNT_QUERY) if flux else _influxql_target("A", iq.ANOMALY_COUNT)],
            defaults={
                "unit": "short",
                "decimals": 0,
                "noValue": "0",
                "thresholds": _thresholds((None, "green"), (1, "orange"), (10, "red")),
                "color": {"mode": "thresholds"},
            },
            options=_stat_options(),
            timeFrom="1h",
        ),
        _panel(
            "gauge",
            "Latest confidence",
            "Confidence of each host's latest decision: 0 on the threshold, towards 1 far from it.",
            _grid(12, 0, 6, 5),
            [
                _flux_target("A", CONFIDENCE_QUERY)
                if flux
                else _influxql_target("A", iq.CONFIDENCE, "$tag_host")
            ],
            defaults={
                "displayName": _HOST_NAME,
                "unit": "percentunit",
                "min": 0,
                "max": 1,
                "thresholds": _thresholds((None, "orange"), (0.5, "green")),
                "color": {"mode": "thresholds"},
            },
            options=_gauge_options(),
        ),
        _panel(
            "gauge",
            "Anomaly rate, last 24 h",
            "Share of the scored points of the selected metric and hosts flagged anomalous in the "
            "last 24 hours.",
            _grid(18, 0, 6, 5),
            rate_targets,
            defaults={
                "unit": "percentunit",
                "decimals": 1,
                "min": 0,
                "max": 1,
                "thresholds": _thresholds((None, "green"), (0.05, "orange"), (SUSTAINED_RATE, "red")),
                "color": {"mode": "thresholds"},
            },
            options=_gauge_options(),
            timeFrom="24h",
            **({} if flux else {"transformations": iq.RATE_TRANSFORMATIONS}),
        ),
    ]


def _score_panels(lang: Lang) -> list[dict[str, Any]]:
    flux = lang == "flux"
    per_host_rate = _panel(
        "stat",
        "Anomaly rate per host, last hour",
        (
            "Share of scored points flagged anomalous in the last hour (is_anomaly), per host."
            if flux
            else "Anomalous points per host in the last hour (InfluxQL cannot average a boolean)."
        ),
        _grid(0, 5, 12, 5),
        [
            _flux_target("A", METRIC_RATE_QUERY)
            if flux
            else _influxql_target("A", iq.HOST_ANOMALY_COUNT, "$tag_host")
        ],
        defaults={
            "displayName": _HOST_NAME,
            **(
                {"unit": "percentunit", "decimals": 1, "min": 0, "max": 1}
                if flux
                else {"unit": "short", "decimals": 0}
            ),
            "thresholds": _thresholds((None, "green"), (0.05, "orange"), (SUSTAINED_RATE, "red"))
            if flux
            else _thresholds((None, "green"), (1, "orange"), (10, "red")),
            "color": {"mode": "thresholds"},
        },
        options=_stat_options(),
        timeFrom="1h",
    )
    latest = _panel(
        "stat",
        "Latest anomaly score per host",
        "The most recent anomaly score of each host: 1.0 is the band edge, above 1 is anomalous.",
        _grid(12, 5, 12, 5),
        [
            _flux_target("A", METRIC_LATEST_SCORE_QUERY)
            if flux
            else _influxql_target("A", iq.LATEST_SCORE, "$tag_host")
        ],
        defaults={
            "displayName": _HOST_NAME,
            "unit": "none",
            "decimals": 2,
            "thresholds": SCORE_STEPS,
            "color": {"mode": "thresholds"},
        },
        options=_stat_options(),
    )
    band_targets = (
        [_flux_target("A", METRIC_ACTUAL_QUERY), _flux_target("B", METRIC_FORECAST_QUERY)]
        if flux
        else [_influxql_target("A", iq.ACTUAL, "actual"), _influxql_target("B", iq.FORECAST, "$col")]
    )
    band = _panel(
        "timeseries",
        "$metric vs forecast: $host",
        "The selected metric's values against the model's forecast (yhat) and its band (yhat_lower "
        "to yhat_upper, shaded). Points outside the band score above 1.0.",
        _grid(0, 10, 12, 9),
        band_targets,
        defaults={"decimals": 2, "color": {"mode": "palette-classic"}, "custom": _timeseries_custom()},
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
                    "color": {"fixedColor": _BAND, "mode": "fixed"},
                    "custom.lineStyle": {"dash": [10, 10], "fill": "dash"},
                },
            ),
            _override(
                "byName",
                FIELD_YHAT_UPPER,
                **{
                    "color": {"fixedColor": _BAND, "mode": "fixed"},
                    "custom.fillBelowTo": FIELD_YHAT_LOWER,
                    "custom.fillOpacity": 20,
                    "custom.lineWidth": 0,
                },
            ),
            _override(
                "byName",
                FIELD_YHAT_LOWER,
                **{"color": {"fixedColor": _BAND, "mode": "fixed"}, "custom.lineWidth": 0},
            ),
        ],
        options=_ts_options(),
        repeat="host",
        repeatDirection="h",
        maxPerRow=2,
        **({} if flux else {"transformations": iq.FORECAST_TRANSFORMATIONS}),
    )
    score = _panel(
        "timeseries",
        "Anomaly score",
        "Highest anomaly score per host and interval. The red line at 1.0 is the band edge: "
        "above it a point is an anomaly (LOW above 1, MEDIUM above 1.5, HIGH above 2, CRITICAL "
        "above 3 with the default cut points).",
        _grid(0, 19, 12, 8),
        [_flux_target("A", METRIC_SCORE_QUERY) if flux else _influxql_target("A", iq.SCORE, "$tag_host")],
        defaults={
            "displayName": _HOST_NAME if flux else "",
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
    )
    severity = _panel(
        "timeseries",
        "Anomalies by severity",
        "Number of anomalous points per interval, stacked by severity.",
        _grid(12, 19, 12, 8),
        [
            _flux_target("A", METRIC_SEVERITY_COUNT_QUERY)
            if flux
            else _influxql_target("A", iq.SEVERITY_COUNT, "$tag_severity")
        ],
        defaults={
            "displayName": "${__field.labels.severity}" if flux else "",
            "unit": "short",
            "decimals": 0,
            "min": 0,
            "color": {"mode": "palette-classic"},
            "custom": _timeseries_custom(
                drawStyle="bars", fillOpacity=80, stacking={"group": "A", "mode": "normal"}
            ),
        },
        overrides=[
            _override("byName", name, **{"color": {"fixedColor": color, "mode": "fixed"}})
            for name, color in _SEVERITY_COLORS.items()
        ],
        options=_ts_options(("sum",)),
    )
    return [per_host_rate, latest, band, score, severity]


def _panels(lang: Lang) -> list[dict[str, Any]]:
    return [*_status_panels(lang), *_score_panels(lang), *table_panels(lang)]


def main_dashboard() -> dict[str, Any]:
    """Return the main dashboard: any metric against its band, status, scores, data quality (Flux)."""
    return _dashboard(
        MAIN_DASHBOARD_UID,
        "Anomaly detection",
        "Every configured metric scored against a forecast band; written by `python main.py --mode "
        "monitor`. Generated by `python -m core.dashboards`: do not edit by hand.",
        _panels("flux"),
        variables("flux"),
    )


def influxql_dashboard() -> dict[str, Any]:
    """Return the InfluxQL twin of the main dashboard (InfluxDB 1.x, or 2.x/3.x through the v1 API)."""
    return _dashboard(
        INFLUXQL_DASHBOARD_UID,
        "Anomaly detection (InfluxQL)",
        "The main dashboard for InfluxDB 1.x (and 2.x/3.x through their v1 API), the same panels in "
        "InfluxQL. Generated by `python -m core.dashboards`: do not edit by hand.",
        _panels("influxql"),
        variables("influxql"),
    )
