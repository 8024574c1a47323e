"""Contract tests: one suite run over every Source and one over every Sink (river's test_estimators).

The rules are the protocols' docstrings in ``core/protocols.py``. A source yields float64 points on
its interval grid, increasing, never after ``now``; a series in ``last_seen`` gets every grid point in
``(last_seen, now]`` exactly once (at most ``max_catchup`` of them, for the live sources); a live
source gives a series it has not seen only its latest grid point; ``history`` stays inside its window.
A sink takes records, says whether everything went out, closes cleanly, and the durable ones hold
exactly what they were given, in order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from servers import PrometheusServer, VictoriaMetricsServer

from core.clock import SimClock
from core.config import Settings
from core.protocols import Sink, Source
from core.records import PointBatch, ScoredRecord, SeriesRef
from core.sinks import open_write_path
from core.sinks.files import LocalFiles
from core.sinks.memory import Collector
from core.sinks.wal import MetricsLog
from core.sources.prometheus import PrometheusSource
from core.sources.replay import ReplaySeries, ReplaySource
from core.sources.simulator import SimulatorSource
from core.timegrid import DAY, align_down, grid_times

T0 = 1_762_992_000.0  # a midnight UTC: on every grid used here
# Its value is the evaluation time at any time, past or future: no scrape history needed.
CLOCK_QUERY = 'label_replace(vector(time()), "instance", "clock", "", "")'


@dataclass
class SourceCase:
    """A source under test, the grid it yields and a ``now`` to poll at (not on the grid)."""

    source: Source
    interval: float
    now: float
    live: bool  # a live source polls the present: first points and max_catchup rules apply
    max_catchup: float | None = None


def _simulator() -> SourceCase:
    return SourceCase(SimulatorSource(2, interval=60.0, max_catchup=600.0), 60.0, T0 + 7.0, True, 600.0)


def _replay() -> SourceCase:
    t = grid_times(T0 - 2 * DAY, T0 + DAY, 60.0)
    refs = [SeriesRef.from_labels({"host": h}) for h in ("web-01", "db-01")]
    series = [ReplaySeries(ref, t, 50.0 + 10 * np.sin(t / 3600.0 + i)) for i, ref in enumerate(refs)]
    now = T0 + 7.0
    clock = SimClock(now + 3600.0)  # history may reach up to the simulated present
    return SourceCase(ReplaySource(series, clock, start_at=T0 - 600.0), 60.0, now, False)


def _prometheus(server: PrometheusServer) -> SourceCase:
    session = requests.Session()
    session.trust_env = False  # loopback only, whatever the proxy settings
    source = PrometheusSource(
        server.url,
        CLOCK_QUERY,
        interval=1.0,
        max_catchup=10.0,
        session=session,
        sleep=lambda seconds: None,
    )
    return SourceCase(source, 1.0, math.floor(time.time()) - 60.0 + 0.4, True, 10.0)


@pytest.fixture(
    params=[
        pytest.param("simulator"),
        pytest.param("replay"),
        pytest.param("prometheus", marks=pytest.mark.servers),
    ]
)
def case(request: pytest.FixtureRequest) -> Iterator[SourceCase]:
    if request.param == "simulator":
        built = _simulator()
    elif request.param == "replay":
        built = _replay()
    else:
        built = _prometheus(request.getfixturevalue("prometheus"))
    yield built
    built.source.close()


def _check_batch(case: SourceCase, batch: PointBatch, *, after: float, until: float) -> None:
    assert batch.source == case.source.name and case.source.name
    assert batch.t.dtype == np.float64 and batch.y.dtype == np.float64 and batch.t.shape == batch.y.shape
    assert np.all(np.diff(batch.t) > 0), "timestamps increase strictly"
    assert np.all(batch.t > after) and np.all(batch.t <= until)
    assert np.allclose(batch.t / case.interval, np.round(batch.t / case.interval)), "on the interval grid"


def test_a_first_poll_yields_points_on_the_grid(case: SourceCase) -> None:
    batches = case.source.poll(case.now, {})
    assert batches and len({b.series.id for b in batches}) == len(batches)
    for batch in batches:
        _check_batch(case, batch, after=-math.inf, until=case.now)
        if case.live:  # a series not seen before gets only its latest grid point
            assert batch.t.tolist() == [align_down(case.now, case.interval)]


def test_catch_up_yields_every_missed_grid_point_exactly_once(case: SourceCase) -> None:
    first = case.source.poll(case.now, {})
    seen = {b.series.id: float(b.t[-1]) for b in first}
    later = case.now + 5 * case.interval
    second = {b.series.id: b for b in case.source.poll(later, seen)}
    assert set(second) == set(seen)
    for sid, batch in second.items():
        _check_batch(case, batch, after=seen[sid], until=later)
        assert batch.t.tolist() == grid_times(seen[sid], later, case.interval).tolist()
    caught_up = {sid: float(b.t[-1]) for sid, b in second.items()}
    again = case.source.poll(later, caught_up)
    assert all(len(b.t) == 0 for b in again), "a timestamp is never yielded twice"


def test_catch_up_reaches_back_at_most_max_catchup(case: SourceCase) -> None:
    if not case.live or case.max_catchup is None:
        pytest.skip(f"{case.source.name} replays every recorded row: no catch-up bound")
    ids = [b.series.id for b in case.source.poll(case.now, {})]
    long_ago = {sid: case.now - 100 * case.max_catchup for sid in ids}
    for batch in case.source.poll(case.now, long_ago):
        _check_batch(case, batch, after=case.now - case.max_catchup - case.interval, until=case.now)
        assert batch.t[-1] == align_down(case.now, case.interval)
        assert len(batch.t) == round(case.max_catchup / case.interval)


def test_history_stays_inside_its_window(case: SourceCase) -> None:
    ref = case.source.poll(case.now, {})[0].series
    start, end = case.now - 30 * case.interval, case.now
    batch = case.source.history(ref, start, end)
    assert batch.series == ref and len(batch.t) > 0
    _check_batch(case, batch, after=start - 1e-9, until=end)
    thinned = case.source.history(ref, start, end, max_points=10)
    assert 0 < len(thinned.t) and np.all((thinned.t >= start) & (thinned.t <= end))


def test_history_of_an_unknown_series_is_empty(case: SourceCase) -> None:
    ghost = SeriesRef.from_labels({"host": "no-such-host", "instance": "no-such-instance"})
    batch = case.source.history(ghost, case.now - 30 * case.interval, case.now)
    assert len(batch.t) == 0 and batch.t.shape == batch.y.shape


def test_close_is_safe_to_repeat(case: SourceCase) -> None:
    case.source.close()
    case.source.close()


# -- sinks ------------------------------------------------------------------------------------------


def _records(n: int, host: str = "web-01") -> list[ScoredRecord]:
    return [
        ScoredRecord(
            ts=T0 + 60.0 * i,
            series=f"host={host}",
            labels={"host": host},
            host=host,
            source="test",
            value=float(i),
            yhat=50.0,
            lower=40.0,
            upper=60.0,
            score=i / 10,
            is_anomaly=i % 3 == 2,
            severity="LOW" if i % 3 == 2 else "NONE",
            confidence=0.5,
            threshold=1.5,
            model="m",
        )
        for i in range(n)
    ]


def _log_lines(directory: Path) -> list[ScoredRecord]:
    path = directory / "metrics.jsonl"
    return [ScoredRecord.from_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass
class SinkCase:
    """A sink under test and how to read back what it holds (None: it keeps nothing to read)."""

    sink: Sink
    read_back: Callable[[], list[ScoredRecord]]
    durable: bool  # the records are on disk once write() returns


def _sink_case(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> SinkCase:
    if name == "collector":
        collector = Collector()
        return SinkCase(collector, lambda: list(collector.records), durable=False)
    if name == "local_files":
        files = LocalFiles(MetricsLog(tmp_path, fsync=False), tmp_path)
        return SinkCase(files, lambda: _log_lines(tmp_path), durable=True)
    settings: dict[str, object] = {"spool": {"fsync": False}}
    if name == "write_path_victoria_metrics":
        vm: VictoriaMetricsServer = request.getfixturevalue("victoria_metrics")
        settings["influxdb"] = {"url": vm.url, "api": "v2", "flush_interval_seconds": 0.05}
    path = open_write_path(Settings.model_validate(settings), tmp_path)
    return SinkCase(path, lambda: _log_lines(tmp_path), durable=True)


@pytest.fixture(
    params=[
        pytest.param("collector"),
        pytest.param("local_files"),
        pytest.param("write_path"),
        pytest.param("write_path_victoria_metrics", marks=pytest.mark.servers),
    ]
)
def sink_case(request: pytest.FixtureRequest, tmp_path: Path) -> SinkCase:
    return _sink_case(request.param, tmp_path, request)


def test_a_sink_holds_what_it_was_given_in_order(sink_case: SinkCase) -> None:
    written = _records(7)
    sink_case.sink.write(written[:3])
    sink_case.sink.write([])
    sink_case.sink.write(written[3:])
    if sink_case.durable:  # on disk before flush or close
        assert sink_case.read_back() == written
    assert sink_case.sink.flush(10.0) is True
    sink_case.sink.close()
    assert sink_case.read_back() == written


def test_flush_and_close_without_writes(sink_case: SinkCase) -> None:
    assert sink_case.sink.flush(1.0) is True
    sink_case.sink.close()
    assert sink_case.read_back() == []


def test_anomalies_of_the_file_sinks_go_to_anomalies_jsonl(sink_case: SinkCase, tmp_path: Path) -> None:
    if not sink_case.durable:
        pytest.skip("in-memory sink: no files")
    written = _records(9)
    sink_case.sink.write(written)
    sink_case.sink.close()
    lines = (tmp_path / "anomalies.jsonl").read_text(encoding="utf-8").splitlines()
    assert [ScoredRecord.from_json(line) for line in lines] == [r for r in written if r.is_anomaly]
    last_seen = json.loads((tmp_path / "last_seen.json").read_text(encoding="utf-8"))
    assert last_seen == {"host=web-01": written[-1].ts}
