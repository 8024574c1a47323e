"""Encode scored records as InfluxDB line protocol (the schema the dashboards read).

The CPU schema is fixed by the product; every scored record becomes up to three points, timestamps in
milliseconds (``round(ts * 1000)``, written with ``precision=ms``; ``H`` = host, ``S`` = source,
``M`` = the record's metric)::

    cpu_metrics,host=H,metric=cpu,metric_type=actual,source=S cpu_usage=<value> <ts_ms>
    cpu_metrics,host=H,metric=cpu,metric_type=forecasted,source=S cpu_usage=<yhat>,
        yhat_lower=<lower>,yhat_upper=<upper> <ts_ms>                       (one line)
    anomaly_detection,host=H,metric=M,severity=<severity> is_anomaly=<true|false>,
        anomaly_score=<score>,confidence=<confidence>,threshold=<threshold> <ts_ms>   (one line)

Every other metric (a series with a ``metric`` label, see ``core/sources/prometheus.py``) goes to one
measurement, so that one Grafana variable over the ``metric`` tag selects any metric, CPU included::

    metric_values,host=H,metric=M,metric_type=actual,source=S value=<value> <ts_ms>
    metric_values,host=H,metric=M,metric_type=forecasted,source=S value=<yhat>,yhat_lower=<lower>,
        yhat_upper=<upper> <ts_ms>                                          (one line)

A record's metric is its ``metric`` label, absent = ``cpu``; it is looked up once per series id.

Rules: a NaN, infinite or missing field is left out, and a point left with no field is not written;
an empty tag value is left out (line protocol has no empty tag values). Floats are written with
``repr`` (shortest round-trip form, always with a dot or an exponent, so the field stays a float).
Tags are in key order, as InfluxDB prefers.

Escaping follows the InfluxDB line-protocol reference (and influxdb-client's ``Point``): in measurement
names commas and spaces; in tag keys, tag values and field keys commas, equals signs and spaces;
newline, carriage return and tab become ``\\n``, ``\\r``, ``\\t`` (line protocol cannot carry them raw);
in string field values double quotes and backslashes. Only tag escaping is on the hot path, so only
it lives here; the generic encoder the tests use as an oracle is ``tests/support/lineproto_oracle.py``.

VictoriaMetrics stores each field as the metric ``<measurement>_<field>`` (``cpu_metrics_cpu_usage``,
``metric_values_value``, ``anomaly_detection_is_anomaly`` with 1/0) and each tag as a label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from core.config import CPU_METRIC, METRIC_LABEL, metric_of_labels
from core.records import ScoredRecord

if TYPE_CHECKING:
    from core.quality import QualityRow

__all__ = [
    "ANOMALY_FIELDS",
    "ANOMALY_MEASUREMENT",
    "ANOMALY_TAGS",
    "CPU_FIELDS",
    "CPU_MEASUREMENT",
    "CPU_TAGS",
    "FIELD_ANOMALY_SCORE",
    "FIELD_CONFIDENCE",
    "FIELD_CPU_USAGE",
    "FIELD_IS_ANOMALY",
    "FIELD_THRESHOLD",
    "FIELD_YHAT_LOWER",
    "FIELD_VALUE",
    "FIELD_YHAT_UPPER",
    "METRIC_FIELDS",
    "METRIC_MEASUREMENT",
    "METRIC_TAGS",
    "METRIC_TYPE_ACTUAL",
    "METRIC_TYPE_FORECASTED",
    "SCHEMA",
    "TAG_HOST",
    "TAG_METRIC",
    "TAG_METRIC_TYPE",
    "TAG_SEVERITY",
    "TAG_SOURCE",
    "encode_record",
    "encode_records",
    "escape_tag",
    "measurement_of",
]

CPU_MEASUREMENT = "cpu_metrics"
METRIC_MEASUREMENT = "metric_values"
ANOMALY_MEASUREMENT = "anomaly_detection"

TAG_HOST = "host"
TAG_METRIC = METRIC_LABEL
TAG_METRIC_TYPE = "metric_type"
TAG_SOURCE = "source"
TAG_SEVERITY = "severity"

METRIC_TYPE_ACTUAL = "actual"
METRIC_TYPE_FORECASTED = "forecasted"

FIELD_CPU_USAGE = "cpu_usage"
FIELD_VALUE = "value"
FIELD_YHAT_LOWER = "yhat_lower"
FIELD_YHAT_UPPER = "yhat_upper"
FIELD_IS_ANOMALY = "is_anomaly"
FIELD_ANOMALY_SCORE = "anomaly_score"
FIELD_CONFIDENCE = "confidence"
FIELD_THRESHOLD = "threshold"

CPU_TAGS = (TAG_HOST, TAG_METRIC, TAG_METRIC_TYPE, TAG_SOURCE)
CPU_FIELDS = (FIELD_CPU_USAGE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER)
METRIC_TAGS = CPU_TAGS
METRIC_FIELDS = (FIELD_VALUE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER)
ANOMALY_TAGS = (TAG_HOST, TAG_METRIC, TAG_SEVERITY)
ANOMALY_FIELDS = (FIELD_IS_ANOMALY, FIELD_ANOMALY_SCORE, FIELD_CONFIDENCE, FIELD_THRESHOLD)

# measurement -> (tag keys, field keys): everything the sink writes, for dashboard checks.
SCHEMA: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    CPU_MEASUREMENT: (CPU_TAGS, CPU_FIELDS),
    METRIC_MEASUREMENT: (METRIC_TAGS, METRIC_FIELDS),
    ANOMALY_MEASUREMENT: (ANOMALY_TAGS, ANOMALY_FIELDS),
}


def measurement_of(metric: str) -> tuple[str, str]:
    """Return the measurement and the value field the points of ``metric`` are written to."""
    if metric == CPU_METRIC:
        return CPU_MEASUREMENT, FIELD_CPU_USAGE
    return METRIC_MEASUREMENT, FIELD_VALUE


_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPE_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", **_CONTROL})
_SPECIAL_KEY = frozenset(",= \n\r\t")
_INF = math.inf
_NEG_INF = -math.inf

# Hosts, sources and severities repeat on every tick: escape each distinct value once.
_TAG_CACHE: dict[str, str] = {}
_TAG_CACHE_MAX = 100_000
# Series id -> (measurement, value field, ",metric=M"): a series' metric never changes.
_SERIES_CACHE: dict[str, tuple[str, str, str]] = {}


def escape_tag(text: str) -> str:
    """Escape a tag key or tag value (commas, equals signs, spaces, control characters)."""
    cached = _TAG_CACHE.get(text)
    if cached is not None:
        return cached
    escaped = text.translate(_ESCAPE_KEY) if not _SPECIAL_KEY.isdisjoint(text) else text
    if len(_TAG_CACHE) >= _TAG_CACHE_MAX:
        _TAG_CACHE.clear()
    _TAG_CACHE[text] = escaped
    return escaped


def _float(value: object) -> str | None:
    """Return a float field as text, or None when it is missing, NaN or infinite."""
    if type(value) is not float:
        if value is None or isinstance(value, bool):
            return None
        value = float(value)  # type: ignore[arg-type]  # numpy scalars, ints: repr must be a plain float
    if value != value or value == _INF or value == _NEG_INF:
        return None
    return repr(value)


def encode_record(record: ScoredRecord) -> list[str]:
    """Return the line-protocol lines of one scored record (up to three)."""
    out: list[str] = []
    _encode_into(record, out)
    return out


def encode_records(records: Iterable[ScoredRecord]) -> list[str]:
    """Return the line-protocol lines of many scored records, in order."""
    out: list[str] = []
    for record in records:
        _encode_into(record, out)
    return out


# Fixed prefixes of the hot path, built from the exported names.
_ACTUAL = f",{TAG_METRIC_TYPE}={METRIC_TYPE_ACTUAL}"
_FORECASTED = f",{TAG_METRIC_TYPE}={METRIC_TYPE_FORECASTED}"


def _layout(record: ScoredRecord) -> tuple[str, str, str]:
    """Return the record's measurement, value field and escaped ``,metric=M`` tag (cached per series)."""
    layout = _SERIES_CACHE.get(record.series)
    if layout is None:
        metric = metric_of_labels(record.labels)
        measurement, field = measurement_of(metric)
        layout = (measurement, field, f",{TAG_METRIC}={escape_tag(metric)}")
        if len(_SERIES_CACHE) >= _TAG_CACHE_MAX:
            _SERIES_CACHE.clear()
        _SERIES_CACHE[record.series] = layout
    return layout


def _encode_into(record: ScoredRecord, out: list[str]) -> None:
    # Hot path: plain string building (the generic format_line is several times slower).
    ts = f" {round(record.ts * 1000)}"
    host = f",{TAG_HOST}={escape_tag(record.host)}" if record.host else ""
    source = f",{TAG_SOURCE}={escape_tag(record.source)}" if record.source else ""
    measurement, field, metric = _layout(record)

    value = _float(record.value)
    if value is not None:
        out.append(f"{measurement}{host}{metric}{_ACTUAL}{source} {field}={value}{ts}")

    forecast = _join(
        field, _float(record.yhat),
        FIELD_YHAT_LOWER, _float(record.lower),
        FIELD_YHAT_UPPER, _float(record.upper),
    )  # fmt: skip
    if forecast:
        out.append(f"{measurement}{host}{metric}{_FORECASTED}{source} {forecast}{ts}")

    severity = f",{TAG_SEVERITY}={escape_tag(record.severity)}" if record.severity else ""
    decision = _join(
        FIELD_ANOMALY_SCORE, _float(record.score),
        FIELD_CONFIDENCE, _float(record.confidence),
        FIELD_THRESHOLD, _float(record.threshold),
    )  # fmt: skip
    flag = "true" if record.is_anomaly else "false"
    rest = f",{decision}" if decision else ""
    out.append(f"{ANOMALY_MEASUREMENT}{host}{metric}{severity} {FIELD_IS_ANOMALY}={flag}{rest}{ts}")


def _join(k1: str, v1: str | None, k2: str, v2: str | None, k3: str, v3: str | None) -> str:
    """Return ``k1=v1,k2=v2,k3=v3`` without the missing values."""
    if v1 is not None and v2 is not None and v3 is not None:
        return f"{k1}={v1},{k2}={v2},{k3}={v3}"
    return ",".join(f"{k}={v}" for k, v in ((k1, v1), (k2, v2), (k3, v3)) if v is not None)


# -- data_quality: one point per series at the tracker's cadence (core/quality.py) --------------------
#
#     data_quality,host=H,metric=M completeness=<0..1>,staleness_seconds=<s>,invalid_points=<n>i,
#         lateness_seconds=<s>,stale=<true|false> <ts_ms>                   (one line)

QUALITY_MEASUREMENT = "data_quality"
QUALITY_TAG_METRIC = TAG_METRIC
FIELD_COMPLETENESS = "completeness"
FIELD_STALENESS = "staleness_seconds"
FIELD_INVALID_POINTS = "invalid_points"
FIELD_LATENESS = "lateness_seconds"
FIELD_STALE = "stale"
QUALITY_TAGS = (TAG_HOST, QUALITY_TAG_METRIC)
QUALITY_FIELDS = (FIELD_COMPLETENESS, FIELD_STALENESS, FIELD_INVALID_POINTS, FIELD_LATENESS, FIELD_STALE)
SCHEMA = {**SCHEMA, QUALITY_MEASUREMENT: (QUALITY_TAGS, QUALITY_FIELDS)}
__all__ += [
    "FIELD_COMPLETENESS",
    "FIELD_INVALID_POINTS",
    "FIELD_LATENESS",
    "FIELD_STALE",
    "FIELD_STALENESS",
    "QUALITY_FIELDS",
    "QUALITY_MEASUREMENT",
    "QUALITY_TAGS",
    "QUALITY_TAG_METRIC",
    "encode_quality",
]


def encode_quality(rows: Iterable[QualityRow]) -> list[str]:
    """Return the ``data_quality`` lines of quality rows (a NaN field, e.g. no lateness yet, is left out)."""
    out = []
    for row in rows:
        host = f",{TAG_HOST}={escape_tag(row.host)}" if row.host else ""
        metric = f",{QUALITY_TAG_METRIC}={escape_tag(row.metric)}" if row.metric else ""
        fields = [
            f"{name}={text}"
            for name, text in (
                (FIELD_COMPLETENESS, _float(row.completeness)),
                (FIELD_STALENESS, _float(row.staleness_seconds)),
                (FIELD_INVALID_POINTS, f"{int(row.invalid_points)}i"),
                (FIELD_LATENESS, _float(row.lateness_seconds)),
                (FIELD_STALE, "true" if row.stale else "false"),
            )
            if text is not None
        ]
        out.append(f"{QUALITY_MEASUREMENT}{host}{metric} {','.join(fields)} {round(row.ts * 1000)}")
    return out
