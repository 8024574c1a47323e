"""Every InfluxQL query of the 1.x twin of the main dashboard (InfluxDB 1.x, 2.x/3.x through the v1 API).

The same panels as the Flux board, the same schema (:mod:`core.sinks.lineproto`), Grafana's InfluxQL
macros: ``$timeFilter``, ``$__interval``, ``${host:regex}`` and ``${metric}``. InfluxQL cannot average
a boolean, so a share of anomalous points is two counts divided by a Grafana transformation
(``RATE_TRANSFORMATIONS``); the per-host rate of the Flux board is a per-host count here.
"""

from __future__ import annotations

from typing import Any

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


def _q(name: str) -> str:
    return f'"{name}"'


_METRIC = f"{_q(TAG_METRIC)} = '${{metric}}'"
_HOST = f"{_q(TAG_HOST)} =~ /^${{host:regex}}$/"
_ANOMALY = _q(ANOMALY_MEASUREMENT)
_VALUES = f"{_q(CPU_MEASUREMENT)}, {_q(METRIC_MEASUREMENT)}"
_IS_ANOMALOUS = f"{_q(FIELD_IS_ANOMALY)} = true"


def _where(*conditions: str) -> str:
    return "WHERE " + " AND ".join((*conditions, _METRIC, _HOST, "$timeFilter"))


def _fields_regex(*names: str) -> str:
    return "/^(" + "|".join(names) + ")$/"


ACTUAL = (
    f"SELECT mean({_fields_regex(FIELD_CPU_USAGE, FIELD_VALUE)}) FROM {_VALUES} "
    f"{_where(f'{_q(TAG_METRIC_TYPE)} = {chr(39)}{METRIC_TYPE_ACTUAL}{chr(39)}')} "
    "GROUP BY time($__interval) fill(none)"
)
FORECAST = (
    f"SELECT mean({_fields_regex(FIELD_CPU_USAGE, FIELD_VALUE, FIELD_YHAT_LOWER, FIELD_YHAT_UPPER)}) "
    f"FROM {_VALUES} {_where(f'{_q(TAG_METRIC_TYPE)} = {chr(39)}{METRIC_TYPE_FORECASTED}{chr(39)}')} "
    "GROUP BY time($__interval) fill(none)"
)
# mean(/regex/) names its columns mean_<field>: the band's names, as on the Flux board.
FORECAST_TRANSFORMATIONS: list[dict[str, Any]] = [
    {
        "id": "renameByRegex",
        "options": {"regex": f"^mean_({FIELD_CPU_USAGE}|{FIELD_VALUE})$", "renamePattern": "yhat"},
    },
    {
        "id": "renameByRegex",
        "options": {"regex": f"^mean_({FIELD_YHAT_LOWER}|{FIELD_YHAT_UPPER})$", "renamePattern": "$1"},
    },
]


def _last_per_host(field: str) -> str:
    return f"SELECT last({_q(field)}) AS {_q(field)} FROM {_ANOMALY} {_where()} GROUP BY {_q(TAG_HOST)}"


STATUS = _last_per_host(FIELD_IS_ANOMALY)
LATEST_SCORE = _last_per_host(FIELD_ANOMALY_SCORE)
CONFIDENCE = _last_per_host(FIELD_CONFIDENCE)
ANOMALY_COUNT = f'SELECT count({_q(FIELD_IS_ANOMALY)}) AS "anomalies" FROM {_ANOMALY} {_where(_IS_ANOMALOUS)}'
HOST_ANOMALY_COUNT = (
    f"SELECT count({_q(FIELD_IS_ANOMALY)}) AS {_q(FIELD_IS_ANOMALY)} FROM {_ANOMALY} "
    f"{_where(_IS_ANOMALOUS)} GROUP BY {_q(TAG_HOST)}"
)
ANOMALOUS = f'SELECT count({_q(FIELD_IS_ANOMALY)}) AS "anomalous" FROM {_ANOMALY} {_where(_IS_ANOMALOUS)}'
SCORED = f'SELECT count({_q(FIELD_IS_ANOMALY)}) AS "scored" FROM {_ANOMALY} {_where()}'
RATE_TRANSFORMATIONS: list[dict[str, Any]] = [
    {"id": "merge", "options": {}},
    {
        "id": "calculateField",
        "options": {
            "mode": "binary",
            "binary": {"left": "anomalous", "operator": "/", "right": "scored"},
            "alias": "anomaly rate",
            "replaceFields": True,
        },
    },
]
SCORE = (
    f"SELECT max({_q(FIELD_ANOMALY_SCORE)}) FROM {_ANOMALY} {_where()} "
    f"GROUP BY time($__interval), {_q(TAG_HOST)} fill(none)"
)
SEVERITY_COUNT = (
    f"SELECT count({_q(FIELD_IS_ANOMALY)}) FROM {_ANOMALY} "
    f"{_where(_IS_ANOMALOUS, f'{_q(TAG_SEVERITY)} != {chr(39)}NONE{chr(39)}')} "
    f"GROUP BY time($__interval), {_q(TAG_SEVERITY)} fill(none)"
)
_RECENT = (TAG_HOST, TAG_SEVERITY, FIELD_ANOMALY_SCORE, FIELD_CONFIDENCE, FIELD_THRESHOLD)
RECENT_ANOMALIES = (
    f"SELECT {', '.join(_q(c) for c in _RECENT)} FROM {_ANOMALY} {_where(_IS_ANOMALOUS)} "
    "ORDER BY time DESC LIMIT 200"
)
_QUALITY = (FIELD_COMPLETENESS, FIELD_STALENESS, FIELD_INVALID_POINTS, FIELD_LATENESS, FIELD_STALE)
QUALITY_TABLE = (
    "SELECT "
    + ", ".join(f"last({_q(f)}) AS {_q(f)}" for f in _QUALITY)
    + f" FROM {_q(QUALITY_MEASUREMENT)} {_where()} GROUP BY {_q(TAG_HOST)}"
)
METRIC_VARIABLE = f"SHOW TAG VALUES FROM {_ANOMALY} WITH KEY = {_q(TAG_METRIC)}"
HOST_VARIABLE = f"SHOW TAG VALUES FROM {_ANOMALY} WITH KEY = {_q(TAG_HOST)} WHERE {_METRIC}"
