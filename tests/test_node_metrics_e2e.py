"""Many metrics in one daemon (issue 15, check 1): examples/node-metrics.yaml end to end, real servers.

monitor   real Prometheus scraping real node_exporter -> main.py --mode monitor (subprocess) ->
          VictoriaMetrics through the v2 API and InfluxDB 1.6 through the v1 API; every metric's
          points read back, each series tagged with its metric
train     VictoriaMetrics loaded with two days of synthetic node_exporter series stands in for
          Prometheus: main.py --mode train --from-prometheus fits every series of every metric,
          with the ids the monitor uses, each band inside its metric's physical range
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from servers import free_port, http_request, prom_wait_for, unique_name, vm_export, vm_force_flush

from core.config import load_settings
from core.model.artifact import load_artifact
from core.model.store import ModelStore
from core.refit import InlineExecutor, RefitPolicy, Refitter
from core.sources.prometheus import PrometheusSource
from core.units import SeriesPlans

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
EXAMPLE = ROOT / "examples" / "node-metrics.yaml"
METRICS = ("cpu", "memory_used", "network_receive")
pytestmark = [pytest.mark.servers, pytest.mark.slow]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    env.update({"LOGS_DIR": str(tmp_path / "logs"), "TELEMETRY_PORT": str(free_port()), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def main_cmd(*args: str) -> list[str]:
    return [sys.executable, str(MAIN), "--config", str(EXAMPLE), *args]


def scored_per_metric(logs: Path) -> Counter:
    """Return metric -> records in metrics.jsonl (the metric label, absent = cpu)."""
    count: Counter = Counter()
    for path in sorted(logs.glob("metrics.jsonl*")):
        for line in path.read_text().splitlines():
            if line:
                count[json.loads(line)["labels"].get("metric", "cpu")] += 1
    return count


# -- monitor: Prometheus + node_exporter in, VictoriaMetrics (v2) and InfluxDB 1.6 (v1) out ---------


def test_monitor_writes_every_metric_tagged_to_victoria_metrics_and_influxdb1(
    tmp_path, prometheus, node_exporter, victoria_metrics_fresh, influxdb1
):
    vm, db = victoria_metrics_fresh, unique_name("nodes")
    settings = load_settings(EXAMPLE, env={})
    for metric in settings.metric_list():  # rate() over [1m] needs two scrapes
        prom_wait_for(prometheus.url, metric.query, timeout=30)
    runs = {
        "v2": env_for(tmp_path / "v2", PROMETHEUS_URL=prometheus.url, INFLUXDB_URL=vm.url),
        "v1": env_for(
            tmp_path / "v1",
            PROMETHEUS_URL=prometheus.url,
            INFLUXDB_URL=influxdb1.url,
            INFLUXDB_API="v1",
            INFLUXDB_DATABASE=db,
        ),
    }
    procs = {}
    for api, env in runs.items():
        (tmp_path / api).mkdir()
        cmd = main_cmd("--mode", "monitor", "--monitoring-interval", "1", "--duration", "6")
        procs[api] = subprocess.Popen(
            cmd, cwd=tmp_path / api, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    for api, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{api}: {err}{out[-2000:]}"
    host = f"{node_exporter.host}:{node_exporter.port}"

    scored = scored_per_metric(tmp_path / "v2" / "logs")
    assert set(scored) == set(METRICS) and min(scored.values()) >= 3
    vm_force_flush(vm.url)
    match = '{__name__=~"cpu_metrics_cpu_usage|metric_values_value",metric_type="actual"}'
    actual = {s.labels["metric"]: s for s in vm_export(vm.url, match)}
    assert set(actual) == set(METRICS)
    assert actual["cpu"].name == "cpu_metrics_cpu_usage"
    for metric in METRICS:
        series = actual[metric]
        assert series.labels["host"] == host and series.labels["source"] == "prometheus"
        assert len(series.values) == scored[metric], metric  # every scored point, once
        if metric != "cpu":
            assert series.name == "metric_values_value"
    assert 0 <= min(actual["memory_used"].values) and max(actual["memory_used"].values) <= 100
    flags = vm_export(vm.url, "anomaly_detection_is_anomaly")
    assert sorted({s.labels["metric"] for s in flags}) == sorted(METRICS)

    scored = scored_per_metric(tmp_path / "v1" / "logs")
    assert set(scored) == set(METRICS)
    tags = influxdb1.query("SHOW TAG VALUES WITH KEY = metric", db=db)["results"][0]["series"]
    assert {s["name"]: sorted(v for _, v in s["values"]) for s in tags} == {
        "anomaly_detection": sorted(METRICS),
        "cpu_metrics": ["cpu"],
        "metric_values": ["memory_used", "network_receive"],
        "data_quality": sorted(METRICS),  # one data-quality row per series and cadence (core/quality.py)
    }
    for metric in METRICS:
        q = (
            "SELECT * FROM /^(cpu_metrics|metric_values)$/ "
            f"WHERE metric = '{metric}' AND metric_type = 'actual'"
        )
        [series] = influxdb1.query(q, db=db)["results"][0]["series"]
        assert series["name"] == ("cpu_metrics" if metric == "cpu" else "metric_values")
        assert len(series["values"]) == scored[metric], metric
        q = f"SELECT count(is_anomaly) FROM anomaly_detection WHERE metric = '{metric}'"
        [counted] = influxdb1.query(q, db=db)["results"][0]["series"]
        assert counted["values"][0][1] == scored[metric]


# -- train --from-prometheus: two days of synthetic node_exporter history in VictoriaMetrics ---------

INSTANCES = ("host-a:9100", "host-b:9100")
STEP = 15.0  # seconds between synthetic scrapes
MEM_TOTAL = 8e9


def synthetic_history(end: float, days: float = 2.0) -> str:
    """Return node_exporter-like counters and gauges in Prometheus' text format with ms timestamps.

    Memory used hovers just under 100% and network receive just above 0 B/s, both noisy: a band fitted
    without its metric's physical range would cross 100 and 0.
    """
    t = np.arange(end - days * 86400 - 600, end, STEP)
    day = np.sin(2 * np.pi * t / 86400)
    lines = []
    for i, instance in enumerate(INSTANCES):
        rng = np.random.default_rng(i)
        labels = f'instance="{instance}",job="node"'
        busy = np.clip(0.3 + 0.2 * day + rng.normal(0, 0.02, len(t)), 0, 1)
        idle = np.cumsum((1 - busy) * STEP)
        used = np.clip(0.975 + 0.015 * day + rng.normal(0, 0.008, len(t)), 0, 1)
        rx = np.cumsum(np.clip(20 + 15 * day + rng.normal(0, 25, len(t)), 0, None) * STEP)
        for k, ts in enumerate(np.round(t * 1000).astype(np.int64)):
            lines.append(f'node_cpu_seconds_total{{cpu="0",mode="idle",{labels}}} {idle[k]:.3f} {ts}')
            lines.append(f"node_memory_MemTotal_bytes{{{labels}}} {MEM_TOTAL:.0f} {ts}")
            lines.append(f"node_memory_MemAvailable_bytes{{{labels}}} {MEM_TOTAL * (1 - used[k]):.0f} {ts}")
            lines.append(f'node_network_receive_bytes_total{{device="eth0",{labels}}} {rx[k]:.0f} {ts}')
    return "\n".join(lines) + "\n"


def vm_import(url: str, text: str) -> None:
    response = http_request("POST", f"{url}/api/v1/import/prometheus", data=text.encode())
    assert response.status_code == 204, response.text[:500]
    vm_force_flush(url)


def test_train_from_prometheus_fits_every_series_of_every_metric(tmp_path, victoria_metrics_fresh):
    vm = victoria_metrics_fresh
    vm_import(vm.url, synthetic_history(time.time()))
    env = env_for(tmp_path, PROMETHEUS_URL=vm.url)
    # 5-minute steps: 576 points per series over two days (the monitor's ids do not depend on the step).
    cmd = main_cmd(
        "--mode", "train", "--from-prometheus", "--days", "2", "--monitoring-interval", "300", "--no-eda",
    )  # fmt: skip
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    assert result.stdout.splitlines()[-1].startswith("trained 6 series")

    artifact = load_artifact(tmp_path / "outputs" / "cpu_anomaly_model.json")
    # The ids are those the monitor's poll gives the same server's series.
    settings = load_settings(EXAMPLE, env={"PROMETHEUS_URL": vm.url})
    source = PrometheusSource.from_settings(settings.prometheus, settings.monitoring, settings.metric_list())
    try:
        polled = {batch.series.id for batch in source.poll(time.time(), {})}
    finally:
        source.close()
    assert set(artifact.models) == polled and len(polled) == 6
    by_metric: dict[str, list] = {}
    for model in artifact.models.values():
        by_metric.setdefault(model.labels.get("metric", "cpu"), []).append(model)
        assert model.kind == "prophet" and model.train_rows >= 400, (model.id, model.kind, model.note)
    assert sorted(by_metric) == sorted(METRICS) and all(len(v) == 2 for v in by_metric.values())
    assert {m.unit for m in by_metric["memory_used"]} == {"percent"}
    assert {m.unit for m in by_metric["network_receive"]} == {"count/s"}
    for model in by_metric["memory_used"]:  # percent: the band never passes 100
        assert float(np.max(model.band.upper)) <= 100.0 and float(np.max(model.band.yhat)) > 95
        assert json.loads(model.prophet)["interval_width"] == 0.99  # the metric's model override
    for model in by_metric["network_receive"]:  # a rate: never below 0, no upper clip
        assert float(np.min(model.band.lower)) == 0.0 and math.isfinite(float(np.max(model.band.upper)))
    for model in by_metric["cpu"]:
        assert json.loads(model.prophet)["interval_width"] == 0.95
    metadata = json.loads((tmp_path / "outputs" / "model_metadata.json").read_text())
    assert len(metadata["plots"]) == 12  # forecast and components of every series
    assert all((tmp_path / plot).is_file() for plot in metadata["plots"])  # cwd-relative or absolute
    assert metadata["dataset"]["source"] == "prometheus"
    assert {k: v["series"] for k, v in metadata["dataset"]["metrics"].items()} == dict.fromkeys(METRICS, 2)


@pytest.mark.parametrize(
    ("url", "code", "line"),
    [
        (
            None,
            2,
            "error: train --from-prometheus needs a Prometheus URL; set PROMETHEUS_URL, prometheus.url "
            "or --prometheus-url",
        ),
        (
            "http://127.0.0.1:{closed}",
            4,
            "error: Prometheus at http://127.0.0.1:{closed} is unreachable: connection refused "
            "(1 attempt in ",
        ),
        (
            "{vm}",
            2,
            "error: Prometheus at {vm} returned no series for any metric in the last 2 days (cpu: ",
        ),
    ],
    ids=["no-url", "unreachable", "empty"],
)
def test_train_from_prometheus_bad_input_is_one_line(tmp_path, victoria_metrics_fresh, url, code, line):
    closed = free_port()
    fill = {"closed": str(closed), "vm": victoria_metrics_fresh.url}
    env = env_for(tmp_path, **({"PROMETHEUS_URL": url.format(**fill)} if url else {}))
    cmd = main_cmd("--mode", "train", "--from-prometheus", "--days", "2", "--no-plots")
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(line.format(**fill)) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "outputs" / "cpu_anomaly_model.json").exists()


def test_daemon_refits_use_each_metrics_model_and_range(victoria_metrics_fresh):
    """The refits of the daemon (Refitter, as assemble wires it) fit each series by its metric."""
    vm = victoria_metrics_fresh
    now = time.time()
    vm_import(vm.url, synthetic_history(now))
    settings = load_settings(
        EXAMPLE, env={"PROMETHEUS_URL": vm.url}, overrides={"monitoring.interval_seconds": 300}
    )
    source = PrometheusSource.from_settings(settings.prometheus, settings.monitoring, settings.metric_list())
    store = ModelStore()
    refitter = Refitter(
        store,
        source,
        settings.model,
        RefitPolicy(interval=86400, history=2.1 * 86400, min_rows=288),  # Prophet needs two days
        executor=InlineExecutor(),
        plans=SeriesPlans(settings, source=source.name),
    )
    try:
        refs = [batch.series for batch in source.poll(now, {})]
        assert refitter.schedule(refs, now) == 6
        refitter.collect()
    finally:
        source.close()
    models = store.models()
    assert len(models) == 6
    for model in models.values():
        metric = model.labels.get("metric", "cpu")
        assert model.kind == "prophet"
        units = {"cpu": "percent", "memory_used": "percent", "network_receive": "count/s"}
        assert model.unit == units[metric]
        width = json.loads(model.prophet)["interval_width"]
        assert width == (0.99 if metric == "memory_used" else 0.95)
        if metric == "memory_used":
            assert float(np.max(model.band.upper)) <= 100.0
        if metric == "network_receive":
            assert float(np.min(model.band.lower)) == 0.0


def test_training_history_is_chunked_under_the_point_limit(victoria_metrics_fresh):
    """Two days at 15 s are 11,520 points per series: more than one request may hold (11,000)."""
    from support.http import RecordingSession

    vm = victoria_metrics_fresh
    now = time.time()
    vm_import(vm.url, synthetic_history(now))
    settings = load_settings(
        EXAMPLE, env={"PROMETHEUS_URL": vm.url}, overrides={"monitoring.interval_seconds": 15}
    )
    session = RecordingSession()
    source = PrometheusSource.from_settings(
        settings.prometheus, settings.monitoring, settings.metric_list(), session=session
    )
    try:
        batches = source.history_all(now - 2 * 86400, now, max_points=20_000)
    finally:
        source.close()
    assert len(batches) == 6
    assert all(11_000 < len(b.t) <= 11_521 and np.all(np.diff(b.t) == 15.0) for b in batches)
    ranges = [params for url, params in session.sent if url.endswith("/api/v1/query_range")]
    assert len(ranges) == 2 * len(METRICS)  # two chunks per metric
    for params in ranges:
        points = (float(params["end"]) - float(params["start"])) / float(params["step"]) + 1
        assert points <= 10_000
