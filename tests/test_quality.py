"""Data quality per series (core/quality.py): tables of point sequences in, the measured quality out.

A sequence is one character per grid point: ``.`` a normal value, ``n`` NaN, ``i`` +inf, ``x`` a value
outside the metric's physical range, ``_`` no point at all.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from core.quality import QualityParams, QualityRow, QualityTracker, metric_name
from core.records import PointBatch, SeriesRef
from core.sinks.lineproto import SCHEMA, encode_quality
from core.sinks.quality import QualityFile
from core.telemetry import Telemetry

T0 = 1_767_225_600.0
STEP = 10.0
VALUES = {".": 50.0, "n": np.nan, "i": np.inf, "x": 150.0}


class Rows:
    """A real QualityOutput that keeps what it is given."""

    def __init__(self) -> None:
        self.rows: list[QualityRow] = []

    def write_quality(self, rows: list[QualityRow]) -> None:
        self.rows += rows


def feed(tracker: QualityTracker, sequences: dict[str, str], lag: float = 0.5) -> list[list[str]]:
    dropped = []
    for i in range(max(len(s) for s in sequences.values())):
        now = T0 + i * STEP
        batches = []
        for host, seq in sequences.items():
            if i < len(seq) and seq[i] != "_":
                ref = SeriesRef.from_labels({"host": host})
                batches.append(PointBatch(ref, np.array([now]), np.array([VALUES[seq[i]]]), "test"))
        dropped.append(tracker.observe(now + lag, batches))
    return dropped


@pytest.mark.parametrize(
    ("seq", "completeness", "stale", "invalid"),
    [
        ("..........", 1.0, False, 0),
        ("...", 1.0, False, 0),  # judged over the time it was seen
        ("._._._._._", 0.5, False, 0),
        (".........._", 0.9, False, 0),  # one interval of silence: not stale yet
        ("..........__", 0.8, True, 0),  # two: stale
        ("..nix.....", 1.0, False, 3),  # NaN, inf and out of range are present but invalid
    ],
)
def test_quality_of_one_series(seq: str, completeness: float, stale: bool, invalid: int) -> None:
    out = Rows()
    params = QualityParams(interval=STEP, window=10 * STEP, write_every=1e9)
    tracker = QualityTracker(params, limits={"cpu": (0.0, 100.0)}, outputs=[out])
    feed(tracker, {"a": seq})
    snap = tracker.snapshot(T0 + (len(seq) - 1) * STEP + 0.5)
    assert snap.series == ("host=a",)
    assert snap.completeness[0] == pytest.approx(completeness)
    assert bool(snap.stale[0]) is stale
    assert sum(snap.invalid_total.values()) == invalid
    # One row at the first tick, one more on each change of stale.
    assert [r.stale for r in out.rows] == ([False, True] if stale else [False])


def test_rows_at_the_cadence_and_on_each_change() -> None:
    out = Rows()
    tracker = QualityTracker(QualityParams(interval=STEP, write_every=3 * STEP), outputs=[out])
    feed(tracker, {"a": "........___......"})
    ticks = [round((r.ts - T0 - 0.5) / STEP) for r in out.rows]
    assert ticks == [0, 3, 6, 9, 11, 14]  # 9: due, and stale since then; 11: fresh again (a change)
    assert [r.stale for r in out.rows] == [False, False, False, True, False, False]
    assert out.rows[3].staleness_seconds == pytest.approx(2 * STEP + 0.5)
    assert all(r.lateness_seconds == pytest.approx(0.5) for r in out.rows)


def test_invalid_points_count_since_the_previous_row() -> None:
    out = Rows()
    params = QualityParams(interval=STEP, write_every=3 * STEP)
    tracker = QualityTracker(params, limits={"cpu": (0.0, 100.0)}, outputs=[out])
    feed(tracker, {"a": ".nn.x..i.."})
    assert [r.invalid_points for r in out.rows] == [0, 2, 1, 1]
    assert tracker.snapshot(T0).invalid_total == {("cpu", "nan"): 2, ("cpu", "range"): 1, ("cpu", "inf"): 1}


def test_a_series_stale_past_its_ttl_is_dropped_and_comes_back_new() -> None:
    forgotten: list[str] = []
    params = QualityParams(interval=STEP, ttl=5 * STEP)
    tracker = QualityTracker(params, on_drop=[forgotten.append])
    dropped = feed(tracker, {"a": "...______....", "b": "............."})
    assert [i for i, d in enumerate(dropped) if d] == [7] and dropped[7] == ["host=a"]
    assert forgotten == ["host=a"]
    assert tracker.tracked() == 2 and tracker.dropped_total == 1  # a is back at tick 9, as new
    snap = tracker.snapshot(T0 + 12 * STEP + 0.5)
    assert snap.of("host=a") == {
        "completeness": 1.0,
        "staleness_seconds": 0.5,
        "lateness_seconds": 0.5,
        "stale": False,
    }


def test_metric_of_a_series_and_its_limits() -> None:
    mem = SeriesRef(labels=(("metric", "memory"), ("instance", "a")), host="a")
    assert metric_name(mem) == "memory" and metric_name(SeriesRef.from_labels({"host": "a"})) == "cpu"
    tracker = QualityTracker(QualityParams(interval=STEP), limits={"memory": (0.0, 100.0), "cpu": (0, 1)})
    tracker.observe(T0, [PointBatch(mem, np.array([T0]), np.array([99.0]), "t")])
    assert tracker.snapshot(T0).invalid_total == {}


def test_ten_thousand_series_per_tick_is_cheap() -> None:
    tracker = QualityTracker(QualityParams(interval=1.0, window=3600.0))
    refs = [SeriesRef.from_labels({"host": f"h{i}"}) for i in range(10_000)]
    timings = []
    for k in range(5):
        now = T0 + k
        batches = [PointBatch(r, np.array([now]), np.array([1.0]), "t") for r in refs]
        started = time.perf_counter()
        tracker.observe(now + 0.1, batches)
        timings.append(time.perf_counter() - started)
    assert tracker.tracked() == 10_000
    assert min(timings) < 0.25, timings  # measured about 30 ms on the 2-core machine


def test_line_protocol_of_a_row() -> None:
    row = QualityRow(T0, "host=a b", "cpu", "a b", 0.75, 21.5, 3, float("nan"), True)
    assert encode_quality([row]) == [
        "data_quality,host=a\\ b,metric=cpu completeness=0.75,staleness_seconds=21.5,invalid_points=3i,"
        f"stale=true {round(T0 * 1000)}"
    ]
    tags, fields = SCHEMA["data_quality"]
    assert set(tags) == {"host", "metric"}
    assert set(fields) == {"completeness", "staleness_seconds", "invalid_points", "lateness_seconds", "stale"}


def test_the_local_file_gets_every_row(tmp_path) -> None:
    out = QualityFile(tmp_path)
    tracker = QualityTracker(QualityParams(interval=STEP, write_every=STEP), outputs=[out])
    feed(tracker, {"a": "..", "b": "._"})
    lines = out.path.read_text().splitlines()
    assert len(lines) == 4 and '"series":"host=b"' in lines[-1]


def test_metrics_show_fleet_aggregates_and_the_worst_series_up_to_the_cap() -> None:
    tracker = QualityTracker(QualityParams(interval=STEP), limits={"cpu": (0.0, 100.0)})
    feed(tracker, {"a": "....", "b": "..__", "c": "..x."})
    telemetry = Telemetry(CollectorRegistry(), clock=lambda: T0 + 3 * STEP + 0.5)
    telemetry.watch_quality(tracker.snapshot, cap=1)
    text = telemetry.render().decode()
    assert 'anomaly_detector_stale_series{metric="cpu"} 1.0' in text
    assert 'anomaly_detector_quality_series{metric="cpu"} 3.0' in text
    assert 'anomaly_detector_invalid_points_total{kind="range",metric="cpu"} 1.0' in text
    stale_lines = [line for line in text.splitlines() if line.startswith("anomaly_detector_series_stale{")]
    assert stale_lines == ['anomaly_detector_series_stale{host="b",metric="cpu",series="host=b"} 1.0']
    assert "anomaly_detector_quality_series_omitted 2.0" in text


@pytest.mark.servers
def test_rows_queued_while_influxdb_is_down_reach_it_after_its_restart(influxdb1_fresh) -> None:
    from servers import unique_name

    from core.sinks.influx import InfluxV1Writer
    from core.sinks.quality import QualityForwarder

    db = unique_name("quality")
    fwd = QualityForwarder(InfluxV1Writer(influxdb1_fresh.url, db, timeout=2.0), max_backoff=0.5).start()
    try:
        row = QualityRow(T0, "host=a", "cpu", "a", 1.0, 0.5, 0, 0.5, False)
        fwd.write_quality([row])
        influxdb1_fresh.stop()
        later = [dataclasses.replace(row, ts=T0 + i, stale=True) for i in range(1, 4)]
        fwd.write_quality(later)
        time.sleep(1.5)
        assert fwd.stats()["lag_records"] >= 3 and fwd.failures >= 1
        influxdb1_fresh.start()
        deadline = time.monotonic() + 20
        while fwd.stats()["lag_records"] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        fwd.close(5.0)
    answer = influxdb1_fresh.query("SELECT stale, invalid_points FROM data_quality", db=db, epoch="ms")
    values = answer["results"][0]["series"][0]["values"]
    assert [v[1] for v in values] == [False, True, True, True] and fwd.dropped == 0


def test_a_series_known_before_a_restart_that_never_returns_is_stale_then_dropped() -> None:
    out = Rows()
    tracker = QualityTracker(QualityParams(interval=STEP, ttl=5 * STEP, write_every=1e9), outputs=[out])
    gone = SeriesRef.from_labels({"host": "gone"})
    tracker.expect(gone, T0 - STEP)
    tracker.expect(SeriesRef.from_labels({"host": "a"}), T0 - STEP)
    dropped = feed(tracker, {"a": "......"})
    rows = [(r.series, r.stale) for r in out.rows]
    assert rows == [("host=gone", False), ("host=a", False), ("host=gone", True)]
    assert dropped[4] == ["host=gone"] and tracker.tracked() == 1


@pytest.mark.parametrize(
    ("series", "host_label", "host"),
    [
        ("host=web-01", "host", "web-01"),
        ("instance=a:9100,job=node", "instance", "a:9100/job=node"),
        ("metric=memory_used,instance=a:9100", "instance", "a:9100"),
    ],
)
def test_restored_ids_name_the_series_as_the_source_does(series: str, host_label: str, host: str) -> None:
    from core.lifecycle import restored_ref

    ref = restored_ref(series, host_label)
    assert ref is not None and ref.id == series and ref.host == host
    assert restored_ref("default", "host") is None and restored_ref("a,b", "host") is None


def test_a_dropped_series_leaves_the_detector_the_store_and_the_refitter() -> None:
    from core.config import ModelSettings
    from core.detector import Detector
    from core.lifecycle import forget_everywhere
    from core.model.store import ModelStore
    from core.refit import InlineExecutor, RefitPolicy, Refitter
    from core.scoring import ScoreParams
    from core.sources.simulator import SimulatorSource

    store = ModelStore()
    detector = Detector(store, ScoreParams())
    refitter = Refitter(
        store,
        SimulatorSource(1, interval=STEP),
        ModelSettings(kind="profile"),
        RefitPolicy(interval=3600.0, history=86400.0, min_rows=100),
        executor=InlineExecutor(),
    )
    tracker = QualityTracker(QualityParams(interval=STEP, ttl=5 * STEP))
    forget_everywhere(tracker, detector, store, refitter)
    ref = SeriesRef.from_labels({"host": "a"})
    detector.score_many([PointBatch(ref, np.array([T0]), np.array([50.0]), "test")])
    assert "host=a" in detector._columnar  # the calibration slot the TTL must free
    dropped = feed(tracker, {"a": ".________", "b": "........."})
    assert ["host=a"] in dropped
    assert "host=a" not in detector._columnar and store.own("host=a") is None
