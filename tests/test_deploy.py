"""The deployment files agree with the code: dashboards, alert rules, provisioning, compose, Docker.

Config-level only (no Docker engine, no Grafana here): generated files are what core/dashboards.py
renders; every Flux query reads only what the sink writes; every PromQL metric is one the detector or
node_exporter exports; datasource uids resolve; docker-compose validates and fails loudly without
secrets; no secret is committed anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import require_binary
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from servers import http_request, prom_query
from support import dashboards

from core.config import ENV_VARS, SECRET_ENV
from core.quality import QualityParams, QualityRow, QualityTracker
from core.records import PointBatch, ScoredRecord, SeriesRef
from core.scoring import SEVERITIES
from core.sinks import lineproto
from core.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DATASOURCES = ROOT / "grafana/provisioning/datasources/datasources.yaml"
DASHBOARD_PROVIDERS = ROOT / "grafana/provisioning/dashboards/dashboards.yaml"
ALERT_RULES = ROOT / dashboards.ALERT_RULES_PATH
PROMETHEUS_CONFIG = ROOT / "deploy/prometheus.yml"
GRAFANA_DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
GRAFANA_PROVISIONING_MOUNT = "/etc/grafana/provisioning"

# The daemon's metrics the product promises (the dashboards and alert rules rely on them).
PROMISED_DETECTOR_METRICS = {
    "anomaly_detector_ticks_total",
    "anomaly_detector_points_scored_total",
    "anomaly_detector_anomalies_total",
    "anomaly_detector_writes_total",
    "anomaly_detector_write_retries_total",
    "anomaly_detector_spool_depth_records",
    "anomaly_detector_tick_duration_seconds_bucket",
    "anomaly_detector_model_age_seconds",
    "anomaly_detector_missed_ticks_total",
    "anomaly_detector_up",
    "anomaly_detector_alert_outbox_pending",
    "anomaly_detector_alert_notifications_total",
}
# Prometheus' own per-target series, used by the "detector down" rule.
PROMETHEUS_SYNTHETIC = {"up"}
SECRET_KEYS = ("INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_TOKEN", "GRAFANA_ADMIN_PASSWORD")
# Values of the kind the replaced system committed; none may appear in any file of the repository.
LEAKED_STYLE_VALUES = ("my-super-secret", "super-secret-token", "supersecret", "changeme", "admin123")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _generated_documents() -> dict[str, Any]:
    """Every dashboard and rules file as committed, parsed."""
    docs: dict[str, Any] = {}
    for path in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        docs[path.relative_to(ROOT).as_posix()] = _load_json(path)
    if ALERT_RULES.is_file():  # a missing file fails test_generated_file_is_up_to_date, not collection
        docs[dashboards.ALERT_RULES_PATH] = _load_yaml(ALERT_RULES)
    return docs


def _labelled(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Yield (where, node) for every dict, `where` naming the panel, variable or rule it sits in."""
    if isinstance(node, dict):
        for key in ("uid", "title", "name"):
            if isinstance(node.get(key), str) and "refId" not in node:
                where = f"{where.split(':')[0]}:{node[key]}"
                break
        yield where, node
        for value in node.values():
            yield from _labelled(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _labelled(item, where)


def _all_queries(kind: str) -> list[tuple[str, str]]:
    """Return (where, query) for every query of `kind` in the committed dashboards and rules."""
    found: list[tuple[str, str]] = []
    for name, doc in _generated_documents().items():
        for where, node in _labelled(doc, name):
            # Only the queries this dict holds itself; nested ones are visited on their own.
            shallow = {k: v for k, v in node.items() if not isinstance(v, dict | list) or k == "datasource"}
            found.extend(
                (f"{where}/{node.get('refId', '')}", query)
                for query_kind, query in dashboards.iter_queries(shallow)
                if query_kind == kind
            )
    return found


FLUX_QUERIES = _all_queries("flux")
PROMQL_QUERIES = _all_queries("promql")
INFLUXQL_QUERIES = _all_queries("influxql")  # run against a real InfluxDB 1.6: tests/test_influxql_board.py


def _sink_schema() -> tuple[dict[str, tuple[set[str], set[str]]], dict[str, set[str]]]:
    """Return what the sink really writes: measurement -> (tags, fields), and tag -> values seen."""
    record = ScoredRecord(
        ts=1_700_000_000.0,
        series="host=web-01",
        labels={"host": "web-01"},
        host="web-01",
        source="prometheus",
        value=91.0,
        yhat=40.0,
        lower=30.0,
        upper=50.0,
        score=5.1,
        is_anomaly=True,
        severity="CRITICAL",
        confidence=0.9,
        threshold=1.0,
        model="prophet",
    )
    other = dataclasses.replace(
        record, series="metric=memory_used,host=web-01", labels={"metric": "memory_used", "host": "web-01"}
    )
    schema: dict[str, tuple[set[str], set[str]]] = {}
    values: dict[str, set[str]] = {}
    quality = QualityRow(record.ts, record.series, "cpu", record.host, 0.5, 120.0, 2, 1.5, True)
    written = lineproto.encode_record(record) + lineproto.encode_record(other)
    for line in written + lineproto.encode_quality([quality]):
        series, field_text, _ts = line.split(" ")  # the sample has nothing to escape
        measurement, *tag_pairs = series.split(",")
        tags, fields = schema.setdefault(measurement, (set(), set()))
        for pair in tag_pairs:
            key, value = pair.split("=", 1)
            tags.add(key)
            values.setdefault(key, set()).add(value)
        fields.update(pair.split("=", 1)[0] for pair in field_text.split(","))
    values[lineproto.TAG_METRIC_TYPE] = {lineproto.METRIC_TYPE_ACTUAL, lineproto.METRIC_TYPE_FORECASTED}
    values[lineproto.TAG_SEVERITY] = set(SEVERITIES)
    return schema, values


SINK_SCHEMA, SINK_TAG_VALUES = _sink_schema()


# --- generated files ---------------------------------------------------------------------------------


def test_sink_schema_sample_covers_lineproto_schema() -> None:
    assert {m: (set(t), set(f)) for m, (t, f) in lineproto.SCHEMA.items()} == SINK_SCHEMA


@pytest.mark.parametrize("relative", sorted(dashboards.render_files()))
def test_generated_file_is_up_to_date(relative: str) -> None:
    path = ROOT / relative
    assert path.is_file(), f"{relative} is missing: run python -m core.dashboards"
    assert path.read_text(encoding="utf-8") == dashboards.render_files()[relative], (
        f"{relative} differs from what core/dashboards.py generates: edit core/dashboards.py and run "
        "python -m core.dashboards (never edit the generated file)"
    )


def test_top_level_dashboard_is_the_provisioned_main_dashboard() -> None:
    top = (ROOT / dashboards.MAIN_DASHBOARD_PATH).read_bytes()
    assert top == (ROOT / "grafana/dashboards/anomaly-detection.json").read_bytes()


def test_check_mode_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboards.main(["--root", str(tmp_path), "--check"]) == 1
    assert "grafana_dashboard.json: out of date" in capsys.readouterr().out
    assert dashboards.main(["--root", str(tmp_path)]) == 0
    assert dashboards.main(["--root", str(tmp_path), "--check"]) == 0


@pytest.mark.parametrize(
    ("path", "uid"),
    [
        ("grafana/dashboards/anomaly-detection.json", dashboards.MAIN_DASHBOARD_UID),
        ("grafana/dashboards/anomaly-influxql.json", dashboards.INFLUXQL_DASHBOARD_UID),
        ("grafana/dashboards/detector-health.json", dashboards.HEALTH_DASHBOARD_UID),
    ],
)
def test_dashboard_shape(path: str, uid: str) -> None:
    board = _load_json(ROOT / path)
    assert board["uid"] == uid
    assert board["id"] is None
    assert 36 <= board["schemaVersion"] <= 41
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["description"], panel["title"]


PROMISED_PANELS = {
    "Current status per host": "stat",
    "Anomalies, last hour": "stat",
    "Latest confidence": "gauge",
    "Anomaly rate, last 24 h": "gauge",
    "$metric vs forecast: $host": "timeseries",
    "Anomaly score": "timeseries",
    "Data quality per series": "table",
    "Recent anomalies": "table",
}


@pytest.mark.parametrize("path", [dashboards.MAIN_DASHBOARD_PATH, dashboards.INFLUXQL_DASHBOARD_PATH])
def test_main_dashboard_has_the_promised_panels(path: str) -> None:
    board = _load_json(ROOT / path)
    panels = {panel["title"]: panel for panel in board["panels"]}
    assert {title: panels[title]["type"] for title in PROMISED_PANELS} == PROMISED_PANELS
    band = panels["$metric vs forecast: $host"]
    assert band["repeat"] == "host"
    fills = [
        prop["value"]
        for override in band["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "custom.fillBelowTo"
    ]
    assert fills == [lineproto.FIELD_YHAT_LOWER]
    score = panels["Anomaly score"]["fieldConfig"]["defaults"]
    assert score["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [step["value"] for step in score["thresholds"]["steps"]] == [None, 1.0]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    influxql = path == dashboards.INFLUXQL_DASHBOARD_PATH
    assert set(variables) == ({"metric", "host"} if influxql else {"bucket", "metric", "host"})
    assert variables["metric"]["multi"] is False and variables["host"]["includeAll"] is True
    for kind, query in dashboards.iter_queries(board["panels"]):
        assert kind == ("influxql" if influxql else "flux")
        assert "${metric}" in query and "${host:regex}" in query
        assert ("$timeFilter" in query) if influxql else ('"${bucket}"' in query)


def test_the_influxql_twin_has_the_panels_of_the_main_dashboard() -> None:
    main, twin = dashboards.main_dashboard(), dashboards.influxql_dashboard()
    shape = [(p["title"], p["type"], p["gridPos"]) for p in main["panels"]]
    assert [(p["title"], p["type"], p["gridPos"]) for p in twin["panels"]] == shape
    band = next(p for p in twin["panels"] if p.get("repeat") == "host")
    # mean(/regex/) names columns mean_<field>: renamed to the names the band's overrides use.
    assert [t["options"]["renamePattern"] for t in band["transformations"]] == ["yhat", "$1"]


# --- Flux: only what the sink writes ---------------------------------------------------------------


def test_every_query_is_checked() -> None:
    everything = [kind for doc in _generated_documents().values() for kind, _ in dashboards.iter_queries(doc)]
    assert len(FLUX_QUERIES) + len(PROMQL_QUERIES) + len(INFLUXQL_QUERIES) == len(everything)
    assert len(INFLUXQL_QUERIES) == 15  # 2 variables + 13 panel queries
    # 3 variables + 12 panel queries + 3 alert rules.
    assert len(FLUX_QUERIES) == 18


@pytest.mark.parametrize(("where", "query"), FLUX_QUERIES, ids=[w for w, _ in FLUX_QUERIES])
def test_flux_query_reads_only_what_the_sink_writes(where: str, query: str) -> None:
    refs = dashboards.flux_references(query)
    if "buckets()" in query:  # the bucket variable lists buckets, not data
        assert not refs.measurements and refs.columns == {"name"}
        return
    assert refs.measurements, f"{where}: a data query must filter on r._measurement"
    unknown = refs.measurements - set(SINK_SCHEMA)
    assert not unknown, f"{where}: measurements {sorted(unknown)} are not written by the sink"
    tags = set().union(*(SINK_SCHEMA[m][0] for m in refs.measurements))
    fields = set().union(*(SINK_SCHEMA[m][1] for m in refs.measurements))
    assert refs.fields <= fields, f"{where}: fields {sorted(refs.fields - fields)} not in {sorted(fields)}"
    assert refs.columns <= tags | fields, f"{where}: columns {sorted(refs.columns - tags - fields)} unknown"
    for column, value in refs.tag_values:
        assert column in tags, f"{where}: {column} is not a tag of {sorted(refs.measurements)}"
        allowed = SINK_TAG_VALUES.get(column)
        if column in (lineproto.TAG_METRIC_TYPE, lineproto.TAG_SEVERITY):
            assert allowed is not None and value in allowed, f"{where}: {column} is never {value!r}"


def test_alert_rule_queries_use_the_default_bucket() -> None:
    for where, query in FLUX_QUERIES:
        if where.startswith(dashboards.ALERT_RULES_PATH):
            assert "from(bucket: v.defaultBucket)" in query, where


@pytest.mark.parametrize(
    ("query", "measurements", "fields", "columns", "tag_values"),
    [
        (
            'from(bucket: "b") |> filter(fn: (r) => r._measurement == "m" and r["_field"] == "f")',
            {"m"},
            {"f"},
            set(),
            set(),
        ),
        (
            'filter(fn: (r) => r["host"] == "a" or r.severity != "NONE")',
            set(),
            set(),
            {"host", "severity"},
            {
                ("host", "a"),
                ("severity", "NONE"),
            },
        ),
        (
            'keep(columns: ["_time", "x"]) |> rename(columns: {x: "y", _value: "z"})',
            set(),
            set(),
            {"x"},
            set(),
        ),
        ('map(fn: (r) => ({r with made: r.read})) |> keep(columns: ["made"])', set(), set(), {"read"}, set()),
        (
            'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            set(),
            set(),
            set(),
            set(),
        ),
        ('schema.tagValues(bucket: "b", tag: "host", predicate: (r) => true)', set(), set(), {"host"}, set()),
        ("r.host =~ /^${host:regex}$/", set(), set(), {"host"}, set()),
    ],
)
def test_flux_references(
    query: str, measurements: set[str], fields: set[str], columns: set[str], tag_values: set[tuple[str, str]]
) -> None:
    refs = dashboards.flux_references(query)
    assert (refs.measurements, refs.fields, refs.columns, refs.tag_values) == (
        measurements,
        fields,
        columns,
        tag_values,
    )


# --- PromQL: only what the detector and node_exporter export -----------------------------------------


def _detector_exports() -> set[str]:
    """Return every series name the daemon's /metrics can show (core/telemetry.py, rendered for real)."""
    telemetry = Telemetry(CollectorRegistry(), clock=lambda: 1000.0)
    telemetry.add_forwarder("influxdb", dict)
    telemetry.watch_models(lambda: {"host=web-01": 900.0})
    telemetry.watch_alerts(lambda: {"log": {"sent": 1, "failed": 0, "dropped": 0, "pending": 0}})
    tracker = QualityTracker(QualityParams(interval=60.0), limits={"cpu": (0.0, 100.0)})
    ref = SeriesRef.from_labels({"host": "web-01"})
    tracker.observe(960.0, [PointBatch(ref, np.array([960.0]), np.array([150.0]), "test")])
    telemetry.watch_quality(tracker.snapshot)
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count"),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(telemetry.render().decode()):
        names.update(sample.name for sample in family.samples)
        # Labelled families without children yet have no samples: name them from their type.
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


DETECTOR_EXPORTS = _detector_exports()


def test_detector_exports_the_promised_metrics() -> None:
    missing = PROMISED_DETECTOR_METRICS - DETECTOR_EXPORTS
    assert not missing, f"core/telemetry.py no longer exports {sorted(missing)}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (sink, result) (rate(a_total{result!~"ok|x"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
        ('min by (instance) (a) or min by (instance) (up{job="j"})', {"a", "up"}),
        ("100 - avg(rate(node_cpu_seconds_total[1m])) * 1e2", {"node_cpu_seconds_total"}),
        ("a / on (x) group_left (y) b offset 5m", {"a", "b"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert dashboards.promql_metric_names(expr) == names


def test_every_promql_query_is_found() -> None:
    assert len(PROMQL_QUERIES) >= 10
    used = set().union(*(dashboards.promql_metric_names(q) for _, q in PROMQL_QUERIES))
    assert used >= PROMISED_DETECTOR_METRICS, "the health dashboard shows every promised metric"


@pytest.mark.parametrize(("where", "expr"), PROMQL_QUERIES, ids=[w for w, _ in PROMQL_QUERIES])
def test_promql_uses_only_exported_metrics(where: str, expr: str) -> None:
    for name in dashboards.promql_metric_names(expr):
        assert name in DETECTOR_EXPORTS | PROMETHEUS_SYNTHETIC or name.startswith("node_"), (
            f"{where}: {name} is neither exported by core/telemetry.py nor node_exporter's"
        )


@pytest.mark.servers
def test_node_exporter_metrics_exist_and_promql_runs(node_exporter: Any, prometheus: Any) -> None:
    """Every node_* name used is in a real node_exporter's output; every expression parses and runs."""
    scrape = http_request("GET", f"{node_exporter.url}/metrics").text
    exported = set(re.findall(r"^(node_\w+)[{ ]", scrape, flags=re.M))
    for where, expr in PROMQL_QUERIES:
        for name in dashboards.promql_metric_names(expr):
            if name.startswith("node_"):
                assert name in exported, f"{where}: node_exporter does not export {name}"
        runnable = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
        prom_query(prometheus.url, runnable, at=time.time())  # raises on a parse error


# --- datasources and provisioning ------------------------------------------------------------------


def _provisioned_datasources() -> dict[str, dict[str, Any]]:
    doc = _load_yaml(DATASOURCES)
    assert doc["apiVersion"] == 1
    return {ds["uid"]: ds for ds in doc["datasources"]}


def _datasource_refs(node: Any, where: str) -> Iterator[tuple[str, str, str | None]]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            yield where, ds["uid"], ds.get("type")
        if isinstance(node.get("datasourceUid"), str):
            yield where, node["datasourceUid"], None
        for value in node.values():
            yield from _datasource_refs(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item, where)


def test_datasources_are_provisioned_with_fixed_uids_and_no_secret() -> None:
    sources = _provisioned_datasources()
    influx = sources[dashboards.INFLUX_DATASOURCE_UID]
    assert influx["type"] == "influxdb"
    assert influx["url"] == "http://influxdb:8086"
    assert influx["jsonData"]["version"] == "Flux"
    assert influx["jsonData"]["organization"] == "${INFLUXDB_ORG}"
    assert influx["jsonData"]["defaultBucket"] == "${INFLUXDB_BUCKET}"
    assert influx["secureJsonData"] == {"token": "${INFLUXDB_TOKEN}"}
    prom = sources[dashboards.PROMETHEUS_DATASOURCE_UID]
    assert prom["type"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    for ds in sources.values():
        assert {"name", "type", "uid", "url", "access"} <= set(ds)


def test_every_referenced_datasource_uid_is_provisioned() -> None:
    sources = _provisioned_datasources()
    builtin = {"-- Grafana --", "__expr__"}
    seen = 0
    for name, doc in _generated_documents().items():
        for where, uid, kind in _datasource_refs(doc, name):
            if uid in builtin:
                continue
            seen += 1
            assert uid in sources, f"{where}: datasource uid {uid!r} is not in {DATASOURCES.name}"
            if kind is not None:
                assert kind == sources[uid]["type"], f"{where}: {uid} is a {sources[uid]['type']}, not {kind}"
    assert seen > 0


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    doc = _load_yaml(DASHBOARD_PROVIDERS)
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS_MOUNT


_DURATION = re.compile(r"^\d+[smhd]$")


def test_alert_rules_have_the_documented_structure() -> None:
    doc = _load_yaml(ALERT_RULES)
    assert doc["apiVersion"] == 1
    boards = {b["uid"]: b for b in (_load_json(p) for p in (ROOT / "grafana/dashboards").glob("*.json"))}
    uids = set()
    for group in doc["groups"]:
        assert group["orgId"] == 1
        assert group["name"] and group["folder"]
        assert _DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert rule["uid"] not in uids and len(rule["uid"]) <= 40
            uids.add(rule["uid"])
            assert rule["title"]
            assert rule["noDataState"] in {"NoData", "Alerting", "OK", "KeepLast"}
            assert rule["execErrState"] in {"Error", "Alerting", "OK", "KeepLast"}
            assert _DURATION.match(rule["for"])
            assert rule["annotations"]["summary"]
            assert all(isinstance(v, str) for v in {**rule["annotations"], **rule["labels"]}.values())
            refs = [node["refId"] for node in rule["data"]]
            assert rule["condition"] in refs
            for node in rule["data"]:
                assert node["model"]["refId"] == node["refId"]
                if node["datasourceUid"] == "__expr__":
                    assert node["model"]["type"] in {"reduce", "threshold", "math", "classic_conditions"}
                    assert node["model"]["expression"] in refs
                else:
                    window = node["relativeTimeRange"]
                    assert window["from"] > window["to"] >= 0
            # Grafana expands $VAR in labels and queries of provisioned rules (not in annotations).
            assert "$" not in json.dumps([rule["labels"], rule["data"]]), rule["uid"]
            if "dashboardUid" in rule:
                panel_ids = {p["id"] for p in boards[rule["dashboardUid"]]["panels"]}
                assert rule["panelId"] in panel_ids
    assert {"anomaly-critical", "anomaly-sustained", "anomaly-no-data", "detector-write-failures"} <= uids


# --- docker-compose --------------------------------------------------------------------------------


def _fill_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Write .env.example with every secret filled in; return the file and the secrets."""
    secrets = {key: f"test{n}-{'0123456789abcdef' * 2}" for n, key in enumerate(SECRET_KEYS)}
    lines = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={secrets[key]}" if key in secrets else line)
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return env_file, secrets


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("docker-compose", "docker-compose")
    # A clean environment: variables of the caller's shell would override the .env file.
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(env_file.parent)},
        check=False,
    )


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str]]:
    """Return `docker-compose config` (rendered with a filled .env) and the secrets used."""
    env_file, secrets = _fill_env(tmp_path_factory.mktemp("compose"))
    quiet = _compose(env_file, "config", "-q")
    assert quiet.returncode == 0, quiet.stderr
    rendered = _compose(env_file, "config")
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout), secrets


def test_compose_fails_loudly_when_a_secret_is_missing(tmp_path: Path) -> None:
    unedited = tmp_path / ".env"
    unedited.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    result = _compose(unedited, "config", "-q")
    assert result.returncode != 0
    assert re.search(
        r"set (INFLUXDB_ADMIN_PASSWORD|INFLUXDB_TOKEN|GRAFANA_ADMIN_PASSWORD) in \.env", result.stderr
    )


def test_compose_services(compose_config: tuple[dict[str, Any], dict[str, str]]) -> None:
    config, _ = compose_config
    services = config["services"]
    assert set(services) == {"influxdb", "grafana", "prometheus", "node-exporter", "alertmanager", "detector"}
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    influx_env = services["influxdb"]["environment"]
    assert influx_env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert "healthcheck" in services["influxdb"]
    node = services["node-exporter"]
    assert node["pid"] == "host"
    assert {"/proc:/host/proc:ro", "/sys:/host/sys:ro"} <= {_volume(v) for v in node["volumes"]}
    for name, service in services.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            if "healthcheck" in services[dependency]:
                assert how["condition"] == "service_healthy", f"{name} -> {dependency}"


def _volume(spec: Any) -> str:
    """Return a volume as source:target[:ro] whatever form docker-compose rendered it in."""
    if isinstance(spec, str):
        return spec
    text = f"{spec.get('source')}:{spec['target']}"
    return text + (":ro" if spec.get("read_only") else "")


def test_compose_detector(compose_config: tuple[dict[str, Any], dict[str, str]]) -> None:
    config, secrets = compose_config
    detector = config["services"]["detector"]
    env = detector["environment"]
    unknown = set(env) - set(ENV_VARS) - set(SECRET_ENV)
    assert not unknown, f"the detector does not read {sorted(unknown)} (core/config.py ENV_VARS)"
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["INFLUXDB_URL"] == "http://influxdb:8086"
    assert env["INFLUXDB_TOKEN"] == secrets["INFLUXDB_TOKEN"]
    assert env["TELEMETRY_HOST"] == "0.0.0.0"
    assert detector["restart"] == "unless-stopped"
    assert set(detector["depends_on"]) >= {"influxdb", "prometheus"}
    targets = {_volume(v).split(":")[1] for v in detector["volumes"]}
    assert {"/app/outputs", env["LOGS_DIR"]} <= targets
    command = " ".join(detector["command"])
    assert "--mode train" in command and "--mode monitor" in command
    scrape = _load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    detector_targets = jobs[dashboards.DETECTOR_JOB]["static_configs"][0]["targets"]
    assert detector_targets == [f"detector:{env['TELEMETRY_PORT']}"]
    assert jobs["node"]["static_configs"][0]["targets"] == ["node-exporter:9100"]


def test_compose_grafana(compose_config: tuple[dict[str, Any], dict[str, str]]) -> None:
    config, secrets = compose_config
    grafana = config["services"]["grafana"]
    mounts = {_volume(v).split(":", 1)[1]: _volume(v).split(":", 1)[0] for v in grafana["volumes"]}
    assert mounts[f"{GRAFANA_PROVISIONING_MOUNT}:ro"] == str(ROOT / "grafana/provisioning")
    assert mounts[f"{GRAFANA_DASHBOARDS_MOUNT}:ro"] == str(ROOT / "grafana/dashboards")
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == secrets["GRAFANA_ADMIN_PASSWORD"]
    # Every ${VAR} the datasource file expands is in Grafana's environment.
    wanted = set(re.findall(r"\$\{(\w+)\}", json.dumps(_load_yaml(DATASOURCES))))
    assert wanted <= set(env), f"grafana lacks {sorted(wanted - set(env))}"


def test_secrets_reach_only_the_services_that_need_them(
    compose_config: tuple[dict[str, Any], dict[str, str]],
) -> None:
    config, secrets = compose_config
    needs = {
        "INFLUXDB_ADMIN_PASSWORD": {"influxdb"},
        "INFLUXDB_TOKEN": {"influxdb", "grafana", "detector"},
        "GRAFANA_ADMIN_PASSWORD": {"grafana"},
    }
    for key, value in secrets.items():
        holders = {name for name, service in config["services"].items() if value in json.dumps(service)}
        assert holders == needs[key], key


def test_compose_requires_every_secret_loudly() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for key in SECRET_KEYS:
        uses = re.findall(r"\$\{" + key + r"([^}]*)\}", text)
        assert uses, f"{key} is not used in docker-compose.yml"
        assert all(use.startswith(":?") for use in uses), f"every use of {key} must be ${{{key}:?message}}"


def test_prometheus_config_is_valid() -> None:
    promtool = require_binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Docker image ----------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    last_user = max(i for i, (word, _) in enumerate(instructions) if word == "USER")
    assert all(word != "RUN" for word, _ in instructions[last_user:]), "nothing runs as root after USER"
    assert ("RUN", "pip install -r requirements.txt") in instructions
    (healthcheck,) = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert any(word == "CMD" for word, _ in instructions)
    assert not any(
        re.search(r"TOKEN|PASSWORD", rest) for word, rest in instructions if word in {"ENV", "ARG"}
    )


def test_dockerignore_keeps_secrets_and_state_out_and_the_app_in() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "outputs", "logs", ".env"} <= patterns
    assert not patterns & {"main.py", "core", "requirements.txt", "config.yaml", "dataset.csv", "*", "*.py"}


# --- secrets ---------------------------------------------------------------------------------------


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_env_example_ships_no_secret_and_says_how_to_make_one() -> None:
    pairs = _env_example()
    for key, value in pairs.items():
        if re.search(r"TOKEN|PASSWORD|SECRET", key):
            assert value == "", f".env.example must leave {key} empty so docker-compose stops until it is set"
    assert set(SECRET_KEYS) <= set(pairs)
    assert "openssl rand -hex 32" in ENV_EXAMPLE.read_text(encoding="utf-8")
    compose_vars = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))
    assert compose_vars <= set(pairs), f".env.example lacks {sorted(compose_vars - set(pairs))}"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    git = require_binary("git", "git")
    return subprocess.run([git, "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


def test_env_file_is_ignored_by_git() -> None:
    assert _git("check-ignore", "-q", ".env").returncode == 0, ".env must be listed in .gitignore"
    assert _git("check-ignore", "-q", ".env.example").returncode == 1, ".env.example must be committed"


def _repository_text_files() -> list[Path]:
    listed = _git("ls-files", "--cached", "--others", "--exclude-standard")
    assert listed.returncode == 0, listed.stderr
    paths = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if path.is_file() and path.stat().st_size < 2_000_000 and path.suffix not in {".png", ".gz"}:
            paths.append(path)
    return paths


def test_no_file_contains_a_leaked_style_secret() -> None:
    here = Path(__file__).resolve()
    for path in _repository_text_files():
        if path == here:
            continue
        text = path.read_text(encoding="utf-8", errors="replace").lower()
        for value in LEAKED_STYLE_VALUES:
            assert value not in text, f"{path.relative_to(ROOT)} contains {value!r}"


_SECRET_ASSIGNMENT = re.compile(
    r"""(?ix) ([\w.]*(?:token|password|secret)[\w.]*) ["']? \s* [:=] [ \t]* ["']? ([^\s"'#,}]*)"""
)
_HEX_SECRET = re.compile(r"\b[0-9a-f]{32,}\b")
_DEPLOY_FILES = (
    "docker-compose.yml",
    "Dockerfile",
    ".env.example",
    "config.yaml",
    "README.md",
    "deploy/prometheus.yml",
    "grafana/provisioning/datasources/datasources.yaml",
    "grafana/provisioning/dashboards/dashboards.yaml",
    dashboards.ALERT_RULES_PATH,
)


@pytest.mark.parametrize("relative", _DEPLOY_FILES)
def test_deploy_and_config_files_hold_no_literal_secret(relative: str) -> None:
    path = ROOT / relative
    if not path.is_file():
        pytest.skip(f"{relative} does not exist yet")
    text = path.read_text(encoding="utf-8")
    # Comment lines are prose ("API token: ..."); a pasted token in them is still caught below.
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for match in _SECRET_ASSIGNMENT.finditer(settings):
        value = match.group(2)
        literal = value and not value.startswith("$") and value.lower() not in {"null", "~", "none"}
        assert not literal, f"{relative}: {match.group(0).strip()!r} looks like a committed secret"
    assert not _HEX_SECRET.search(text), f"{relative} contains a long hex string (a pasted token?)"


def test_compose_alertmanager_and_grafana_contact_point(
    compose_config: tuple[dict[str, Any], dict[str, str]],
) -> None:
    config, _ = compose_config
    services = config["services"]
    am = services["alertmanager"]
    mounts = {_volume(v).split(":", 1)[1]: _volume(v).split(":", 1)[0] for v in am["volumes"]}
    assert mounts["/etc/alertmanager/alertmanager.yml:ro"] == str(ROOT / "deploy/alertmanager.yml")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert services["detector"]["environment"]["ALERTMANAGER_URL"] == "http://alertmanager:9093"
    points = _load_yaml(ROOT / "grafana/provisioning/alerting/contact_points.yaml")
    (receiver,) = points["contactPoints"][0]["receivers"]
    assert receiver["type"] == "prometheus-alertmanager"
    assert receiver["settings"]["url"] == "http://alertmanager:9093"
    assert points["policies"][0]["receiver"] == points["contactPoints"][0]["name"]
    routes = _load_yaml(ROOT / "deploy/alertmanager.yml")
    assert routes["route"]["receiver"] in {r["name"] for r in routes["receivers"]}
