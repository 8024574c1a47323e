"""Line protocol, the InfluxDB writers and the forwarder, against real VictoriaMetrics and InfluxDB 1.x.

VictoriaMetrics stands in for InfluxDB 2.x on the v2 write API (/api/v2/write): each field becomes the
metric `<measurement>_<field>`, each tag a label. InfluxDB 1.6 is read back with InfluxQL.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import INFLUX_ADMIN
from pydantic import SecretStr
from servers import (
    InfluxDB1Server,
    VictoriaMetricsServer,
    free_port,
    influx_write,
    unique_name,
    vm_export,
    vm_force_flush,
    vm_wait_for_export,
)
from support.lineproto_oracle import format_line

from core.config import InfluxSettings
from core.errors import RetryableWriteError, SinkError, WriteAuthError, WriteRejectedError
from core.records import ScoredRecord
from core.sinks.forwarder import Forwarder, ForwarderEvent
from core.sinks.influx import (
    InfluxV1Writer,
    InfluxV2Writer,
    build_forwarder,
    classify_status,
)
from core.sinks.lineproto import (
    ANOMALY_FIELDS,
    CPU_FIELDS,
    METRIC_FIELDS,
    SCHEMA,
    encode_record,
    encode_records,
)
from core.sinks.wal import MetricsLog

servers_test = pytest.mark.servers
REPO = Path(__file__).resolve().parents[1]
T0 = 1_760_000_000  # 2025-10-09, whole seconds: ms timestamps are T0*1000 + i*1000
WEEK = 7 * 86400


def rec(
    i: int, host: str, *, t0: float = T0, severity: str = "normal", value: float | None = None
) -> ScoredRecord:
    """Return a record at t0 + i seconds whose values encode i."""
    return ScoredRecord(
        ts=t0 + i,
        series=f"host={host}",
        labels={"host": host},
        host=host,
        source="test",
        value=float(i),
        yhat=50.0,
        lower=40.0,
        upper=60.0,
        score=i / 10,
        is_anomaly=i % 2 == 1,
        severity=severity,
        confidence=0.9,
        threshold=1.0,
        model="profile",
    )


def metric_rec(i: int, host: str, metric: str, **kwargs: Any) -> ScoredRecord:
    """Return ``rec(i, host)`` as a series of ``metric`` (the ``metric`` label first, as the source does)."""
    base = rec(i, host, **kwargs)
    labels = {"metric": metric, "host": host}
    return dataclasses.replace(base, series=f"metric={metric},host={host}", labels=labels)


def records(n: int, host: str, start: int = 0, **kwargs: Any) -> list[ScoredRecord]:
    return [rec(i, host, **kwargs) for i in range(start, start + n)]


def append_ticks(log: MetricsLog, recs: list[ScoredRecord], tick: int = 10) -> None:
    for first in range(0, len(recs), tick):
        log.append(recs[first : first + tick])


def forwarder(log: MetricsLog, writer: Any, **kwargs: Any) -> Forwarder:
    """Return a forwarder with test timings: short linger and backoffs."""
    options: dict[str, Any] = {
        "batch_size": 100,
        "flush_interval": 0.02,
        "initial_backoff": 0.05,
        "max_backoff": 0.2,
    }
    options.update(kwargs)
    return Forwarder(log, writer, "influxdb", **options)


def v2_writer(vm: VictoriaMetricsServer, **kwargs: Any) -> InfluxV2Writer:
    return InfluxV2Writer(vm.url, "test-token", "org", "bucket", **{"timeout": 2.0, **kwargs})


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[MetricsLog]:
    log = MetricsLog(tmp_path / "logs", segment_bytes=64 * 1024, max_bytes=64 * 1024 * 1024, fsync=False)
    yield log
    log.close()


@pytest.fixture
def started() -> Iterator[Callable[[Forwarder], Forwarder]]:
    """Start forwarders and close them at teardown (without waiting for unreachable servers)."""
    running: list[Forwarder] = []

    def start(fwd: Forwarder) -> Forwarder:
        running.append(fwd)
        return fwd.start()

    yield start
    for fwd in running:
        fwd.close(timeout=0.5)


def vm_counts(url: str, host: str, expected: int | None = None) -> dict[tuple[str, str], list[float]]:
    """Return {(metric name, metric_type or severity): sorted timestamps} for one host's series."""
    match = f'{{__name__=~"cpu_metrics_.+|anomaly_detection_.+",host="{host}"}}'
    if expected:
        vm_wait_for_export(url, match, min_samples=expected, timeout=15)
    vm_force_flush(url)
    out: dict[tuple[str, str], list[float]] = {}
    for series in vm_export(url, match):
        kind = series.labels.get("metric_type") or series.labels.get("severity", "")
        out.setdefault((series.name, kind), []).extend(series.timestamps)
    return {key: sorted(ts) for key, ts in out.items()}


def assert_exactly_once_in_vm(url: str, host: str, n: int, start: int = 0) -> None:
    """Every field of every record is in VictoriaMetrics exactly once."""
    got = vm_counts(url, host, expected=6 * n)
    want = [(T0 + i) * 1000 for i in range(start, start + n)]
    assert sorted(got) == [
        ("anomaly_detection_anomaly_score", "normal"),
        ("anomaly_detection_confidence", "normal"),
        ("anomaly_detection_is_anomaly", "normal"),
        ("anomaly_detection_threshold", "normal"),
        ("cpu_metrics_cpu_usage", "actual"),
        ("cpu_metrics_cpu_usage", "forecasted"),
        ("cpu_metrics_yhat_lower", "forecasted"),
        ("cpu_metrics_yhat_upper", "forecasted"),
    ]
    for key, timestamps in got.items():
        assert timestamps == want, f"{key}: {len(timestamps)} samples, want {n} (duplicates or gaps)"


# -- line protocol (no server) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "line"),
    [
        ("cpu", {"host": "a"}, {"v": 1.5}, "cpu,host=a v=1.5 7"),
        ("cpu load", {}, {"v": 1.0}, "cpu\\ load v=1.0 7"),
        ("cpu,x", {}, {"v": 1.0}, "cpu\\,x v=1.0 7"),
        ("cpu=x", {}, {"v": 1.0}, "cpu=x v=1.0 7"),  # '=' needs no escape in a measurement
        ("m", {"host": "web 01"}, {"v": 1.0}, "m,host=web\\ 01 v=1.0 7"),
        ("m", {"host": "a,b=c"}, {"v": 1.0}, "m,host=a\\,b\\=c v=1.0 7"),
        ("m", {"tag key": "x"}, {"v": 1.0}, "m,tag\\ key=x v=1.0 7"),
        ("m", {"k=1": "x"}, {"v": 1.0}, "m,k\\=1=x v=1.0 7"),
        ("m", {"h": "line\nbreak\ttab"}, {"v": 1.0}, "m,h=line\\nbreak\\ttab v=1.0 7"),
        ("m", {"b": "2", "a": "1"}, {"v": 1.0}, "m,a=1,b=2 v=1.0 7"),  # tags sorted
        ("m", {"empty": ""}, {"v": 1.0}, "m v=1.0 7"),  # no empty tag values in line protocol
        ("m", {}, {"field key": 1.0}, "m field\\ key=1.0 7"),
        ("m", {}, {"s": 'say "hi"'}, 'm s="say \\"hi\\"" 7'),
        ("m", {}, {"s": "back\\slash"}, 'm s="back\\\\slash" 7'),
        ("m", {}, {"s": "a, b=c d"}, 'm s="a, b=c d" 7'),  # inside quotes nothing else is escaped
        ("m", {}, {"b": True, "c": False}, "m b=true,c=false 7"),
        ("m", {}, {"i": 3}, "m i=3i 7"),
        ("m", {}, {"f": 0.1 + 0.2}, "m f=0.30000000000000004 7"),  # repr precision
        ("m", {}, {"f": 1e-7, "g": 1e22}, "m f=1e-07,g=1e+22 7"),
        ("m", {}, {"f": 3.0}, "m f=3.0 7"),
        ("m", {}, {"nan": math.nan, "inf": math.inf, "none": None, "v": 2.0}, "m v=2.0 7"),
        ("m", {}, {"nan": math.nan}, None),  # no field left: no point
    ],
)
def test_format_line_escapes_and_omits(
    measurement: str, tags: dict[str, str], fields: dict[str, object], line: str | None
) -> None:
    assert format_line(measurement, tags, fields, 7) == line


def test_record_becomes_the_three_points_of_the_schema() -> None:
    record = rec(3, "web-01", t0=1_700_000_000.1234)
    assert encode_record(record) == [
        "cpu_metrics,host=web-01,metric=cpu,metric_type=actual,source=test cpu_usage=3.0 1700000003123",
        "cpu_metrics,host=web-01,metric=cpu,metric_type=forecasted,source=test "
        "cpu_usage=50.0,yhat_lower=40.0,yhat_upper=60.0 1700000003123",
        "anomaly_detection,host=web-01,metric=cpu,severity=normal "
        "is_anomaly=true,anomaly_score=0.3,confidence=0.9,threshold=1.0 1700000003123",
    ]


def test_other_metrics_go_to_metric_values_tagged_with_their_metric() -> None:
    record = metric_rec(3, "web-01", "memory_used", t0=1_700_000_000.1234)
    assert encode_record(record) == [
        "metric_values,host=web-01,metric=memory_used,metric_type=actual,source=test value=3.0 1700000003123",
        "metric_values,host=web-01,metric=memory_used,metric_type=forecasted,source=test "
        "value=50.0,yhat_lower=40.0,yhat_upper=60.0 1700000003123",
        "anomaly_detection,host=web-01,metric=memory_used,severity=normal "
        "is_anomaly=true,anomaly_score=0.3,confidence=0.9,threshold=1.0 1700000003123",
    ]
    # The same host under two metrics: distinct series in every measurement.
    cpu, other = encode_record(rec(3, "web-01")), encode_record(record)
    assert all(a.split(" ")[0] != b.split(" ")[0] for a, b in zip(cpu, other, strict=True))


def test_nan_fields_and_empty_tags_are_left_out() -> None:
    record = ScoredRecord(
        ts=1.0,
        series="s",
        labels={},
        host="h x",
        source="",
        value=math.nan,
        yhat=math.nan,
        lower=math.nan,
        upper=math.nan,
        score=math.nan,
        is_anomaly=False,
        severity="",
        confidence=math.nan,
        threshold=2.0,
        model="",
    )
    assert encode_record(record) == [
        "anomaly_detection,host=h\\ x,metric=cpu is_anomaly=false,threshold=2.0 1000"
    ]
    assert encode_records([record, record]) == encode_record(record) * 2


@pytest.mark.parametrize(
    ("metric", "measurement", "field"),
    [
        (None, "cpu_metrics", "cpu_usage"),  # no metric label: CPU, the seed schema
        ("cpu", "cpu_metrics", "cpu_usage"),
        ("memory_used", "metric_values", "value"),
        ("net rx,dev=eth0", "metric_values", "value"),  # a tag value that needs escaping
    ],
)
def test_generic_and_fast_encoders_agree(metric: str | None, measurement: str, field: str) -> None:
    host = "db 1,rack=2"
    record = rec(5, host, severity="high") if metric is None else metric_rec(5, host, metric, severity="high")
    fast = encode_record(record)
    ts = round(record.ts * 1000)
    tag = metric or "cpu"
    slow = [
        format_line(
            measurement,
            {"host": record.host, "metric": tag, "metric_type": "actual", "source": "test"},
            {field: record.value},
            ts,
        ),
        format_line(
            measurement,
            {"host": record.host, "metric": tag, "metric_type": "forecasted", "source": "test"},
            {field: record.yhat, "yhat_lower": record.lower, "yhat_upper": record.upper},
            ts,
        ),
        format_line(
            "anomaly_detection",
            {"host": record.host, "metric": tag, "severity": "high"},
            {"is_anomaly": True, "anomaly_score": 0.5, "confidence": 0.9, "threshold": 1.0},
            ts,
        ),
    ]
    assert fast == slow


def test_schema_constants_name_what_is_written() -> None:
    from core.quality import QualityRow
    from core.sinks.lineproto import encode_quality

    quality = QualityRow(1.0, "host=h", "cpu", "h", 1.0, 0.5, 0, 0.5, False)
    lines = encode_record(rec(1, "h")) + encode_record(metric_rec(1, "h", "latency_p95"))
    lines += encode_quality([quality])
    assert {line.split(",")[0] for line in lines} == set(SCHEMA)
    for line in lines:
        head, fields, _ = line.split(" ")
        measurement, *tags = head.split(",")
        tag_keys, field_keys = SCHEMA[measurement]
        assert {t.split("=")[0] for t in tags} <= set(tag_keys)
        assert {f.split("=")[0] for f in fields.split(",")} <= set(field_keys)
    assert set(CPU_FIELDS) == {"cpu_usage", "yhat_lower", "yhat_upper"}
    assert set(METRIC_FIELDS) == {"value", "yhat_lower", "yhat_upper"}
    assert set(ANOMALY_FIELDS) == {"is_anomaly", "anomaly_score", "confidence", "threshold"}


@pytest.mark.parametrize(
    ("status", "kind", "slow"),
    [
        (400, WriteRejectedError, False),
        (413, WriteRejectedError, False),
        (422, WriteRejectedError, False),
        (401, WriteAuthError, True),
        (403, WriteAuthError, True),
        (404, RetryableWriteError, True),
        (408, RetryableWriteError, False),
        (429, RetryableWriteError, False),
        (500, RetryableWriteError, False),
        (503, RetryableWriteError, False),
    ],
)
def test_http_status_classes(status: int, kind: type, slow: bool) -> None:
    error = classify_status(status, "db", "detail")
    assert type(error) is kind
    assert error.long_backoff is slow
    assert str(error) == f"db: HTTP {status} detail"


# -- the factory ------------------------------------------------------------------------------------


def test_build_forwarder_without_v2_token_writes_unauthenticated(wal: MetricsLog) -> None:
    # VictoriaMetrics (and auth-less proxies) take the v2 write API without a token; InfluxDB 2.x
    # would answer 401, which is retried with the long backoff and logged naming INFLUXDB_TOKEN.
    fwd = build_forwarder(InfluxSettings(url="http://127.0.0.1:8086", api="v2"), wal)
    assert isinstance(fwd.writer, InfluxV2Writer)


def test_build_forwarder_refuses_a_bad_url(wal: MetricsLog) -> None:
    with pytest.raises(SinkError, match="is not an http"):
        build_forwarder(InfluxSettings(url="localhost:8086", token=SecretStr("t")), wal)


def test_build_forwarder_picks_the_api(wal: MetricsLog) -> None:
    v2 = build_forwarder(InfluxSettings(url="http://127.0.0.1:1", token=SecretStr("s3cret-token")), wal)
    assert isinstance(v2.writer, InfluxV2Writer)
    assert "s3cret" not in repr(v2) and "s3cret" not in v2.writer.description
    settings = InfluxSettings(url="http://127.0.0.1:1", api="v1", username="u", password=SecretStr("pw"))
    v1 = build_forwarder(settings, MetricsLog(wal.dir / "other"), name="influxdb")
    assert isinstance(v1.writer, InfluxV1Writer) and v1.batch_size == 5000
    with pytest.raises(SinkError, match="INFLUXDB_PASSWORD"):
        build_forwarder(InfluxSettings(url="http://127.0.0.1:1", api="v1", username="u"), wal, name="x")


# -- faults a real server cannot be made to produce ------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Yield a port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_server_that_never_answers_is_a_retryable_timeout(silent_port: int, api: str) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    writer = (
        InfluxV1Writer(url, "db", timeout=0.3)
        if api == "v1"
        else InfluxV2Writer(url, "t", "o", "b", timeout=0.3)
    )
    started = time.monotonic()
    with pytest.raises(RetryableWriteError) as caught:
        writer.write(["m v=1 1"])
    assert time.monotonic() - started < 2
    assert not isinstance(caught.value, WriteAuthError) and caught.value.status is None


def parked_sleep(delays: list[float], count: int, parked: threading.Event, release: threading.Event):
    """Return a sleep that records delays and, after `count` of them, parks until released."""

    def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == count:
            parked.set()
            release.wait(10)

    return sleep


def test_connection_refused_is_retried_with_exponential_backoff(wal: MetricsLog) -> None:
    delays: list[float] = []
    parked, release = threading.Event(), threading.Event()
    writer = InfluxV2Writer(f"http://127.0.0.1:{free_port()}", "t", "o", "b", timeout=1)
    fwd = forwarder(
        wal,
        writer,
        initial_backoff=0.5,
        max_backoff=4.0,
        sleep=parked_sleep(delays, 8, parked, release),
        random_fraction=lambda: 1.0,
    )
    wal.append(records(3, "h"))
    fwd.start()
    try:
        assert parked.wait(10)
        assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
        assert fwd.failures == 8 and fwd.lag_records == 3
        assert fwd.last_error is not None and "Connection refused" in fwd.last_error
    finally:
        release.set()
        fwd.close(timeout=0)
    assert not fwd.running


def test_jitter_keeps_delays_between_half_and_full(wal: MetricsLog) -> None:
    delays: list[float] = []
    parked, release = threading.Event(), threading.Event()
    writer = InfluxV2Writer(f"http://127.0.0.1:{free_port()}", "t", "o", "b", timeout=1)
    fwd = forwarder(
        wal,
        writer,
        initial_backoff=1.0,
        max_backoff=8.0,
        sleep=parked_sleep(delays, 4, parked, release),
        random_fraction=lambda: 0.0,
    )
    wal.append(records(1, "h"))
    fwd.start()
    try:
        assert parked.wait(10)
        assert delays == [0.5, 1.0, 2.0, 4.0]
    finally:
        release.set()
        fwd.close(timeout=0)


# -- VictoriaMetrics through the v2 API -------------------------------------------------------------


@servers_test
def test_v2_write_reaches_victoria_metrics_with_the_schema(
    victoria_metrics: VictoriaMetricsServer, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    host = unique_name("host")
    n = 250
    events: list[ForwarderEvent] = []
    fwd = started(forwarder(wal, v2_writer(victoria_metrics), on_event=events.append))
    append_ticks(wal, records(n, host))
    assert fwd.flush(15)

    assert_exactly_once_in_vm(victoria_metrics.url, host, n)
    [actual] = vm_export(victoria_metrics.url, f'cpu_metrics_cpu_usage{{host="{host}",metric_type="actual"}}')
    assert actual.labels == {"host": host, "metric": "cpu", "metric_type": "actual", "source": "test"}
    assert actual.values == [float(i) for i in range(n)]
    [flag] = vm_export(victoria_metrics.url, f'anomaly_detection_is_anomaly{{host="{host}"}}')
    assert flag.labels == {"host": host, "metric": "cpu", "severity": "normal"}
    assert flag.values == [i % 2 for i in range(n)]  # booleans become 1/0
    assert (fwd.records_written, fwd.points_written, fwd.lag_records) == (n, 3 * n, 0)
    assert fwd.batches_ok == len([e for e in events if e.kind == "written"]) >= 3  # batch_size 100
    assert all(e.latency is not None and e.latency > 0 for e in events)
    stats = fwd.stats()
    assert stats["points_written"] == 3 * n and stats["lag_records"] == stats["lag_bytes"] == 0
    assert stats["write_latency_mean_seconds"] > 0


@servers_test
def test_v2_other_metrics_reach_victoria_metrics_tagged_with_their_metric(
    victoria_metrics: VictoriaMetricsServer, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    host, n = unique_name("host"), 20
    fwd = started(forwarder(wal, v2_writer(victoria_metrics)))
    wal.append(records(n, host) + [metric_rec(i, host, "memory_used") for i in range(n)])
    assert fwd.flush(15)

    both = f'{{__name__=~"cpu_metrics_cpu_usage|metric_values_value",host="{host}",metric_type="actual"}}'
    got = {s.labels["metric"]: s for s in vm_wait_for_export(victoria_metrics.url, both, min_samples=2 * n)}
    assert set(got) == {"cpu", "memory_used"}
    assert got["cpu"].name == "cpu_metrics_cpu_usage" and got["memory_used"].name == "metric_values_value"
    assert got["memory_used"].labels == {
        "host": host,
        "metric": "memory_used",
        "metric_type": "actual",
        "source": "test",
    }
    assert got["memory_used"].values == [float(i) for i in range(n)]
    band = vm_export(victoria_metrics.url, f'{{__name__=~"metric_values_yhat_.+",host="{host}"}}')
    assert sorted(s.name for s in band) == ["metric_values_yhat_lower", "metric_values_yhat_upper"]
    flags = vm_export(victoria_metrics.url, f'anomaly_detection_is_anomaly{{host="{host}"}}')
    assert sorted(s.labels["metric"] for s in flags) == ["cpu", "memory_used"]


@servers_test
def test_tag_escaping_round_trips_through_victoria_metrics(
    victoria_metrics: VictoriaMetricsServer, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    host = unique_name("web 01,rack=r1") + "=x y"
    fwd = started(forwarder(wal, v2_writer(victoria_metrics)))
    wal.append([rec(1, host)])
    assert fwd.flush(10)
    vm_force_flush(victoria_metrics.url)
    selector = f'cpu_metrics_cpu_usage{{host={json.dumps(host)},metric_type="actual"}}'
    [series] = vm_wait_for_export(victoria_metrics.url, selector)
    assert series.labels["host"] == host and series.values == [1.0]


@servers_test
def test_victoria_metrics_keeps_duplicate_samples_so_we_must_not_send_any(
    victoria_metrics: VictoriaMetricsServer,
) -> None:
    host = unique_name("dup")
    writer = v2_writer(victoria_metrics)
    lines = encode_records(records(3, host))
    writer.write(lines)
    writer.write(lines)  # the same batch again, as a retry after a lost acknowledgement would
    got = vm_counts(victoria_metrics.url, host, expected=2 * 6 * 3)
    assert got[("cpu_metrics_cpu_usage", "actual")] == sorted([(T0 + i) * 1000 for i in range(3)] * 2)


@servers_test
def test_writes_ignore_that_victoria_metrics_fails_influxdbs_health_check(
    victoria_metrics: VictoriaMetricsServer, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=victoria_metrics.url, token="t", org="o") as client:
        with pytest.warns(DeprecationWarning):
            health = client.health()
    assert health.status == "fail"  # what made the old system call it "down"
    host = unique_name("health")
    fwd = started(forwarder(wal, v2_writer(victoria_metrics)))
    wal.append(records(5, host))
    assert fwd.flush(10)
    assert_exactly_once_in_vm(victoria_metrics.url, host, 5)


@servers_test
def test_outage_keeps_everything_and_delivers_it_once_after_restart(
    victoria_metrics_fresh: VictoriaMetricsServer,
    wal: MetricsLog,
    started: Callable[[Forwarder], Forwarder],
) -> None:
    vm = victoria_metrics_fresh
    host = unique_name("outage")
    events: list[ForwarderEvent] = []
    fwd = started(forwarder(wal, v2_writer(vm, timeout=1.0), batch_size=50, on_event=events.append))
    append_ticks(wal, records(100, host))
    assert fwd.flush(10)

    vm.stop()
    append_ticks(wal, records(400, host, start=100))
    deadline = time.monotonic() + 10
    while fwd.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fwd.failures >= 3
    # Bounded memory: one batch in flight, the rest stays on disk in the log.
    in_flight = fwd._batch
    assert in_flight is not None and len(in_flight.records) <= 50
    assert fwd.lag_records == 400
    assert not fwd.flush(0.2)

    vm.start()
    assert fwd.flush(20)
    assert_exactly_once_in_vm(vm.url, host, 500)
    kinds = Counter(e.kind for e in events)
    assert kinds["failed"] == fwd.failures >= 3 and kinds["written"] == fwd.batches_ok
    assert fwd.records_written == 500


@servers_test
def test_database_down_from_the_start(
    victoria_metrics_fresh: VictoriaMetricsServer,
    wal: MetricsLog,
    started: Callable[[Forwarder], Forwarder],
) -> None:
    vm = victoria_metrics_fresh
    vm.stop()
    host = unique_name("cold")
    fwd = started(forwarder(wal, v2_writer(vm, timeout=1.0)))
    append_ticks(wal, records(120, host))
    deadline = time.monotonic() + 10
    while fwd.failures < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fwd.failures >= 2 and fwd.records_written == 0

    vm.start()
    assert fwd.flush(20)
    assert_exactly_once_in_vm(vm.url, host, 120)


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from core.records import ScoredRecord
    from core.sinks.forwarder import Forwarder
    from core.sinks.influx import InfluxV2Writer
    from core.sinks.wal import MetricsLog

    def rec(i):
        return ScoredRecord(ts={t0} + i, series="s", labels={{}}, host={host!r}, source="test",
                            value=float(i), yhat=50.0, lower=40.0, upper=60.0, score=i / 10,
                            is_anomaly=i % 2 == 1, severity="normal", confidence=0.9, threshold=1.0,
                            model="profile")

    log = MetricsLog({logs!r}, segment_bytes=16384, max_bytes=1 << 26, fsync=True)
    writer = InfluxV2Writer({url!r}, "t", "o", "b", timeout=1.0)
    Forwarder(log, writer, "influxdb", batch_size=20, flush_interval=0.01, initial_backoff=0.02,
              max_backoff=0.1).start()
    for first in range(0, {n}, 7):
        log.append([rec(i) for i in range(first, min({n}, first + 7))])
        print(min({n}, first + 7), flush=True)
        time.sleep({pause})
    print("done", flush=True)
    time.sleep(60)
    """
)


def run_child(tmp_path: Path, url: str, host: str, n: int, pause: float) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    logs = str(tmp_path / "logs")
    script.write_text(_CHILD.format(repo=str(REPO), t0=T0, host=host, logs=logs, url=url, n=n, pause=pause))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)


@servers_test
def test_kill_9_while_the_database_is_down_loses_nothing(
    victoria_metrics_fresh: VictoriaMetricsServer, tmp_path: Path, started: Callable[[Forwarder], Forwarder]
) -> None:
    vm = victoria_metrics_fresh
    vm.stop()
    host = unique_name("kill")
    child = run_child(tmp_path, vm.url, host, n=300, pause=0.0)
    assert child.stdout is not None
    try:
        assert child.stdout.readline()  # the first tick is logged ...
        while child.stdout.readline().strip() != "done":
            pass
        time.sleep(0.3)  # ... and the forwarder is retrying
    finally:
        child.kill()  # SIGKILL: no flush, no close, no atexit
        child.wait()

    vm.start()
    log = MetricsLog(tmp_path / "logs", segment_bytes=16384, max_bytes=1 << 26)
    fwd = started(forwarder(log, v2_writer(vm)))
    assert fwd.lag_records == 300
    assert fwd.flush(20)
    assert_exactly_once_in_vm(vm.url, host, 300)


@servers_test
def test_kill_9_in_mid_stream_delivers_every_scored_record(
    victoria_metrics: VictoriaMetricsServer, tmp_path: Path, started: Callable[[Forwarder], Forwarder]
) -> None:
    host = unique_name("midkill")
    child = run_child(tmp_path, victoria_metrics.url, host, n=3000, pause=0.002)
    assert child.stdout is not None
    scored = 0
    try:
        while scored < 700:  # ticks are being appended and forwarded right now
            scored = int(child.stdout.readline())
    finally:
        child.kill()
        child.wait()

    log = MetricsLog(tmp_path / "logs", segment_bytes=16384, max_bytes=1 << 26)
    fwd = started(forwarder(log, v2_writer(victoria_metrics)))
    assert fwd.flush(20)
    got = vm_counts(victoria_metrics.url, host, expected=scored)[("cpu_metrics_cpu_usage", "actual")]
    # Every scored record arrived; a kill between the acknowledgement and the cursor commit may
    # resend one batch (at least once), and VictoriaMetrics without dedup keeps such a duplicate.
    distinct = sorted(set(got))
    assert distinct == [(T0 + i) * 1000 for i in range(len(distinct))]
    assert len(distinct) >= scored
    assert len(got) - len(distinct) <= 20


@servers_test
def test_v2_auth_failure_names_the_token_setting_and_keeps_the_data(
    start_server: Any, tmp_path: Path, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    class AuthVM(VictoriaMetricsServer):
        ready_statuses = frozenset({200, 401})

    vm = start_server(AuthVM(tmp_path / "vm", extra_args=["-httpAuth.username=u", "-httpAuth.password=p"]))
    writer = InfluxV2Writer(vm.url, "s3cret-token", "org", "bucket", timeout=2)
    with pytest.raises(WriteAuthError) as caught:
        writer.write(["m v=1 1"])
    message = str(caught.value)
    assert "HTTP 401" in message and "INFLUXDB_TOKEN" in message and "s3cret" not in message

    events: list[ForwarderEvent] = []
    fwd = started(forwarder(wal, writer, max_backoff=0.1, on_event=events.append))
    wal.append(records(5, "h"))
    deadline = time.monotonic() + 5
    while fwd.failures < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fwd.failures >= 2 and fwd.lag_records == 5 and fwd.dead_lettered == 0
    assert {e.delay for e in events if e.kind == "failed"} == {0.1}  # the long backoff, at once


# -- InfluxDB 1.x through /write -------------------------------------------------------------------


def influx_count(server: InfluxDB1Server, db: str, q: str) -> dict[str, int]:
    body = server.query(q, db=db)
    [series] = body["results"][0]["series"]
    return dict(zip(series["columns"][1:], series["values"][0][1:], strict=True))


@servers_test
def test_v1_write_creates_the_database_and_reads_back_with_influxql(
    influxdb1: InfluxDB1Server, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    db, host, n = unique_name("anomaly"), "web 01,rack=1", 230
    fwd = started(forwarder(wal, InfluxV1Writer(influxdb1.url, db, timeout=5)))
    append_ticks(wal, records(n, host))
    assert fwd.flush(15)

    assert influx_count(influxdb1, db, "SELECT count(*) FROM cpu_metrics WHERE metric_type = 'actual'") == {
        "count_cpu_usage": n,
        "count_yhat_lower": None,  # actual points carry no band
        "count_yhat_upper": None,
    }
    assert influx_count(
        influxdb1, db, "SELECT count(*) FROM cpu_metrics WHERE metric_type = 'forecasted'"
    ) == {
        "count_cpu_usage": n,
        "count_yhat_lower": n,
        "count_yhat_upper": n,
    }
    assert influx_count(influxdb1, db, "SELECT count(*) FROM anomaly_detection") == {
        "count_anomaly_score": n,
        "count_confidence": n,
        "count_is_anomaly": n,
        "count_threshold": n,
    }
    body = influxdb1.query("SHOW TAG VALUES FROM cpu_metrics WITH KEY = host", db=db)
    assert body["results"][0]["series"][0]["values"] == [["host", host]]
    fields = influxdb1.query("SHOW FIELD KEYS", db=db)["results"][0]["series"]
    assert {s["name"]: dict(s["values"]) for s in fields} == {
        "anomaly_detection": {
            "anomaly_score": "float",
            "confidence": "float",
            "is_anomaly": "boolean",
            "threshold": "float",
        },
        "cpu_metrics": {"cpu_usage": "float", "yhat_lower": "float", "yhat_upper": "float"},
    }
    first = influxdb1.query(
        "SELECT * FROM cpu_metrics WHERE metric_type = 'actual' LIMIT 1", db=db, epoch="ms"
    )["results"][0]["series"][0]
    assert dict(zip(first["columns"], first["values"][0], strict=True))["time"] == T0 * 1000


@servers_test
def test_v1_other_metrics_read_back_by_metric_tag_with_influxql(
    influxdb1: InfluxDB1Server, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    db, host, n = unique_name("metrics"), "web-01", 12
    fwd = started(forwarder(wal, InfluxV1Writer(influxdb1.url, db, timeout=5)))
    wal.append(records(n, host) + [metric_rec(i, host, "net_rx_bytes") for i in range(n)])
    assert fwd.flush(15)

    tags = influxdb1.query("SHOW TAG VALUES WITH KEY = metric", db=db)["results"][0]["series"]
    assert {s["name"]: sorted(v for _, v in s["values"]) for s in tags} == {
        "anomaly_detection": ["cpu", "net_rx_bytes"],
        "cpu_metrics": ["cpu"],
        "metric_values": ["net_rx_bytes"],
    }
    fields = influxdb1.query("SHOW FIELD KEYS FROM metric_values", db=db)["results"][0]["series"]
    assert dict(fields[0]["values"]) == {"value": "float", "yhat_lower": "float", "yhat_upper": "float"}
    # What a Grafana variable $metric does: one query over both measurements, selected by the tag.
    for metric, measurement in (("cpu", "cpu_metrics"), ("net_rx_bytes", "metric_values")):
        q = (
            "SELECT * FROM /^(cpu_metrics|metric_values)$/ "
            f"WHERE metric = '{metric}' AND metric_type = 'forecasted'"
        )
        [series] = influxdb1.query(q, db=db)["results"][0]["series"]
        assert series["name"] == measurement and len(series["values"]) == n
    q = "SELECT count(is_anomaly) FROM anomaly_detection WHERE metric = 'net_rx_bytes'"
    assert influx_count(influxdb1, db, q) == {"count": n}


@servers_test
def test_v1_with_authentication(
    influxdb1_auth: InfluxDB1Server, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    user, password = INFLUX_ADMIN
    db = unique_name("authdb")
    wrong = InfluxV1Writer(influxdb1_auth.url, db, username=user, password="wrong-pw", timeout=5)
    with pytest.raises(WriteAuthError) as caught:
        wrong.write(["m v=1 1"])
    assert "HTTP 401" in str(caught.value) and "INFLUXDB_PASSWORD" in str(caught.value)
    assert "wrong-pw" not in str(caught.value)

    writer = InfluxV1Writer(influxdb1_auth.url, db, username=user, password=password, timeout=5)
    fwd = started(forwarder(wal, writer))
    wal.append(records(20, "h1"))
    assert fwd.flush(10)
    assert influx_count(influxdb1_auth, db, "SELECT count(is_anomaly) FROM anomaly_detection") == {
        "count": 20
    }


@servers_test
def test_rejected_batch_goes_to_the_dead_letter_file_and_forwarding_continues(
    influxdb1: InfluxDB1Server, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    db, host = unique_name("poison"), "h1"
    influxdb1.create_database(db)
    # Someone wrote `threshold` as a string in this shard (a week): our floats now conflict -> HTTP 400.
    influx_write(influxdb1.url, db, f'anomaly_detection,host=other threshold="high" {T0}')
    week_b = T0 + 5 * WEEK
    fwd = started(forwarder(wal, InfluxV1Writer(influxdb1.url, db, timeout=5), batch_size=10))
    wal.append(records(10, host))  # one batch in the conflicting shard
    wal.append(records(10, host, t0=week_b))  # the next batch, in another shard
    assert fwd.flush(15)

    rejected = [json.loads(line) for line in fwd.dead_letter_path.read_text().splitlines()]
    assert len(rejected) == 10 == fwd.dead_lettered
    assert {r["status"] for r in rejected} == {400}
    assert all("field type conflict" in r["error"] for r in rejected)
    assert [ScoredRecord.from_json(json.dumps(r["record"])) for r in rejected] == records(10, host)
    later = f"SELECT count(is_anomaly) FROM anomaly_detection WHERE time >= {week_b}s"
    assert influx_count(influxdb1, db, later) == {"count": 10}
    # A partial write: the conflicting points were dropped, the rest of the batch was stored.
    early = f"SELECT count(cpu_usage) FROM cpu_metrics WHERE time < {week_b}s"
    assert influx_count(influxdb1, db, early) == {"count": 20}
    assert fwd.lag_records == 0


@servers_test
def test_v1_retention_policy(influxdb1: InfluxDB1Server) -> None:
    db = unique_name("rp")
    influxdb1.create_database(db)
    influxdb1.query(f'CREATE RETENTION POLICY "short" ON "{db}" DURATION 1000w REPLICATION 1')
    InfluxV1Writer(influxdb1.url, db, retention_policy="short").write(encode_records(records(4, "h")))
    query = 'SELECT count(cpu_usage) FROM "short"."cpu_metrics"'
    assert influx_count(influxdb1, db, query) == {"count": 8}

    with pytest.raises(RetryableWriteError, match="set influxdb.retention_policy") as caught:
        InfluxV1Writer(influxdb1.url, db, retention_policy="nope").write(["m v=1 1"])
    assert caught.value.long_backoff and caught.value.status == 500


@servers_test
def test_a_failing_event_callback_does_not_stop_forwarding(
    victoria_metrics: VictoriaMetricsServer, wal: MetricsLog, started: Callable[[Forwarder], Forwarder]
) -> None:
    def broken(event: ForwarderEvent) -> None:
        raise RuntimeError("telemetry bug")

    host = unique_name("cb")
    fwd = started(forwarder(wal, v2_writer(victoria_metrics), batch_size=3, on_event=broken))
    wal.append(records(9, host))
    assert fwd.flush(10) and fwd.batches_ok == 3
    assert_exactly_once_in_vm(victoria_metrics.url, host, 9)


@servers_test
def test_close_during_an_outage_keeps_the_records_for_the_next_start(
    victoria_metrics_fresh: VictoriaMetricsServer, tmp_path: Path
) -> None:
    vm = victoria_metrics_fresh
    host = unique_name("close")
    vm.stop()
    log = MetricsLog(tmp_path / "logs", fsync=False)
    fwd = forwarder(log, v2_writer(vm, timeout=0.5)).start()
    log.append(records(30, host))
    assert fwd.close(timeout=0.3) is False
    assert not fwd.running and fwd.lag_records == 30
    log.close()

    vm.start()
    log = MetricsLog(tmp_path / "logs", fsync=False)
    fwd = forwarder(log, v2_writer(vm)).start()
    assert fwd.close(timeout=10) is True
    assert_exactly_once_in_vm(vm.url, host, 30)
