"""Self-monitoring: /metrics, /healthz and /readyz over real HTTP on a free port."""

from __future__ import annotations

import requests

from core.records import ScoredRecord
from core.telemetry import Telemetry, TelemetryServer


def record(anomaly: bool, severity: str = "NONE") -> ScoredRecord:
    return ScoredRecord(
        ts=1.0,
        series="host=a",
        labels={"host": "a"},
        host="a",
        source="simulator",
        value=1.0,
        yhat=1.0,
        lower=0.0,
        upper=2.0,
        score=3.5 if anomaly else 0.1,
        is_anomaly=anomaly,
        severity=severity,
        confidence=0.9,
        threshold=1.0,
        model="m",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_endpoints_report_counters_health_and_readiness():
    clock = Clock()
    telemetry = Telemetry(interval=10.0, clock=clock)
    telemetry.add_forwarder(
        "influxdb",
        lambda: {
            "batches_ok": 4,
            "failures": 2,
            "retries": 3,
            "lag_records": 7,
            "points_written": 120,
            "dead_lettered": 0,
            "dropped_records": 0,
        },
    )
    telemetry.watch_models(lambda: {"host=a": 400.0})
    server = TelemetryServer(telemetry, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200  # starting, within grace
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
        telemetry.on_tick(clock.now, 0.004, [record(False), record(True, "CRITICAL"), record(True, "LOW")])
        telemetry.on_missed(2)
        telemetry.on_error("source", RuntimeError("x"))
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        text = requests.get(f"{base}/metrics", timeout=5).text
        for line in (
            "anomaly_detector_ticks_total 1.0",
            "anomaly_detector_points_scored_total 3.0",
            'anomaly_detector_anomalies_total{severity="CRITICAL"} 1.0',
            'anomaly_detector_anomalies_total{severity="LOW"} 1.0',
            "anomaly_detector_missed_ticks_total 2.0",
            'anomaly_detector_errors_total{kind="source"} 1.0',
            'anomaly_detector_writes_total{result="success",sink="influxdb"} 4.0',
            'anomaly_detector_writes_total{result="failure",sink="influxdb"} 2.0',
            'anomaly_detector_write_retries_total{sink="influxdb"} 3.0',
            'anomaly_detector_spool_depth_records{sink="influxdb"} 7.0',
            'anomaly_detector_model_age_seconds{series="host=a"} 600.0',
            "anomaly_detector_tick_duration_seconds_count 1.0",
        ):
            assert line in text, line
        clock.now += 31.0  # three intervals (at least 30 s) without a tick: stalled
        response = requests.get(f"{base}/healthz", timeout=5)
        assert response.status_code == 503 and response.json()["status"] == "stalled"
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.close()
