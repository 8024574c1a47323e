"""Every query the boards and rules run: Flux over the sink's schema, PromQL over the daemon's /metrics.

Measurements, tags and fields are named through :mod:`core.sinks.lineproto` (the schema the sink
writes), so a test can check every query against what is written.
"""

from __future__ import annotations

from core.dashboards._grafana import (
    DETECTOR_JOB,
)
from core.sinks.lineproto import (
    ANOMALY_MEASUREMENT,
    CPU_MEASUREMENT,
    FIELD_ANOMALY_SCORE,
    FIELD_COMPLETENESS,
    FIELD_CONFIDENCE,
    FIELD_CPU_USAGE,
    FIELD_INVALID_POINTS,
    FIELD_IS_ANOMALY,
    FIELD_LATENESS,
    FIELD_STALE,
    FIELD_STALENESS,
    FIELD_THRESHOLD,
    FIELD_VALUE,
    FIELD_YHAT_LOWER,
    FIELD_YHAT_UPPER,
    METRIC_MEASUREMENT,
    METRIC_TYPE_ACTUAL,
    METRIC_TYPE_FORECASTED,
    QUALITY_MEASUREMENT,
    TAG_HOST,
    TAG_METRIC,
    TAG_METRIC_TYPE,
    TAG_SEVERITY,
)

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


_TABLE_COLUMNS = ("_time", TAG_HOST, TAG_SEVERITY, FIELD_ANOMALY_SCORE, FIELD_CONFIDENCE, FIELD_THRESHOLD)

BUCKET_VARIABLE_QUERY = _flux(
    "buckets()",
    "  |> filter(fn: (r) => r.name !~ /^_/)",
    '  |> rename(columns: {name: "_value"})',
    '  |> keep(columns: ["_value"])',
)

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


# Issue 15: any metric (the metric tag over both value measurements), status, data quality.

_METRIC_FILTER = f'  |> filter(fn: (r) => r.{TAG_METRIC} == "${{metric}}")'
_VALUES = (CPU_MEASUREMENT, METRIC_MEASUREMENT)


def _from_values(bucket: str) -> list[str]:
    test = " or ".join(f'r._measurement == "{m}"' for m in _VALUES)
    return [
        f"from(bucket: {bucket})",
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
        f"  |> filter(fn: (r) => {test})",
    ]


def _anomaly(*lines: str) -> str:
    """A dashboard query on anomaly_detection for the selected metric and hosts."""
    return _flux(*_from(_DASH_BUCKET, ANOMALY_MEASUREMENT), _METRIC_FILTER, _HOST_FILTER, *lines)


METRIC_ACTUAL_QUERY = _flux(
    *_from_values(_DASH_BUCKET),
    _METRIC_FILTER,
    _tag(TAG_METRIC_TYPE, METRIC_TYPE_ACTUAL),
    _fields(FIELD_CPU_USAGE, FIELD_VALUE),
    _HOST_FILTER,
    "  |> group()",
    "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
    '  |> keep(columns: ["_time", "_value"])',
    '  |> rename(columns: {_value: "actual"})',
)

METRIC_FORECAST_QUERY = _flux(
    *_from_values(_DASH_BUCKET),
    _METRIC_FILTER,
    _tag(TAG_METRIC_TYPE, METRIC_TYPE_FORECASTED),
    _fields(FIELD_CPU_USAGE, FIELD_VALUE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER),
    _HOST_FILTER,
    # CPU's expectation is cpu_usage, every other metric's is value: one name for both.
    f'  |> map(fn: (r) => ({{r with _field: if r._field == "{FIELD_VALUE}" then "{FIELD_CPU_USAGE}" '
    "else r._field}))",
    '  |> group(columns: ["_field"])',
    "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
    "  |> group()",
    '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
    f"  |> keep(columns: [{_cols('_time', FIELD_CPU_USAGE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER)}])",
    f'  |> rename(columns: {{{FIELD_CPU_USAGE}: "yhat"}})',
)


def _latest_per_host(field: str) -> str:
    # One table per host and severity: the last of each, then the latest of those per host.
    return _anomaly(
        _fields(field),
        "  |> last()",
        f'  |> group(columns: ["{TAG_HOST}"])',
        '  |> sort(columns: ["_time"])',
        "  |> last()",
    )


STATUS_QUERY = _latest_per_host(FIELD_IS_ANOMALY)
METRIC_LATEST_SCORE_QUERY = _latest_per_host(FIELD_ANOMALY_SCORE)
CONFIDENCE_QUERY = _latest_per_host(FIELD_CONFIDENCE)

ANOMALY_COUNT_QUERY = _anomaly(
    _fields(FIELD_IS_ANOMALY),
    "  |> filter(fn: (r) => r._value == true)",
    "  |> group()",
    "  |> count()",
)

FLEET_RATE_QUERY = _anomaly(_fields(FIELD_IS_ANOMALY), "  |> toFloat()", "  |> group()", "  |> mean()")

METRIC_RATE_QUERY = _anomaly(
    _fields(FIELD_IS_ANOMALY), "  |> toFloat()", f'  |> group(columns: ["{TAG_HOST}"])', "  |> mean()"
)

METRIC_SCORE_QUERY = _anomaly(
    _fields(FIELD_ANOMALY_SCORE),
    f'  |> group(columns: ["{TAG_HOST}"])',
    "  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)",
    f"  |> keep(columns: [{_cols('_time', '_value', TAG_HOST)}])",
)

METRIC_SEVERITY_COUNT_QUERY = _anomaly(
    _fields(FIELD_IS_ANOMALY),
    _tag(TAG_SEVERITY, "NONE", "!="),
    "  |> filter(fn: (r) => r._value == true)",
    f'  |> group(columns: ["{TAG_SEVERITY}"])',
    "  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: true)",
    f"  |> keep(columns: [{_cols('_time', '_value', TAG_SEVERITY)}])",
)

METRIC_RECENT_ANOMALIES_QUERY = _anomaly(
    _tag(TAG_SEVERITY, "NONE", "!="),
    _fields(FIELD_IS_ANOMALY, FIELD_ANOMALY_SCORE, FIELD_CONFIDENCE, FIELD_THRESHOLD),
    '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
    f"  |> filter(fn: (r) => r.{FIELD_IS_ANOMALY} == true)",
    "  |> group()",
    f"  |> keep(columns: [{_cols(*_TABLE_COLUMNS)}])",
    '  |> sort(columns: ["_time"], desc: true)',
    "  |> limit(n: 200)",
)

QUALITY_COLUMNS = (FIELD_COMPLETENESS, FIELD_STALENESS, FIELD_INVALID_POINTS, FIELD_LATENESS, FIELD_STALE)
QUALITY_TABLE_QUERY = _flux(
    *_from(_DASH_BUCKET, QUALITY_MEASUREMENT),
    _METRIC_FILTER,
    _HOST_FILTER,
    _fields(*QUALITY_COLUMNS),
    "  |> last()",
    f'  |> pivot(rowKey: ["_time", "{TAG_HOST}"], columnKey: ["_field"], valueColumn: "_value")',
    "  |> group()",
    f"  |> keep(columns: [{_cols('_time', TAG_HOST, *QUALITY_COLUMNS)}])",
    f'  |> sort(columns: ["{FIELD_STALENESS}"], desc: true)',
)

METRIC_VARIABLE_QUERY = _flux(
    'import "influxdata/influxdb/schema"',
    "",
    "schema.tagValues(",
    f"  bucket: {_DASH_BUCKET},",
    f'  tag: "{TAG_METRIC}",',
    f'  predicate: (r) => r._measurement == "{ANOMALY_MEASUREMENT}",',
    "  start: -30d,",
    ")",
)

METRIC_HOST_VARIABLE_QUERY = _flux(
    'import "influxdata/influxdb/schema"',
    "",
    "schema.tagValues(",
    f"  bucket: {_DASH_BUCKET},",
    f'  tag: "{TAG_HOST}",',
    f'  predicate: (r) => r._measurement == "{ANOMALY_MEASUREMENT}" and r.{TAG_METRIC} == "${{metric}}",',
    "  start: -30d,",
    ")",
)
