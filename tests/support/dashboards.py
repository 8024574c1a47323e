"""What the deployment tests check the dashboards with: the generator, its CLI and query introspection."""

from __future__ import annotations

from core.dashboards import (
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
    alert_rules,
    health_dashboard,
    influxql_dashboard,
    main_dashboard,
    render_files,
)
from scripts.render_dashboards import main
from support.queries import FluxRefs, flux_references, iter_queries, promql_metric_names

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
    "FluxRefs",
    "alert_rules",
    "flux_references",
    "health_dashboard",
    "influxql_dashboard",
    "iter_queries",
    "main",
    "main_dashboard",
    "promql_metric_names",
    "render_files",
]
