"""The main dashboard's tables (data quality, recent anomalies) and variables, in both languages."""

from __future__ import annotations

from typing import Any, Literal

from core.dashboards import influxql as iq
from core.dashboards._grafana import (
    _INFLUX,
    _INFLUXQL,
    _SEVERITY_COLORS,
    _flux_target,
    _grid,
    _influxql_target,
    _override,
    _panel,
)
from core.dashboards.queries import (
    BUCKET_VARIABLE_QUERY,
    METRIC_HOST_VARIABLE_QUERY,
    METRIC_RECENT_ANOMALIES_QUERY,
    METRIC_VARIABLE_QUERY,
    QUALITY_TABLE_QUERY,
)
from core.sinks.lineproto import (
    FIELD_ANOMALY_SCORE,
    FIELD_COMPLETENESS,
    FIELD_CONFIDENCE,
    FIELD_LATENESS,
    FIELD_STALE,
    FIELD_STALENESS,
    FIELD_THRESHOLD,
    TAG_SEVERITY,
)

Lang = Literal["flux", "influxql"]
SCORE_STEPS = {
    "mode": "absolute",
    "steps": [
        {"color": "green", "value": None},
        {"color": "yellow", "value": 1.0},
        {"color": "orange", "value": 2.0},
        {"color": "red", "value": 3.0},
    ],
}
STATUS_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "false": {"color": "green", "index": 0, "text": "normal"},
            "true": {"color": "red", "index": 1, "text": "ANOMALY"},
            "0": {"color": "green", "index": 2, "text": "normal"},
            "1": {"color": "red", "index": 3, "text": "ANOMALY"},
        },
    }
]


def _table_options(sort_by: str) -> dict[str, Any]:
    return {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
        "sortBy": [{"desc": True, "displayName": sort_by}],
    }


def table_panels(lang: Lang) -> list[dict[str, Any]]:
    flux = lang == "flux"
    table = {"custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True}}
    quality = _panel(
        "table",
        "Data quality per series",
        "The latest data_quality row of each host of the selected metric: completeness (share of the "
        "window's expected points that arrived), staleness and lateness in seconds, invalid points "
        "(NaN, inf, outside the physical range) since the row before, and stale (no point for 1.5 "
        "intervals: stale, not zero). Worst first.",
        _grid(0, 27, 24, 7),
        [
            _flux_target("A", QUALITY_TABLE_QUERY)
            if flux
            else _influxql_target("A", iq.QUALITY_TABLE, table=True)
        ],
        defaults=table,
        overrides=[
            _override("byName", "_time", displayName="time"),
            _override("byName", FIELD_COMPLETENESS, unit="percentunit", decimals=1),
            _override("byName", FIELD_STALENESS, unit="s", decimals=1),
            _override("byName", FIELD_LATENESS, unit="s", decimals=2),
            _override(
                "byName",
                FIELD_STALE,
                **{"custom.cellOptions": {"type": "color-background"}, "mappings": STATUS_MAPPINGS},
            ),
        ],
        options=_table_options(FIELD_STALENESS),
    )
    severity_colors = {
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
    }
    recent = _panel(
        "table",
        "Recent anomalies",
        "The latest 200 anomalous points of the selected metric in the time range, newest first.",
        _grid(0, 34, 24, 10),
        [
            _flux_target("A", METRIC_RECENT_ANOMALIES_QUERY)
            if flux
            else _influxql_target("A", iq.RECENT_ANOMALIES, table=True)
        ],
        defaults=table,
        overrides=[
            _override("byName", "_time", displayName="time"),
            _override("byName", "Time", displayName="time"),
            _override("byName", TAG_SEVERITY, **severity_colors),
            _override(
                "byName",
                FIELD_ANOMALY_SCORE,
                **{"decimals": 2, "thresholds": SCORE_STEPS, "custom.cellOptions": {"type": "color-text"}},
            ),
            _override("byName", FIELD_CONFIDENCE, unit="percentunit", decimals=0),
            _override("byName", FIELD_THRESHOLD, decimals=2),
        ],
        options=_table_options("time"),
    )
    return [quality, recent]


def _variable(
    datasource: dict[str, str], name: str, label: str, query: str, description: str
) -> dict[str, Any]:
    return {
        "datasource": dict(datasource),
        "hide": 0,
        "skipUrlSync": False,
        "type": "query",
        "current": {},
        "definition": query,
        "description": description,
        "includeAll": False,
        "label": label,
        "multi": False,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 1,
        "regex": "",
        "sort": 1,
    }


def variables(lang: Lang) -> list[dict[str, Any]]:
    flux = lang == "flux"
    source = _INFLUX if flux else _INFLUXQL
    host_query = METRIC_HOST_VARIABLE_QUERY if flux else iq.HOST_VARIABLE
    bucket = _variable(
        _INFLUX,
        "bucket",
        "Bucket",
        BUCKET_VARIABLE_QUERY,
        "InfluxDB bucket the detector writes to (INFLUXDB_BUCKET).",
    )
    metric = _variable(
        source,
        "metric",
        "Metric",
        METRIC_VARIABLE_QUERY if flux else iq.METRIC_VARIABLE,
        "The metric (its 'metric' tag, from the metrics: list of the config; cpu by default).",
    )
    host = {
        **_variable(source, "host", "Host", host_query, "Hosts of the selected metric."),
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "includeAll": True,
        "multi": True,
        "refresh": 2,
    }
    return [bucket, metric, host] if flux else [metric, host]
