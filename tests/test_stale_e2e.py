"""Issue 15, check 2: a series whose target disappears is stale (not zero) within two intervals.

Real Prometheus scrapes two real node_exporters; the monitor runs as a subprocess
(``python main.py --mode monitor``) writing to InfluxDB 1.6 through the v1 API. One exporter is
stopped mid-run: its series must show as stale in ``/metrics``, in ``logs/data_quality.jsonl`` and in
the ``data_quality`` measurement, no value is written for its silence, the other series goes on, and
after the TTL the stale series is dropped; started again, it comes back as a new series.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from servers import NodeExporterServer, PrometheusServer, free_port, prom_wait_for, unique_name

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.servers, pytest.mark.slow]

INTERVAL = 1.0
QUERY = "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)"
TTL_HOURS = 0.003  # 10.8 s


def _gauge(text: str, name: str, **labels: str) -> float | None:
    """Return the value of one sample of the exposition text (labels must match, any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait(what: str, check, timeout: float, proc: subprocess.Popen) -> float:
    """Poll ``check`` until true; return the time it took (fail naming ``what``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the monitor exited ({proc.returncode}) while waiting for {what}")
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def test_a_stopped_target_is_stale_then_dropped_and_the_daemon_goes_on(tmp_path, start_server, influxdb1):
    a = start_server(NodeExporterServer(tmp_path / "exporter-a"))
    b = start_server(NodeExporterServer(tmp_path / "exporter-b"))
    b_target = f"{b.host}:{b.port}"
    prom = start_server(PrometheusServer(tmp_path / "prom", [f"{a.host}:{a.port}", b_target], job="node"))
    prom_wait_for(prom.url, QUERY, timeout=30)
    database = unique_name("stale")
    port = free_port()
    (tmp_path / "c.yaml").write_text(
        "model:\n  kind: profile\n"
        f"monitoring:\n  quality:\n    series_ttl_hours: {TTL_HOURS}\n    write_interval_seconds: 5.0\n"
        "metrics:\n"
        f"  - name: memory_used\n    query: '{QUERY}'\n    unit: percent\n    host_label: instance\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    env.update(
        LOGS_DIR=str(tmp_path / "logs"),
        TELEMETRY_PORT=str(port),
        PROMETHEUS_URL=prom.url,
        INFLUXDB_URL=influxdb1.url,
        INFLUXDB_API="v1",
        INFLUXDB_DATABASE=database,
    )
    cmd = [sys.executable, str(ROOT / "main.py"), "--mode", "monitor", "--config", "c.yaml"]
    cmd += ["--monitoring-interval", str(INTERVAL), "--duration", "60"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics_url = f"http://127.0.0.1:{port}/metrics"

    def metrics() -> str:
        try:
            return requests.get(metrics_url, timeout=2).text
        except requests.RequestException:
            return ""

    def series_of_b(text: str) -> dict[str, str] | None:
        for line in text.splitlines():
            if line.startswith("anomaly_detector_series_stale{") and b_target in line:
                return dict(re.findall(r'(\w+)="([^"]*)"', line))
        return None

    try:
        _wait(
            "both series tracked",
            lambda: _gauge(metrics(), "anomaly_detector_quality_series", metric="memory_used") == 2,
            40,
            proc,
        )
        time.sleep(3 * INTERVAL)
        b_labels = series_of_b(metrics())
        assert b_labels is not None
        b_series = b_labels["series"]
        b.stop()
        stopped = time.time()
        took = _wait(
            "the stopped series stale in /metrics",
            lambda: _gauge(metrics(), "anomaly_detector_series_stale", series=b_series) == 1.0,
            15,
            proc,
        )
        text = metrics()
        assert _gauge(text, "anomaly_detector_stale_series", metric="memory_used") == 1
        # Prometheus needs up to one scrape (1 s) and its timeout (1 s) to mark the series stale; the
        # rest is two intervals and the slack of a loaded 2-core machine (ticks start late there).
        assert took < 2 * INTERVAL + 2.0 + 2.0, took
        _wait(
            "the stopped series dropped after its TTL",
            lambda: _gauge(metrics(), "anomaly_detector_series_dropped_total") == 1.0,
            TTL_HOURS * 3600 + 10,
            proc,
        )
        assert _gauge(metrics(), "anomaly_detector_series_stale", series=b_series) is None
        b.start()
        _wait(
            "the restarted series tracked again",
            lambda: _gauge(metrics(), "anomaly_detector_series_stale", series=b_series) == 0.0,
            20,
            proc,
        )
        back = time.time()
        time.sleep(3 * INTERVAL)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-3000:]

    logs = tmp_path / "logs"
    records = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    b_points = sorted(r["ts"] for r in records if r["series"] == b_series)
    others = sorted(r["ts"] for r in records if r["series"] != b_series)
    rows = [json.loads(line) for line in (logs / "data_quality.jsonl").read_text().splitlines()]
    b_rows = [r for r in rows if r["series"] == b_series]
    first_stale = next(r for r in b_rows if r["stale"])
    assert first_stale["metric"] == "memory_used"
    # Prometheus answers with b's last sample until its next failed scrape marks it stale, so b's
    # last point may come a moment after stop() returned: the last point before the stale row.
    last_before = max(t for t in b_points if t < first_stale["ts"])
    assert last_before >= stopped - 3 * INTERVAL, (last_before, stopped)
    # The tick two intervals after the last point, give or take a tick that starts late under load.
    assert first_stale["ts"] - last_before <= 2 * INTERVAL + 1.0, (first_stale, last_before)
    assert any(not r["stale"] and r["ts"] > first_stale["ts"] for r in b_rows), "fresh again after return"
    # Stale is not zero: no point of b between its last value and its return.
    assert not [t for t in b_points if last_before < t < back - 5 * INTERVAL]
    assert [t for t in b_points if t > back - 5 * INTERVAL], "the returned series is scored again"
    # The daemon went on: the other series has a point on (nearly) every tick of b's silence.
    gap = [t for t in others if last_before < t < back - 5 * INTERVAL]
    assert len(gap) >= 0.8 * ((back - 5 * INTERVAL - last_before) / INTERVAL), len(gap)

    # The same rows in InfluxDB 1.6 (v1 API), read back with InfluxQL.
    deadline = time.monotonic() + 15
    while True:
        answer = influxdb1.query(
            f"SELECT staleness_seconds, stale FROM data_quality WHERE host = '{b_labels['host']}' "
            "AND stale = true",
            db=database,
            epoch="ms",
        )
        values = [s["values"] for r in answer["results"] for s in r.get("series", [])]
        if values or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert values and values[0][0][2] is True and values[0][0][1] > 1.5 * INTERVAL


def test_a_series_gone_while_the_daemon_was_down_is_stale_after_the_restart(tmp_path):
    """The restarted daemon knows its series from the log: one that never comes back is stale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    env.update(LOGS_DIR=str(tmp_path / "logs"), TELEMETRY_PORT="0")
    cmd = [sys.executable, str(ROOT / "main.py"), "--mode", "monitor", "--monitoring-interval", "1"]
    for series, duration in ((2, "4"), (1, "5")):
        (tmp_path / "c.yaml").write_text(f"model:\n  kind: profile\nsimulator:\n  series: {series}\n")
        run = subprocess.run(
            [*cmd, "--config", "c.yaml", "--duration", duration],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "logs/data_quality.jsonl").read_text().splitlines()]
    assert len({r["host"] for r in rows}) == 2
    stale = [r for r in rows if r["stale"]]  # only the second run can see a series go
    assert len({r["host"] for r in stale}) == 1 and stale[0]["staleness_seconds"] > 1.5
