"""Grafana's JSON vocabulary: datasource uids, panel and dashboard dict builders (no content)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.scoring import SEVERITIES

# Fixed uids: grafana/provisioning/datasources/datasources.yaml declares the same two.
INFLUX_DATASOURCE_UID = "influxdb-anomaly"
INFLUXQL_DATASOURCE_UID = "influxdb-anomaly-influxql"  # the same database through the v1 API
PROMETHEUS_DATASOURCE_UID = "prometheus-anomaly"
MAIN_DASHBOARD_UID = "cpu-anomaly-detection"
INFLUXQL_DASHBOARD_UID = "cpu-anomaly-detection-influxql"
HEALTH_DASHBOARD_UID = "anomaly-detector-health"

MAIN_DASHBOARD_PATH = "grafana_dashboard.json"
DASHBOARDS_DIR = "grafana/dashboards"
INFLUXQL_DASHBOARD_PATH = f"{DASHBOARDS_DIR}/anomaly-influxql.json"
ALERT_RULES_PATH = "grafana/provisioning/alerting/alert_rules.yaml"
ALERT_FOLDER = "Anomaly detector"
DETECTOR_JOB = "anomaly-detector"  # the job name in deploy/prometheus.yml

# Alert thresholds, in one place (each rule's annotations say the same numbers in words).
SUSTAINED_WINDOW_S = 900
SUSTAINED_RATE = 0.5
NO_DATA_WINDOW_S = 300
CRITICAL_WINDOW_S = 300

_INFLUX = {"type": "influxdb", "uid": INFLUX_DATASOURCE_UID}
_INFLUXQL = {"type": "influxdb", "uid": INFLUXQL_DATASOURCE_UID}
_PROM = {"type": "prometheus", "uid": PROMETHEUS_DATASOURCE_UID}
_EXPR = {"type": "__expr__", "uid": "__expr__"}
_SCHEMA_VERSION = 39
_TAGS = ["anomaly-detector"]
# Anomalous severities (every one but NONE), mildest first.
_SEVERITY_COLORS = dict(zip(SEVERITIES[1:], ("yellow", "orange", "red", "dark-red"), strict=True))


# Panels.


def _grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"h": h, "w": w, "x": x, "y": y}


def _flux_target(ref: str, query: str) -> dict[str, Any]:
    return {"datasource": dict(_INFLUX), "query": query, "refId": ref}


def _influxql_target(ref: str, query: str, alias: str | None = None, table: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": dict(_INFLUXQL),
        "query": query,
        "rawQuery": True,
        "refId": ref,
        "resultFormat": "table" if table else "time_series",
    }
    if alias is not None:
        target["alias"] = alias
    return target


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
