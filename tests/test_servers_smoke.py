"""Prove each server fixture starts a real server that does what the helpers in servers.py promise."""

from __future__ import annotations

import math
import smtplib
import socket
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import servers
from conftest import REQUIRE_SERVERS_ENV, require_binary
from servers import (
    CPU_BUSY_QUERY,
    AlertmanagerServer,
    InfluxDB1Server,
    NodeExporterServer,
    PrometheusServer,
    ServerStartError,
    SmtpReceiver,
    VictoriaMetricsServer,
    WebhookReceiver,
    http_request,
    prom_query,
    schedule_outage,
    unique_name,
    vm_wait_for_export,
    vm_write,
)

servers_test = pytest.mark.servers


def _healthy(server: VictoriaMetricsServer) -> bool:
    try:
        return http_request("GET", f"{server.url}/health", timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def test_require_binary_skips_on_a_laptop_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SERVERS_ENV, raising=False)
    expected = "no-such-server not found: install the Debian package pkg-x \\(apt-get install -y pkg-x\\)"
    with pytest.raises(pytest.skip.Exception, match=expected):
        require_binary("no-such-server", "pkg-x")
    monkeypatch.setenv(REQUIRE_SERVERS_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=expected):
        require_binary("no-such-server", "pkg-x")


@servers_test
def test_node_exporter_serves_cpu_seconds(node_exporter: NodeExporterServer) -> None:
    response = http_request("GET", f"{node_exporter.url}/metrics")
    assert response.status_code == 200
    assert 'node_cpu_seconds_total{cpu="0",mode="idle"}' in response.text


@servers_test
def test_prometheus_has_a_cpu_busy_sample(
    prometheus: PrometheusServer, node_exporter: NodeExporterServer
) -> None:
    result = prom_query(prometheus.url, CPU_BUSY_QUERY)
    assert [r["metric"]["instance"] for r in result] == [f"{node_exporter.host}:{node_exporter.port}"]
    busy = float(result[0]["value"][1])
    # Scrape jitter can push the idle rate a little above 1 core-second per second.
    assert math.isfinite(busy) and -10.0 <= busy <= 100.0


@servers_test
def test_victoria_metrics_names_fields_after_the_measurement_and_keeps_tags_as_labels(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    m, ts = unique_name("smoke_cpu"), int(time.time())
    vm_write(victoria_metrics.url, f"{m},host=h1,region=eu usage=12.5,idle=87.5 {ts}")
    vm_write(victoria_metrics.url, f"{m}_v1,host=h1 value=3 {ts}", api="v1", db="mydb")

    series = vm_wait_for_export(victoria_metrics.url, f'{{__name__=~"{m}.*"}}', min_samples=3)

    got = {s.name: (s.labels, s.values, s.timestamps) for s in series}
    assert got == {
        f"{m}_usage": ({"host": "h1", "region": "eu"}, [12.5], [ts * 1000]),
        f"{m}_idle": ({"host": "h1", "region": "eu"}, [87.5], [ts * 1000]),
        f"{m}_v1_value": ({"host": "h1", "db": "mydb"}, [3], [ts * 1000]),
    }


def _write_duplicate(vm: VictoriaMetricsServer) -> tuple[str, int]:
    """Write 1.5 then 7.5 for one series and timestamp, in two requests."""
    m, ts = unique_name("smoke_dup"), int(time.time())
    vm_write(vm.url, f"{m},host=h1 f=1.5 {ts}")
    vm_write(vm.url, f"{m},host=h1 f=7.5 {ts}")
    return f"{m}_f", ts


@servers_test
def test_victoria_metrics_without_dedup_keeps_both_samples_with_one_timestamp(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    name, ts = _write_duplicate(victoria_metrics)
    [series] = vm_wait_for_export(victoria_metrics.url, name, min_samples=2)
    assert sorted(series.values) == [1.5, 7.5]
    assert series.timestamps == [ts * 1000, ts * 1000]


@servers_test
def test_victoria_metrics_with_dedup_keeps_one_sample_per_timestamp(
    start_server: Any, tmp_path: Path
) -> None:
    vm = start_server(VictoriaMetricsServer(tmp_path / "vm", extra_args=["-dedup.minScrapeInterval=1ms"]))
    name, ts = _write_duplicate(vm)
    [series] = vm_wait_for_export(vm.url, name)
    assert series.timestamps == [ts * 1000]
    # Which one survives is not documented for 1.79; the last one written was kept when we looked.
    assert series.values[0] in (1.5, 7.5)


@servers_test
def test_victoria_metrics_restart_keeps_port_and_data(victoria_metrics_fresh: VictoriaMetricsServer) -> None:
    vm = victoria_metrics_fresh
    ts = int(time.time())
    vm_write(vm.url, f"restart_check,host=h1 v=42 {ts}")
    vm_wait_for_export(vm.url, "restart_check_v")
    url, pid = vm.url, vm.pid

    vm.restart()

    assert (vm.url, vm.start_count) == (url, 2)
    assert vm.pid != pid
    [series] = vm_wait_for_export(vm.url, "restart_check_v")
    assert (series.values, series.timestamps) == ([42], [ts * 1000])


@servers_test
def test_schedule_outage_stops_and_restarts_the_server(victoria_metrics_fresh: VictoriaMetricsServer) -> None:
    vm = victoria_metrics_fresh
    url = vm.url
    seen_down = False
    with schedule_outage(vm, down_at=0.2, up_at=1.0) as outage:
        deadline = time.monotonic() + 0.9
        while time.monotonic() < deadline and not seen_down:
            seen_down = not _healthy(vm)
            time.sleep(0.05)
    assert seen_down
    assert outage.stopped_at is not None and outage.started_at is not None
    assert 0.2 <= outage.stopped_at < 1.0 <= outage.started_at
    assert vm.url == url and _healthy(vm)


@servers_test
def test_schedule_outage_restores_the_server_when_the_test_body_fails(
    victoria_metrics_fresh: VictoriaMetricsServer,
) -> None:
    vm = victoria_metrics_fresh
    with pytest.raises(RuntimeError, match="test body failed"):
        with schedule_outage(vm, down_at=0.0, up_at=60.0):
            deadline = time.monotonic() + 5
            while _healthy(vm) and time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("test body failed")
    assert _healthy(vm)


@servers_test
def test_start_retries_on_another_port_when_its_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, start_server: Any, tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_ports = servers.free_ports
        handed = iter([[taken]])
        monkeypatch.setattr(servers, "free_ports", lambda n: next(handed, None) or real_free_ports(n))

        vm = start_server(VictoriaMetricsServer(tmp_path / "vm"))

        assert vm.port != taken and _healthy(vm)
        assert "address already in use" in vm.log_tail(200)


@servers_test
def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    require_binary("victoria-metrics", "victoria-metrics")
    vm = VictoriaMetricsServer(tmp_path / "vm", extra_args=["-no.such.flag"])
    with pytest.raises(ServerStartError, match=r"(?s)exited with code \d+ during startup.*no.such.flag"):
        vm.start()
    assert not vm.is_running


@servers_test
def test_influxdb1_write_then_query(influxdb1: InfluxDB1Server) -> None:
    db, ts = unique_name("smoke"), int(time.time())
    influxdb1.create_database(db)
    influxdb1.write(db, f"cpu,host=h1 usage=12.5 {ts}")
    body = influxdb1.query('SELECT "usage", "host" FROM "cpu"', db=db, epoch="s")
    [series] = body["results"][0]["series"]
    assert (series["columns"], series["values"]) == (["time", "usage", "host"], [[ts, 12.5, "h1"]])


@servers_test
def test_influxdb1_restart_keeps_port_and_data(influxdb1_fresh: InfluxDB1Server) -> None:
    influx = influxdb1_fresh
    influx.create_database("keep")
    influx.write("keep", "m v=1 1700000000")
    url = influx.url

    influx.restart()

    assert influx.url == url
    assert influx.query("SELECT v FROM m", db="keep", epoch="s")["results"][0]["series"][0]["values"] == [
        [1700000000, 1]
    ]


@servers_test
def test_influxdb1_auth_rejects_anonymous_queries(influxdb1_auth: InfluxDB1Server) -> None:
    anonymous = http_request("POST", f"{influxdb1_auth.url}/query", data={"q": "SHOW DATABASES"})
    assert anonymous.status_code == 401
    assert influxdb1_auth.query("SHOW DATABASES")["results"][0]["statement_id"] == 0


@servers_test
def test_alertmanager_delivers_an_alert_to_the_webhook(
    alertmanager: AlertmanagerServer, webhook_receiver: WebhookReceiver
) -> None:
    alertmanager.post_alerts([{"labels": {"alertname": "SmokeTest", "severity": "critical"}}])

    [request] = webhook_receiver.wait_for(1, timeout=15)

    assert (request.method, request.path) == ("POST", "/alerts")
    assert request.json["status"] == "firing"
    assert [a["labels"] for a in request.json["alerts"]] == [
        {"alertname": "SmokeTest", "severity": "critical"}
    ]


@servers_test
def test_smtp_receiver_records_a_message(smtp_receiver: SmtpReceiver) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "daemon@example.org", "ops@example.org", "Anomaly"
    message.set_content("cpu is on fire\n")
    with smtplib.SMTP(smtp_receiver.host, smtp_receiver.port, timeout=10) as client:
        client.send_message(message)

    [mail] = smtp_receiver.wait_for(1)

    assert (mail.mail_from, mail.rcpt_tos, mail.subject) == (
        "daemon@example.org",
        ["ops@example.org"],
        "Anomaly",
    )
    assert mail.body == "cpu is on fire\n"
