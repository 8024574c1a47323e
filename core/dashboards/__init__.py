"""Generate the Grafana dashboards and alert rules from one definition: ``python -m core.dashboards``.

    main_board.py    ──> grafana_dashboard.json                          main dashboard (InfluxDB 2.x, Flux)
                     ──> grafana/dashboards/anomaly-detection.json       the same file, provisioned
                     ──> grafana/dashboards/anomaly-influxql.json        its InfluxQL twin (InfluxDB 1.x)
    health_board.py  ──> grafana/dashboards/detector-health.json         the daemon's own metrics (Prometheus)
    alert_rules.py   ──> grafana/provisioning/alerting/alert_rules.yaml  Grafana-managed alert rules
    queries.py           every Flux and PromQL query
    influxql.py          every InfluxQL query of the twin (the same panels, the same schema)
    _grafana.py          datasource uids, file paths, panel and dashboard dict builders
    render.py            render_files(): path -> text of every generated file

The generated files are committed and a test fails when they differ from what this package renders:
edit the definition here and re-run ``python -m core.dashboards`` (the CLI is
``scripts/render_dashboards.py``), never the JSON. Every query names measurements, tags and fields
through the constants of :mod:`core.sinks.lineproto` (the schema the sink writes); the tests pull the
names back out of each query (``tests/support/queries.py``) and check them against the sink.
"""

from __future__ import annotations

from core.dashboards._grafana import (
    ALERT_RULES_PATH,
    DETECTOR_JOB,
    HEALTH_DASHBOARD_UID,
    INFLUX_DATASOURCE_UID,
    INFLUXQL_DASHBOARD_PATH,
    INFLUXQL_DASHBOARD_UID,
    INFLUXQL_DATASOURCE_UID,
    MAIN_DASHBOARD_PATH,
    MAIN_DASHBOARD_UID,
    PROMETHEUS_DATASOURCE_UID,
)
from core.dashboards.alert_rules import alert_rules
from core.dashboards.health_board import health_dashboard
from core.dashboards.main_board import influxql_dashboard, main_dashboard
from core.dashboards.render import render_files

__all__ = [
    "ALERT_RULES_PATH",
    "DETECTOR_JOB",
    "HEALTH_DASHBOARD_UID",
    "INFLUX_DATASOURCE_UID",
    "INFLUXQL_DASHBOARD_PATH",
    "INFLUXQL_DASHBOARD_UID",
    "INFLUXQL_DATASOURCE_UID",
    "MAIN_DASHBOARD_PATH",
    "MAIN_DASHBOARD_UID",
    "PROMETHEUS_DATASOURCE_UID",
    "alert_rules",
    "health_dashboard",
    "influxql_dashboard",
    "main_dashboard",
    "render_files",
]
