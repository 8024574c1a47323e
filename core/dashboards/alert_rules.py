"""Grafana-managed alert rules (unified alerting, file provisioning format, apiVersion 1)."""

from __future__ import annotations

from typing import Any

from core.dashboards._grafana import (
    _EXPR,
    _INFLUX,
    _PROM,
    ALERT_FOLDER,
    CRITICAL_WINDOW_S,
    DETECTOR_JOB,
    MAIN_DASHBOARD_UID,
    NO_DATA_WINDOW_S,
    SUSTAINED_RATE,
    SUSTAINED_WINDOW_S,
)
from core.dashboards.main_board import main_dashboard
from core.dashboards.queries import (
    CRITICAL_ALERT_QUERY,
    DETECTOR_UP_EXPR,
    NO_DATA_ALERT_QUERY,
    SPOOL_DEPTH_EXPR,
    SPOOL_DROPPED_EXPR,
    SUSTAINED_ALERT_QUERY,
    WRITE_FAILURES_EXPR,
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
