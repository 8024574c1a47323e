"""The monitor as operators run it: a subprocess, real Prometheus in, real databases out, faults included.

Every scored point (a line of logs/metrics.jsonl) must reach the database exactly once: across a
database outage, a kill -9 during the outage and a restart, and a SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from servers import free_port, influx_query, schedule_outage, unique_name, vm_export, vm_force_flush

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
pytestmark = [pytest.mark.servers, pytest.mark.slow]


def monitor_cmd(*extra: str) -> list[str]:
    return [sys.executable, str(MAIN), "--mode", "monitor", "--monitoring-interval", "1", *extra]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    env.update({"LOGS_DIR": str(tmp_path / "logs"), "TELEMETRY_PORT": str(free_port()), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def scored(tmp_path: Path) -> list[dict]:
    lines = []
    logs = tmp_path / "logs"
    for path in sorted(logs.glob("metrics.jsonl.*")) + [logs / "metrics.jsonl"]:
        if path.exists():
            lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


def vm_points(url: str, metric: str) -> Counter:
    """Return (host, timestamp in ms) -> number of stored samples of a VictoriaMetrics metric."""
    vm_force_flush(url)
    found: Counter = Counter()
    for series in vm_export(url, metric):
        for ts in series.timestamps:
            found[(series.labels.get("host"), ts)] += 1
    return found


def assert_all_exactly_once(lines: list[dict], vm_url: str) -> None:
    everything = Counter((r["host"], round(r["ts"] * 1000)) for r in lines)
    assert len(everything) == len(lines), "metrics.jsonl itself holds a duplicate"
    # A point scored before any model existed has no forecast, so no 'forecasted' point.
    forecast = Counter((r["host"], round(r["ts"] * 1000)) for r in lines if r["yhat"] is not None)
    for metric, expected in (
        ('cpu_metrics_cpu_usage{metric_type="actual"}', everything),
        ('cpu_metrics_cpu_usage{metric_type="forecasted"}', forecast),
        ("anomaly_detection_anomaly_score", everything),
    ):
        deadline = time.monotonic() + 15
        while True:
            stored = vm_points(vm_url, metric)
            if stored == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        missing = set(expected) - set(stored)
        extra = set(stored) - set(expected)
        dups = {k: v for k, v in stored.items() if v > 1}
        assert not missing and not extra and not dups, (metric, len(missing), len(extra), len(dups))


def run(
    cmd: list[str], tmp_path: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def test_outage_of_the_database_loses_nothing(tmp_path, prometheus, victoria_metrics_fresh):
    """Issue check 1: 40 s against real Prometheus, VictoriaMetrics down from second 10 to 25."""
    vm = victoria_metrics_fresh
    env = env_for(tmp_path, PROMETHEUS_URL=prometheus.url, INFLUXDB_URL=vm.url, INFLUXDB_TOKEN="unused-by-vm")
    with schedule_outage(vm, 10, 25):
        result = run(monitor_cmd("--duration", "40"), tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    lines = scored(tmp_path)
    assert len(lines) >= 35 and {r["source"] for r in lines} == {"prometheus"}
    assert_all_exactly_once(lines, vm.url)


def test_kill_9_during_the_outage_then_restart_loses_nothing(tmp_path, prometheus, victoria_metrics_fresh):
    """Issue check 2: the monitor is killed with SIGKILL while the database is down, then restarted."""
    vm = victoria_metrics_fresh
    env = env_for(tmp_path, PROMETHEUS_URL=prometheus.url, INFLUXDB_URL=vm.url, INFLUXDB_TOKEN="unused-by-vm")
    # With a trained model (the fast profile kind), every point also carries a forecast and its band.
    (tmp_path / "c.yaml").write_text("model:\n  kind: profile\n")
    train = run(
        [
            sys.executable,
            str(MAIN),
            "--mode",
            "train",
            "--dataset",
            str(ROOT / "dataset.csv"),
            "--no-plots",
            "--config",
            "c.yaml",
        ],
        tmp_path,
        env,
        timeout=120,
    )
    assert train.returncode == 0, train.stderr
    outage = schedule_outage(vm, 5, 25)
    with outage:
        proc = subprocess.Popen(
            monitor_cmd("--duration", "60", "--config", "c.yaml"),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        before = scored(tmp_path)
        assert len(before) >= 10
        time.sleep(3)  # down time of the monitor itself: catch-up must fill it
        result = run(monitor_cmd("--duration", "15", "--config", "c.yaml"), tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = scored(tmp_path)
    assert len(lines) > len(before)
    assert all(r["yhat"] is not None and r["model"].endswith("(borrowed)") for r in lines)
    by_host: dict[str, list[float]] = {}
    for r in lines:
        by_host.setdefault(r["host"], []).append(r["ts"])
    for ts in by_host.values():
        assert ts == sorted(ts) and all(b - a == 1.0 for a, b in zip(ts, ts[1:], strict=False)), (
            "gap or repeat"
        )
    assert_all_exactly_once(lines, vm.url)


def test_prometheus_stopped_and_restarted_mid_run(tmp_path, prometheus_fresh):
    """The source goes away for a while: ticks fail fast, the loop goes on, points resume after."""
    env = env_for(tmp_path, PROMETHEUS_URL=prometheus_fresh.url)
    with schedule_outage(prometheus_fresh, 6, 14):
        result = run(monitor_cmd("--duration", "35"), tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "source unavailable" in result.stdout
    report = json.loads((tmp_path / "logs" / "system_report.json").read_text())
    assert report["monitor"]["source_errors"] >= 3 and report["monitor"]["missed_ticks"] == 0
    ts = sorted(r["ts"] for r in scored(tmp_path))
    assert ts[0] < ts[-1] - 25  # points from before the outage and from well after it
    assert ts == sorted(set(ts))


def test_sigterm_flushes_and_exits_0(tmp_path, prometheus, victoria_metrics_fresh):
    vm = victoria_metrics_fresh
    env = env_for(tmp_path, PROMETHEUS_URL=prometheus.url, INFLUXDB_URL=vm.url, INFLUXDB_TOKEN="t")
    proc = subprocess.Popen(
        monitor_cmd(), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM" in out and err == ""
    report = json.loads((tmp_path / "logs" / "system_report.json").read_text())
    assert report["status"] == "stopped"
    assert_all_exactly_once(scored(tmp_path), vm.url)


def test_influxdb_1x_through_the_v1_api(tmp_path, prometheus, influxdb1):
    """Issue check 3: the same run written to InfluxDB 1.6 with the v1 API, read back with InfluxQL."""
    db = unique_name("anomaly")
    env = env_for(
        tmp_path,
        PROMETHEUS_URL=prometheus.url,
        INFLUXDB_URL=influxdb1.url,
        INFLUXDB_API="v1",
        INFLUXDB_DATABASE=db,
    )
    result = run(monitor_cmd("--duration", "12"), tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = scored(tmp_path)
    q = influx_query(influxdb1.url, "SELECT count(cpu_usage) FROM cpu_metrics GROUP BY metric_type", db=db)
    counts = {s["tags"]["metric_type"]: s["values"][0][1] for s in q["results"][0]["series"]}
    forecasts = sum(r["yhat"] is not None for r in lines)  # none before a model exists
    assert counts == {"actual": len(lines), **({"forecasted": forecasts} if forecasts else {})}
    q = influx_query(
        influxdb1.url,
        "SELECT anomaly_score, is_anomaly, confidence, threshold, severity FROM anomaly_detection",
        db=db,
        epoch="ms",
    )
    rows = q["results"][0]["series"][0]["values"]
    assert len(rows) == len(lines)
    by_ts = {round(r["ts"] * 1000): r for r in lines}
    for ts, score, is_anomaly, _, threshold, severity in rows:
        assert score == pytest.approx(by_ts[ts]["score"]) and is_anomaly == by_ts[ts]["is_anomaly"]
        assert severity == by_ts[ts]["severity"] and threshold == by_ts[ts]["threshold"]


def test_metrics_and_health_endpoints_during_a_run(tmp_path, prometheus, victoria_metrics):
    """Issue check 4: /metrics shows the counters, /healthz answers 200."""
    port = free_port()
    env = env_for(
        tmp_path,
        PROMETHEUS_URL=prometheus.url,
        INFLUXDB_URL=victoria_metrics.url,
        INFLUXDB_TOKEN="t",
        TELEMETRY_PORT=str(port),
    )
    proc = subprocess.Popen(
        monitor_cmd("--duration", "12"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            try:
                text = requests.get(f"{base}/metrics", timeout=2).text
                if "anomaly_detector_ticks_total 3.0" in text or "anomaly_detector_ticks_total 4.0" in text:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        health = requests.get(f"{base}/healthz", timeout=2)
        ready = requests.get(f"{base}/readyz", timeout=2)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200
    for name in (
        "anomaly_detector_ticks_total",
        "anomaly_detector_points_scored_total",
        'anomaly_detector_anomalies_total{severity="CRITICAL"}',
        'anomaly_detector_writes_total{result="success",sink="influxdb"}',
        'anomaly_detector_write_retries_total{sink="influxdb"}',
        'anomaly_detector_spool_depth_records{sink="influxdb"}',
        "anomaly_detector_tick_duration_seconds_bucket",
        "anomaly_detector_model_age_seconds",
        "anomaly_detector_missed_ticks_total",
    ):
        assert name in text, name


def test_no_servers_at_all_runs_on_the_simulator(tmp_path):
    """Issue check 5: no Prometheus, no database: simulator and local files, exit 0."""
    env = env_for(tmp_path)
    result = run(
        [sys.executable, str(MAIN), "--mode", "monitor", "--duration", "10"], tmp_path, env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = scored(tmp_path)
    assert lines and {r["source"] for r in lines} == {"simulator"}
    for name in ("anomalies.jsonl", "system_report.json", "application.log"):
        assert (tmp_path / "logs" / name).exists()


def test_unreachable_prometheus_falls_back_to_the_simulator_loudly_only_if_asked(tmp_path):
    env = env_for(tmp_path, PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}")
    (tmp_path / "c.yaml").write_text("monitoring:\n  fallback_to_simulator: true\n")
    started = time.monotonic()
    result = run(monitor_cmd("--duration", "3", "--config", "c.yaml"), tmp_path, env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "FALLING BACK TO THE SIMULATOR" in result.stdout
    assert time.monotonic() - started < 30
    assert {r["source"] for r in scored(tmp_path)} == {"simulator"}
    result = run(monitor_cmd("--duration", "3"), tmp_path, env, timeout=60)  # the default: no fallback
    assert result.returncode == 4
    assert (
        result.stderr.startswith("error: Prometheus at http://127.0.0.1:") and result.stderr.count("\n") == 1
    )


def test_explicit_missing_model_is_an_error(tmp_path):
    result = run(monitor_cmd("--duration", "3", "--model-path", "nope.json"), tmp_path, env_for(tmp_path), 60)
    assert result.returncode == 3
    assert result.stderr == (
        "error: nope.json: model file not found; run 'python main.py --mode train' or fix --model-path\n"
    )
