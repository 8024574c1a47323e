"""Query introspection, for the tests that keep dashboards and the sink in agreement (test-only)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Query introspection, for the tests that keep dashboards and the sink in agreement.


@dataclass(frozen=True)
class FluxRefs:
    """Names one Flux query reads: measurements, fields, other columns (tags) and compared tag values."""

    measurements: frozenset[str]
    fields: frozenset[str]
    columns: frozenset[str]
    tag_values: frozenset[tuple[str, str]]


_R_COLUMN = r'\br(?:\.(\w+)|\[\s*"([^"]+)"\s*\])'
_RE_COMPARE = re.compile(_R_COLUMN + r'\s*(==|!=)\s*"([^"]*)"')
_RE_COLUMN = re.compile(_R_COLUMN)
_RE_COLUMN_LIST = re.compile(r"\b(?:columns|rowKey|columnKey)\s*:\s*\[([^\]]*)\]")
_RE_NAMED_COLUMN = re.compile(r'\b(?:valueColumn|tag|column)\s*:\s*"([^"]+)"')
_RE_RENAME = re.compile(r"\brename\(\s*columns\s*:\s*\{([^}]*)\}")
_RE_RENAME_PAIR = re.compile(r'(\w+)\s*:\s*"([^"]+)"')
_RE_WITH = re.compile(r"\bwith\s+(\w+)\s*:")
_RE_SET_KEY = re.compile(r'\bset\(\s*key\s*:\s*"([^"]+)"')
_RE_STRING = re.compile(r'"([^"]*)"')


def flux_references(query: str) -> FluxRefs:
    """Return the measurements, fields, columns and tag values a Flux query refers to.

    Columns are the non-underscore columns the query reads (``r.host``, ``r["host"]``, names in
    ``columns: [...]``, ``tag: "host"``), minus the ones it creates (rename targets, ``with x:``,
    ``set(key: ...)``). Tag values are the ``(column, "value")`` pairs compared with ``==`` or ``!=``.
    """
    measurements: set[str] = set()
    fields: set[str] = set()
    tag_values: set[tuple[str, str]] = set()
    for match in _RE_COMPARE.finditer(query):
        column, value = match.group(1) or match.group(2), match.group(4)
        if column == "_measurement":
            measurements.add(value)
        elif column == "_field":
            fields.add(value)
        elif not column.startswith("_"):
            tag_values.add((column, value))
    read = {m.group(1) or m.group(2) for m in _RE_COLUMN.finditer(query)}
    for listed in _RE_COLUMN_LIST.finditer(query):
        read.update(_RE_STRING.findall(listed.group(1)))
    read.update(_RE_NAMED_COLUMN.findall(query))
    created: set[str] = set(_RE_WITH.findall(query)) | set(_RE_SET_KEY.findall(query))
    for renamed in _RE_RENAME.finditer(query):
        for old, new in _RE_RENAME_PAIR.findall(renamed.group(1)):
            read.add(old)
            created.add(new)
    columns = {name for name in read - created if not name.startswith("_")}
    return FluxRefs(frozenset(measurements), frozenset(fields), frozenset(columns), frozenset(tag_values))


_PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
)
_RE_PROMQL_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RE_PROMQL_IDENT = re.compile(r"[A-Za-z_:][\w:]*")


def promql_metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables ($__rate_interval, ${x})
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # label matchers and range selectors
    text = _RE_PROMQL_LABEL_LIST.sub(" ", text)
    names = set()
    for match in _RE_PROMQL_IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # a number's exponent or suffix, e.g. 1e3
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or aggregation
            continue
        if match.group() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


INFLUXQL_DATASOURCE_UID = "influxdb-anomaly-influxql"  # core.dashboards.INFLUXQL_DATASOURCE_UID


def iter_queries(document: Any) -> Iterator[tuple[str, str]]:
    """Yield ``("flux" | "influxql", query)`` and ``("promql", expr)`` for every query of a document."""
    if isinstance(document, dict):
        datasource = document.get("datasource")
        kind = datasource.get("type") if isinstance(datasource, dict) else None
        if kind == "influxdb" and isinstance(document.get("query"), str):
            assert isinstance(datasource, dict)
            influxql = datasource.get("uid") == INFLUXQL_DATASOURCE_UID
            yield "influxql" if influxql else "flux", document["query"]
        if isinstance(document.get("expr"), str):
            yield "promql", document["expr"]
        for value in document.values():
            yield from iter_queries(value)
    elif isinstance(document, list):
        for item in document:
            yield from iter_queries(item)
