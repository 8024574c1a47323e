"""Fixtures that run real servers on loopback, and the policy for when a server binary is missing.

Session-scoped servers are shared: use `unique_name()` for databases and series, and never stop them.
A test that stops, restarts or reconfigures a server takes the `*_fresh` variant (its own process)
or builds one with `start_server`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from servers import (
    CPU_BUSY_QUERY,
    AlertmanagerServer,
    InfluxDB1Server,
    NodeExporterServer,
    PrometheusServer,
    ServerProcess,
    SmtpReceiver,
    VictoriaMetricsServer,
    WebhookReceiver,
    prom_wait_for,
)

REQUIRE_SERVERS_ENV = "ANOMALY_REQUIRE_SERVERS"
INFLUX_ADMIN = ("admin", "admin-password")

_S = TypeVar("_S", bound=ServerProcess)


def require_binary(binary: str, package: str) -> str:
    """Return the path of `binary`; skip the test if it is missing, or fail when CI requires servers.

    CI sets ANOMALY_REQUIRE_SERVERS=1 so that a missing package is an error, not a silent skip.
    """
    path = shutil.which(binary)
    if path is not None:
        return path
    reason = f"{binary} not found: install the Debian package {package} (apt-get install -y {package})"
    if os.environ.get(REQUIRE_SERVERS_ENV, "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; {REQUIRE_SERVERS_ENV} is set, so missing servers are errors", pytrace=False)
    pytest.skip(reason)


def _running(server: _S) -> Iterator[_S]:
    """Apply the skip policy, start `server`, yield it, and close it whatever the test did."""
    require_binary(server.binary, server.package)
    with server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every server a failed test used to its report."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, ServerProcess):
                report.sections.append((f"{name} log tail ({value.log_path})", value.log_tail()))
    return report


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[_S], _S]]:
    """Return a function that starts a server built by the test and closes it at teardown.

    E.g. `start_server(VictoriaMetricsServer(tmp_path / "vm", extra_args=["-dedup.minScrapeInterval=1ms"]))`
    """
    started: list[ServerProcess] = []

    def start(server: _S) -> _S:
        require_binary(server.binary, server.package)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.close()


@pytest.fixture(scope="session")
def node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeExporterServer]:
    """Yield a shared node_exporter; `.url` + "/metrics" serves node_cpu_seconds_total and friends."""
    yield from _running(NodeExporterServer(tmp_path_factory.mktemp("node-exporter")))


def _prometheus(workdir: Path, node_exporter: NodeExporterServer) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir, [f"{node_exporter.host}:{node_exporter.port}"])
    require_binary(server.binary, server.package)
    with server:
        # rate() needs two scrapes; tests should not have to wait for them.
        prom_wait_for(server.url, CPU_BUSY_QUERY, timeout=30)
        yield server


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, node_exporter: NodeExporterServer
) -> Iterator[PrometheusServer]:
    """Yield a shared Prometheus scraping node_exporter every 1s; CPU_BUSY_QUERY already has a sample."""
    yield from _prometheus(tmp_path_factory.mktemp("prometheus"), node_exporter)


@pytest.fixture
def prometheus_fresh(tmp_path: Path, node_exporter: NodeExporterServer) -> Iterator[PrometheusServer]:
    """Yield a Prometheus of this test's own, free to stop and restart."""
    yield from _prometheus(tmp_path / "prometheus", node_exporter)


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """Yield a shared VictoriaMetrics (no dedup); write with vm_write, read with vm_wait_for_export."""
    yield from _running(VictoriaMetricsServer(tmp_path_factory.mktemp("victoria-metrics")))


@pytest.fixture
def victoria_metrics_fresh(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    """Yield a VictoriaMetrics of this test's own, free to stop, restart and schedule_outage."""
    yield from _running(VictoriaMetricsServer(tmp_path / "victoria-metrics"))


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    """Yield a shared InfluxDB 1.x without authentication."""
    yield from _running(InfluxDB1Server(tmp_path_factory.mktemp("influxdb1")))


@pytest.fixture
def influxdb1_fresh(tmp_path: Path) -> Iterator[InfluxDB1Server]:
    """Yield an InfluxDB 1.x of this test's own (no authentication), free to stop and restart."""
    yield from _running(InfluxDB1Server(tmp_path / "influxdb1"))


@pytest.fixture(scope="session")
def influxdb1_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    """Yield a shared InfluxDB 1.x with auth enabled; `.auth` is the admin (user, password)."""
    yield from _running(InfluxDB1Server(tmp_path_factory.mktemp("influxdb1-auth"), auth=INFLUX_ADMIN))


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Yield an in-process HTTP server recording every request (`.requests`, `.wait_for(n)`)."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_receiver: WebhookReceiver) -> Iterator[AlertmanagerServer]:
    """Yield an Alertmanager of this test's own that sends every group to `webhook_receiver` after 1s.

    Function-scoped because Alertmanager keeps alerts in memory: a shared one would leak
    notifications from one test into the next.
    """
    yield from _running(AlertmanagerServer(tmp_path / "alertmanager", f"{webhook_receiver.url}/alerts"))


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """Yield an SMTP server on loopback recording every message (`.host`, `.port`, `.wait_for(n)`)."""
    with SmtpReceiver() as receiver:
        yield receiver
