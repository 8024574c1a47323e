"""PrometheusSource against a real Prometheus scraping a real node_exporter; fakes only for broken answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import requests
from servers import NodeExporterServer, PrometheusServer, free_port, http_request, prom_query
from support.http import RecordingSession

from core.config import MonitoringSettings, PrometheusSettings
from core.errors import ConfigError, SourceError, SourceUnavailable
from core.records import PointBatch, SeriesRef
from core.sources.prometheus import MAX_POINTS_PER_REQUEST, PrometheusSource
from core.timegrid import align_down, grid_times

servers = pytest.mark.servers

DEFAULT_QUERY = PrometheusSettings().query
# Its value is the evaluation time, at any past time: catch-up arithmetic is checked to the point.
CLOCK_QUERY = 'label_replace(vector(time()), "instance", "clock", "", "")'
CLOCK_ID = "instance=clock"
NOW = 1_699_999_200.0  # on the grid of every interval used with the fakes (a multiple of 3600)


def make_source(url: str, query: str = DEFAULT_QUERY, **kwargs: Any) -> PrometheusSource:
    kwargs.setdefault("interval", 1.0)
    kwargs.setdefault("session", RecordingSession())
    kwargs.setdefault("sleep", lambda seconds: None)
    return PrometheusSource(url, query, **kwargs)


def poll_until_points(source: PrometheusSource, timeout: float = 10.0) -> tuple[float, list[PointBatch]]:
    """Poll at the current time until the query has a value (rate() needs two scrapes in its window)."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.time()
        batches = source.poll(now, {})
        if batches or time.monotonic() > deadline:
            return now, batches
        time.sleep(0.25)


def failing_poll(source: PrometheusSource) -> tuple[str, float, float]:
    """Return the SourceUnavailable message of a poll, how long the poll took and how long check() took."""
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as raised:
        source.poll(time.time(), {})
    poll_seconds = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(SourceUnavailable):
        source.check()
    message = str(raised.value)
    assert "\n" not in message
    return message, poll_seconds, time.monotonic() - started


def wait_for_history(url: str, seconds: float, timeout: float = 30.0) -> None:
    """Wait until the CPU query has had a value for ``seconds`` (a fresh Prometheus has no past)."""
    deadline = time.monotonic() + timeout
    while not prom_query(url, DEFAULT_QUERY, at=time.time() - seconds):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{DEFAULT_QUERY!r} at {url} has no value {seconds:g} s back")
        time.sleep(0.5)


def raw_range(url: str, query: str, start: float, end: float) -> list[dict[str, Any]]:
    """Run a range query at step 1 s without PrometheusSource (the independent expectation)."""
    params = {"query": query, "start": str(start), "end": str(end), "step": "1"}
    body = http_request("GET", f"{url}/api/v1/query_range", params=params).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def cpu_source(prometheus: PrometheusServer) -> Iterator[PrometheusSource]:
    source = make_source(prometheus.url)
    yield source
    source.close()


# -- against the real Prometheus ----------------------------------------------------------------------


@servers
def test_poll_returns_one_grid_point_per_instance(
    cpu_source: PrometheusSource, node_exporter: NodeExporterServer
) -> None:
    now, batches = poll_until_points(cpu_source)
    assert [b.series.id for b in batches] == [f"instance={node_exporter.host}:{node_exporter.port}"]
    batch = batches[0]
    assert batch.series.host == f"{node_exporter.host}:{node_exporter.port}"
    assert batch.source == "prometheus"
    assert batch.t.tolist() == [align_down(now, 1.0)]
    assert 0.0 <= batch.y[0] <= 100.0
    assert isinstance(cpu_source._session, RecordingSession)
    url, params = cpu_source._session.sent[-1]
    assert url.endswith("/api/v1/query") and float(params["time"]) == batch.t[0]  # an instant query at T


@servers
def test_a_dead_prometheus_fails_fast_and_polling_resumes(prometheus_fresh: PrometheusServer) -> None:
    """Stopped (connection refused), then hung (SIGSTOP: accepted, never answered); timeout 1 s, retries 2."""
    sleeps: list[float] = []
    source = make_source(prometheus_fresh.url, timeout_seconds=1.0, retries=2, sleep=sleeps.append)
    assert poll_until_points(source)[1]

    prometheus_fresh.stop()
    try:
        message, poll_seconds, check_seconds = failing_poll(source)
    finally:
        prometheus_fresh.start()
    assert message.startswith(
        f"Prometheus at {prometheus_fresh.url} is unreachable: connection refused (3 attempts"
    )
    assert sleeps == [0.2, 0.4] and poll_seconds < 1.0 and check_seconds < 0.5
    assert poll_until_points(source)[1]

    sleeps.clear()
    pid = prometheus_fresh.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        message, poll_seconds, check_seconds = failing_poll(source)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert message.startswith(
        f"Prometheus at {prometheus_fresh.url} is unreachable: no answer within 1 s (2 attempts"
    )
    assert sleeps == [0.2]  # the budget (2 x timeout) left no time for a third attempt
    assert 1.5 < poll_seconds < 3.0 and check_seconds < 1.5
    assert poll_until_points(source)[1]
    assert source.failures == 4


@servers
@pytest.mark.parametrize(
    ("interval", "behind"),
    [(1.0, 30.0), (1.0, 30.4), (5.0, 30.0), (15.0, 3600.0)],
)
def test_catch_up_returns_exactly_the_missing_grid_points(
    prometheus: PrometheusServer, interval: float, behind: float
) -> None:
    source = make_source(prometheus.url, CLOCK_QUERY, interval=interval)
    end = align_down(time.time(), interval)
    last = end - behind
    [batch] = source.poll(end + 0.5 * interval, {CLOCK_ID: last})
    np.testing.assert_array_equal(batch.t, grid_times(last, end, interval))
    np.testing.assert_array_equal(batch.y, batch.t)  # the value at each point is its evaluation time
    assert source.requests == 1
    # Caught up: the next poll in the same step has nothing new; the one after has exactly one point.
    assert source.poll(end + 0.9 * interval, {CLOCK_ID: end}) == []
    [next_batch] = source.poll(end + interval, {CLOCK_ID: end})
    assert next_batch.t.tolist() == [end + interval]


@servers
def test_catch_up_of_the_cpu_query_matches_prometheus(
    cpu_source: PrometheusSource, prometheus: PrometheusServer
) -> None:
    _, [latest] = poll_until_points(cpu_source)
    wait_for_history(prometheus.url, 4.0)
    now = time.time() - 2.0  # the past: the independent query below sees the same samples
    end = align_down(now, 1.0)
    last = end - 30.0
    [batch] = cpu_source.poll(now, {latest.series.id: last})
    [expected] = raw_range(prometheus.url, DEFAULT_QUERY, last + 1.0, end)
    assert batch.t.tolist() == [float(t) for t, _ in expected["values"]]  # every point Prometheus has
    assert batch.y.tolist() == [float(v) for _, v in expected["values"]]
    assert batch.t[0] > last and batch.t[-1] == end and len(batch.t) >= 2
    assert np.all(np.diff(batch.t) == 1.0)  # increasing, no duplicates, no holes
    assert np.all((batch.y >= 0) & (batch.y <= 100))


@servers
def test_a_restarted_poll_returns_identical_points(prometheus: PrometheusServer) -> None:
    first = make_source(prometheus.url)
    _, [latest] = poll_until_points(first)
    wait_for_history(prometheus.url, 12.0)
    now = time.time() - 2.0  # the past: every sample up to the grid time has been scraped
    last_seen = {latest.series.id: align_down(now, 1.0) - 10.0}
    [before] = first.poll(now, last_seen)
    restarted = make_source(prometheus.url)
    [again] = restarted.poll(now, last_seen)
    np.testing.assert_array_equal(again.t, before.t)
    np.testing.assert_array_equal(again.y, before.y)
    [later] = restarted.poll(now + 1.5, last_seen)  # restarted a moment later: a superset
    np.testing.assert_array_equal(later.t[: len(before.t)], before.t)
    np.testing.assert_array_equal(later.y[: len(before.y)], before.y)


@servers
def test_new_series_get_only_their_latest_point_and_gone_series_are_absent(
    prometheus: PrometheusServer,
) -> None:
    query = f'{CLOCK_QUERY} or label_replace(vector(time()), "instance", "new", "", "")'
    source = make_source(prometheus.url, query, interval=5.0)
    end = align_down(time.time(), 5.0)
    batches = source.poll(end, {CLOCK_ID: end - 20.0, "instance=gone": end - 100.0})
    assert {b.series.id: b.t.tolist() for b in batches} == {
        CLOCK_ID: [end - 15.0, end - 10.0, end - 5.0, end],
        "instance=new": [end],
    }


@servers
def test_catch_up_stops_at_max_catchup(prometheus: PrometheusServer) -> None:
    source = make_source(prometheus.url, CLOCK_QUERY, interval=60.0, max_catchup=3600.0)
    end = align_down(time.time(), 60.0)
    [batch] = source.poll(end, {CLOCK_ID: end - 2 * 86400.0})
    np.testing.assert_array_equal(batch.t, end - 3600.0 + 60.0 * np.arange(1, 61))
    no_catchup = make_source(prometheus.url, CLOCK_QUERY, interval=60.0, max_catchup=0.0)
    [only_latest] = no_catchup.poll(end, {CLOCK_ID: end - 600.0})
    assert only_latest.t.tolist() == [end]


@servers
def test_a_long_catch_up_is_chunked_under_the_point_limit(prometheus: PrometheusServer) -> None:
    session = RecordingSession()
    source = make_source(prometheus.url, CLOCK_QUERY, session=session)
    end = align_down(time.time(), 1.0)
    [batch] = source.poll(end, {CLOCK_ID: end - 25_000.0})
    np.testing.assert_array_equal(batch.t, grid_times(end - 25_000.0, end, 1.0))
    np.testing.assert_array_equal(batch.y, batch.t)
    steps = [
        (float(p["end"]) - float(p["start"])) / float(p["step"]) + 1
        for url, p in session.sent
        if "range" in url
    ]
    assert len(steps) == 3 and max(steps) <= MAX_POINTS_PER_REQUEST < 11_000


@servers
def test_nan_and_inf_are_dropped_and_counted(prometheus: PrometheusServer) -> None:
    query = (
        'label_replace(vector(NaN), "k", "nan", "", "") or label_replace(vector(+Inf), "k", "inf", "", "")'
        ' or label_replace(vector(-Inf), "k", "neg", "", "") or label_replace(vector(7), "k", "ok", "", "")'
    )
    source = make_source(prometheus.url, query)
    batches = source.poll(time.time(), {})
    assert [(b.series.id, b.y.tolist()) for b in batches] == [("k=ok", [7.0])]
    assert source.dropped_nan == 3


@servers
def test_history_returns_the_span_on_the_grid(
    cpu_source: PrometheusSource, prometheus: PrometheusServer
) -> None:
    _, [latest] = poll_until_points(cpu_source)
    wait_for_history(prometheus.url, 5.0)
    now = time.time()
    end = align_down(now, 1.0)
    span = cpu_source.history(latest.series, end - 20.0, end)
    assert span.series == latest.series
    assert 2 <= len(span.t) <= 21
    assert span.t[0] >= end - 20.0 and span.t[-1] == end
    assert np.all(np.diff(span.t) == 1.0)
    assert np.all((span.y >= 0) & (span.y <= 100))
    future = cpu_source.history(latest.series, end - 5.0, end + 3600.0)
    assert future.t[-1] <= time.time()  # never Prometheus' extrapolation of the last sample
    other = SeriesRef.from_labels({"instance": "elsewhere:9100"}, "instance")
    assert len(cpu_source.history(other, end - 20.0, end).t) == 0


@servers
def test_history_over_a_long_span_takes_a_coarser_step(prometheus: PrometheusServer) -> None:
    source = make_source(prometheus.url, CLOCK_QUERY, history_max_points=1000)
    end = align_down(time.time(), 1.0)
    ref = SeriesRef.from_labels({"instance": "clock"}, "instance")
    span = source.history(ref, end - 10 * 86400.0, end)
    step = np.diff(span.t)
    assert 990 <= len(span.t) <= 1000
    assert np.all(step == step[0]) and step[0] == 865.0  # ceil(864,001 / 1,000) seconds
    assert np.all(span.t % 865.0 == 0) and span.t[0] >= end - 10 * 86400.0
    np.testing.assert_array_equal(span.y, span.t)


REJECTED = [
    (
        "bad PromQL",
        'rate(node_cpu_seconds_total{mode="idle"}[1m',
        r"rejected query .* \(HTTP 400\): .*parse error",
    ),
    (
        "execution error",
        "node_cpu_seconds_total + on(instance) node_cpu_seconds_total",
        r"rejected query .* \(HTTP 422\): found duplicate series",
    ),
    ("range vector", "up[1m]", "a 'matrix' result, expected a 'vector'; it selects a range"),
    ("string", '"text"', "a 'string' result, expected a 'vector'; it must return numbers"),
    (
        "same labels once the name is dropped",
        '{__name__=~"node_load1|node_load5"}',
        "two series share the labels 'instance=.*,job=node' once the metric name is dropped",
    ),
]


@servers
@pytest.mark.parametrize(("query", "pattern"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_a_query_prometheus_cannot_answer_raises_source_error_at_once(
    prometheus: PrometheusServer, query: str, pattern: str
) -> None:
    source = make_source(prometheus.url, query)
    for call in (lambda: source.poll(time.time(), {}), source.check):
        with pytest.raises(SourceError) as raised:
            call()
        assert type(raised.value) is SourceError
        message = str(raised.value)
        assert message.startswith(f"Prometheus at {prometheus.url}") and "\n" not in message
        assert query in message
        assert re.search(pattern, message), message
    assert (source.requests, source.retries, source.failures) == (2, 0, 2)  # never retried


@servers
def test_a_wrong_path_prefix_names_the_fix(prometheus: PrometheusServer) -> None:
    source = make_source(f"{prometheus.url}/prometheus")
    with pytest.raises(SourceError, match=r"no query API there \(HTTP 404\); check prometheus.url"):
        source.poll(time.time(), {})
    assert source.requests == 1


@servers
def test_a_scalar_query_is_one_series_without_labels(prometheus: PrometheusServer) -> None:
    [batch] = make_source(prometheus.url, "3").poll(time.time(), {})
    assert (batch.series.id, batch.series.host, batch.y.tolist()) == ("default", "default", [3.0])


@servers
def test_check_counts_the_series_of_the_query(prometheus: PrometheusServer) -> None:
    assert make_source(prometheus.url, CLOCK_QUERY).check() == 1


# -- fakes, only for answers a real Prometheus cannot be made to give --------------------------------


class Answer(NamedTuple):
    """What the fake answers: status, body, and a Content-Length to declare (longer: cut off)."""

    status: int
    body: bytes
    length: int | None = None


def ok(data: Any) -> Answer:
    return Answer(200, json.dumps({"status": "success", "data": data}).encode())


def vector(*samples: Any, labels: dict[str, Any] | None = None) -> Answer:
    return ok(
        {
            "resultType": "vector",
            "result": [{"metric": labels or {"instance": "a"}, "value": s} for s in samples],
        }
    )


class FakePrometheus:
    """An HTTP server on loopback that gives the scripted answers in turn (the last one repeats)."""

    def __init__(self, answers: list[Answer], *, tls: tuple[Path, Path] | None = None) -> None:
        self.answers = answers
        self.received: list[tuple[str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.received.append((self.path, dict(self.headers)))
                answer = fake.answers[min(len(fake.received), len(fake.answers)) - 1]
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(answer.length or len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakePrometheus]]:
    started: list[FakePrometheus] = []

    def start(answers: list[Answer], **kwargs: Any) -> FakePrometheus:
        started.append(FakePrometheus(answers, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


BROKEN = [
    # (case, answer, error raised, message pattern): faults a real Prometheus cannot be made to give.
    ("not JSON", Answer(200, b"<html>502 from the proxy</html>"), SourceError, "is not a JSON object"),
    (
        "truncated JSON",
        Answer(200, b'{"status":"success","data":{"resultT'),
        SourceError,
        "not a JSON object",
    ),
    ("JSON list", Answer(200, b"[]"), SourceError, "is not a JSON object"),
    ("half-written body", Answer(200, b'{"status":"succ', 4000), SourceUnavailable, "answer was cut off"),
    ("status error", Answer(200, b'{"status":"error"}'), SourceError, "status 'error': no error text"),
    ("no data", Answer(200, b'{"status":"success"}'), SourceError, r"malformed answer .*\(no data\)"),
    ("no result", ok({"resultType": "vector"}), SourceError, r"no data\.result"),
    ("matrix for vector", ok({"resultType": "matrix", "result": []}), SourceError, "'matrix' result"),
    ("result not a list", ok({"resultType": "vector", "result": {}}), SourceError, "not a list"),
    ("value 'abc'", vector([NOW, "abc"]), SourceError, "value 'abc' of instance=a at .* is not a number"),
    ("value null", vector([NOW, None]), SourceError, "value None of instance=a"),
    ("timestamp string", vector(["now", "1"]), SourceError, "timestamp 'now' of instance=a"),
    ("not a pair", vector([NOW]), SourceError, "malformed sample"),
    ("labels not strings", vector([NOW, "1"], labels={"a": 3}), SourceError, "labels are not strings"),
    (
        "native histogram",
        ok({"resultType": "vector", "result": [{"metric": {}, "histogram": []}]}),
        SourceError,
        "native histograms",
    ),
    (
        "HTTP 503",
        Answer(503, b'{"status":"error","error":"TSDB not ready"}'),
        SourceUnavailable,
        "HTTP 503 .*TSDB not ready",
    ),
    ("HTTP 429", Answer(429, b"slow down"), SourceUnavailable, "HTTP 429 .*slow down \\(3 attempts"),
    (
        "HTTP 401",
        Answer(401, b"no token"),
        SourceError,
        r"refused access \(HTTP 401\): no token; check prometheus",
    ),
]


@pytest.mark.parametrize(
    ("answer", "error", "pattern"), [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_a_broken_answer_raises_a_clear_error(
    fake: Callable[..., FakePrometheus], answer: Answer, error: type[SourceError], pattern: str
) -> None:
    server = fake([answer])
    sleeps: list[float] = []
    source = make_source(server.url, sleep=sleeps.append)
    with pytest.raises(SourceError) as raised:
        source.poll(NOW, {})
    assert type(raised.value) is error
    message = str(raised.value)
    assert re.search(pattern, message), message
    assert message.startswith(f"Prometheus at {server.url}") and "\n" not in message
    retried = error is SourceUnavailable
    assert len(server.received) == (3 if retried else 1) and sleeps == ([0.2, 0.4] if retried else [])
    assert source.failures == 1


def test_a_transient_failure_is_retried_and_then_succeeds(fake: Callable[..., FakePrometheus]) -> None:
    server = fake([Answer(503, b"restarting"), vector([NOW, "42"])])
    source = make_source(server.url)
    [batch] = source.poll(NOW, {})
    assert batch.y.tolist() == [42.0]
    assert (source.requests, source.retries, source.failures) == (2, 1, 0)


def test_float_timestamps_snap_to_the_requested_grid_times(fake: Callable[..., FakePrometheus]) -> None:
    values = [[NOW - 60.0 * i + noise, str(i)] for i, noise in ((2, 0.0004), (1, -0.0003), (0, 1e-7))]
    server = fake([ok({"resultType": "matrix", "result": [{"metric": {"instance": "a"}, "values": values}]})])
    [batch] = make_source(server.url, interval=60.0).poll(NOW, {"instance=a": NOW - 180.0})
    assert batch.t.tolist() == [NOW - 120.0, NOW - 60.0, NOW]
    assert batch.y.tolist() == [2.0, 1.0, 0.0]
    path, _ = server.received[0]
    assert "start=1699999080.000" in path and "end=1699999200.000" in path and "step=60.0" in path


def test_the_bearer_token_is_sent_and_never_shown(
    fake: Callable[..., FakePrometheus], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    server = fake([vector([NOW, "1"]), Answer(503, b"down")])
    source = make_source(server.url, bearer_token_file=str(token_file))
    source.poll(NOW, {})
    with pytest.raises(SourceUnavailable) as raised:
        source.poll(NOW, {})
    assert all(headers["Authorization"] == "Bearer s3cret-token" for _, headers in server.received)
    assert "s3cret" not in str(raised.value) and "s3cret" not in repr(source)


def test_credentials_in_the_url_stay_out_of_messages() -> None:
    port = free_port()
    source = make_source(f"http://user:pa55word@127.0.0.1:{port}/prom/", retries=0)
    with pytest.raises(SourceUnavailable) as raised:
        source.poll(NOW, {})
    assert "pa55word" not in str(raised.value) and f"http://127.0.0.1:{port}/prom " in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"url": "localhost:9090"}, "prometheus.url 'localhost:9090' is not an http"),
        ({"bearer_token_file": "/nonexistent/token"}, "bearer_token_file: cannot read '/nonexistent/token'"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file: '/nonexistent/ca.pem' not found"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any], pattern: str) -> None:
    kwargs.setdefault("url", "http://127.0.0.1:9090")
    with pytest.raises(ConfigError, match=pattern):
        PrometheusSource(query="up", interval=60.0, **kwargs)


def test_an_empty_token_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        make_source("http://127.0.0.1:9090", bearer_token_file=str(tmp_path / "token"))


def test_from_settings_reads_both_sections() -> None:
    with pytest.raises(ConfigError, match="prometheus.url is not set"):
        PrometheusSource.from_settings(PrometheusSettings(), MonitoringSettings())
    source = PrometheusSource.from_settings(
        PrometheusSettings(url="http://prom:9090/", timeout_seconds=2.0, retries=1),
        MonitoringSettings(interval_seconds=15.0, max_catchup_hours=2.0),
    )
    assert (source.url, source.query, source.interval, source.max_catchup) == (
        "http://prom:9090",
        DEFAULT_QUERY,
        15.0,
        7200.0,
    )
    assert (source.timeout, source.max_retries, source.host_label) == (2.0, 1, "instance")


def test_check_makes_one_attempt_against_a_closed_port() -> None:
    sleeps: list[float] = []
    source = make_source(f"http://127.0.0.1:{free_port()}", sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="connection refused \\(1 attempt in"):
        source.check()
    assert time.monotonic() - started < 0.5 and sleeps == [] and source.requests == 1


class HungSession(requests.Session):
    """Every request 'takes' its whole timeout on a fake clock and then times out."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        self.clock[0] += kwargs["timeout"]
        raise requests.ReadTimeout("read timed out")


def test_many_retries_still_give_up_within_twice_the_timeout() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    source = make_source(
        "http://127.0.0.1:9",
        timeout_seconds=5.0,
        retries=10,
        session=HungSession(clock),
        sleep=sleep,
        clock=lambda: clock[0],
    )
    with pytest.raises(SourceUnavailable, match=r"no answer within .* \(2 attempts in 10\.0 s\)"):
        source.poll(NOW, {})
    assert clock[0] <= 10.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: install the Debian package openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_is_verified_by_default_and_ca_file_is_honoured(
    fake: Callable[..., FakePrometheus], certificate: tuple[Path, Path]
) -> None:
    server = fake([vector([NOW, "5"])], tls=certificate)
    with pytest.raises(SourceError, match="TLS certificate not trusted .*set prometheus.ca_file") as raised:
        make_source(server.url).poll(NOW, {})
    assert type(raised.value) is SourceError
    [batch] = make_source(server.url, ca_file=str(certificate[0])).poll(NOW, {})
    assert batch.y.tolist() == [5.0]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_tls_false_skips_verification(
    fake: Callable[..., FakePrometheus], certificate: tuple[Path, Path]
) -> None:
    server = fake([vector([NOW, "5"])], tls=certificate)
    [batch] = make_source(server.url, verify_tls=False).poll(NOW, {})
    assert batch.y.tolist() == [5.0]


def test_close_closes_the_session() -> None:
    closed: list[bool] = []

    class Session(requests.Session):
        def close(self) -> None:
            closed.append(True)

    make_source("http://127.0.0.1:9090", session=Session()).close()
    assert closed == [True]
