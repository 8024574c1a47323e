"""The monitor loop on a simulated clock: schedule, catch-up, error isolation, clean stop, refits."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from core.clock import SimClock
from core.config import ModelSettings
from core.detector import Detector
from core.errors import SourceError, SourceUnavailable
from core.model.artifact import ModelArtifact, SeriesModel
from core.model.forecaster import ProfileForecaster
from core.model.store import ModelStore
from core.monitor import Monitor
from core.records import PointBatch, SeriesRef
from core.refit import InlineExecutor, RefitPolicy, Refitter
from core.scoring import ScoreParams
from core.sinks.memory import Collector
from core.sources.simulator import SimulatorSource
from core.timegrid import DAY, grid_times

T0 = 1_762_992_000.0  # a midnight UTC: on every grid used here


def profile_model(source: SimulatorSource, host: str, end: float) -> SeriesModel:
    ref = source.refs[host]
    hist = source.history(ref, end - 14 * DAY, end)
    import pandas as pd

    frame = pd.DataFrame({"ds": pd.to_datetime(hist.t, unit="s", utc=True), "y": hist.y})
    fitted = ProfileForecaster(ModelSettings(kind="profile")).fit(frame)
    return SeriesModel(
        id=ref.id,
        labels=dict(ref.labels),
        kind="profile",
        band=fitted.band,
        train_start=fitted.train_start,
        train_end=fitted.train_end,
        train_rows=fitted.train_rows,
    )


def make_monitor(source, clock, store=None, sinks=None, **kw) -> tuple[Monitor, Collector]:
    collector = Collector()
    monitor = Monitor(
        source,
        Detector(store or ModelStore(), ScoreParams()),
        sinks or [collector],
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )
    return monitor, collector


def test_ticks_on_the_grid_and_scores_every_point_once():
    clock = SimClock(T0 + 7.0)
    source = SimulatorSource(2, interval=10.0)
    store = ModelStore()
    for host in ("web-01", "db-01"):
        store.put(profile_model(source, host, T0))
    monitor, out = make_monitor(source, clock, store, interval=10.0)
    stats = monitor.run(duration=100.0)
    # Started 7 s past a grid time: the first tick takes the latest grid point, then one per grid time.
    assert stats.ticks == 11 and stats.missed_ticks == 0
    for sid in ("host=web-01", "host=db-01"):
        ts = [r.ts for r in out.records if r.series == sid]
        assert ts == [T0 + 10.0 * i for i in range(11)]  # grid-aligned, no gap, no repeat
    assert all(np.isfinite(r.yhat) and r.model.startswith(r.series) for r in out.records)


def test_restart_catches_up_without_gap_or_duplicate():
    clock = SimClock(T0)
    source = SimulatorSource(1, interval=10.0)
    first, out1 = make_monitor(source, clock, interval=10.0)
    first.run(duration=50.0)
    clock.sleep(95.0)  # down for a while
    second, out2 = make_monitor(
        SimulatorSource(1, interval=10.0), clock, interval=10.0, last_seen=first.last_seen
    )
    second.run(duration=20.0)
    ts = [r.ts for r in out1.records + out2.records]
    assert ts == sorted(set(ts))
    assert ts == list(np.arange(T0, ts[-1] + 1, 10.0))
    # A restarted simulator re-creates exactly the same values for the same timestamps.
    again = SimulatorSource(1, interval=10.0).poll(T0, {})[0]
    assert again.y[0] == out1.records[0].value


def test_catch_up_is_bounded_by_max_catchup():
    source = SimulatorSource(1, interval=10.0, max_catchup=60.0)
    (batch,) = source.poll(T0 + 3600, {"host=web-01": T0})
    assert len(batch.t) == 6 and batch.t[-1] == T0 + 3600


class FlakySource:
    """A fault a real server cannot be told to produce on cue: it fails on chosen polls."""

    name = "flaky"

    def __init__(self, fail_on: dict[int, Exception]) -> None:
        self.inner = SimulatorSource(1, interval=10.0)
        self.fail_on = fail_on
        self.polls = 0

    def poll(self, now, last_seen):
        self.polls += 1
        if self.polls in self.fail_on:
            raise self.fail_on[self.polls]
        return self.inner.poll(now, last_seen)

    def history(self, series, start, end, max_points=None):
        return self.inner.history(series, start, end, max_points)

    def close(self):
        pass


def test_source_failures_are_isolated_and_caught_up():
    clock = SimClock(T0)
    source = FlakySource(
        {2: SourceUnavailable("down"), 3: SourceError("garbage"), 4: SourceUnavailable("down")}
    )
    monitor, out = make_monitor(source, clock, interval=10.0)
    stats = monitor.run(duration=60.0)
    assert stats.ticks == 6 and stats.source_errors == 3
    ts = [r.ts for r in out.records]
    assert ts == [T0 + 10.0 * i for i in range(6)]  # the gap was filled by the next good poll


class SlowSource(FlakySource):
    def __init__(self, clock: SimClock, slow_polls: set[int]) -> None:
        super().__init__({})
        self.clock = clock
        self.slow = slow_polls

    def poll(self, now, last_seen):
        batches = super().poll(now, last_seen)
        if self.polls in self.slow:
            self.clock.sleep(35.0)  # this tick overruns three grid times
        return batches


def test_overrunning_tick_skips_missed_ticks_instead_of_bunching():
    clock = SimClock(T0)
    source = SlowSource(clock, {2})
    monitor, out = make_monitor(source, clock, interval=10.0)
    stats = monitor.run(duration=100.0)
    assert stats.missed_ticks == 3
    assert stats.ticks == 10 - 3
    ts = [r.ts for r in out.records]
    assert ts == [T0 + 10.0 * i for i in range(10)]  # skipped ticks' points come with the next poll


def test_stop_event_ends_the_run_and_flushes_sinks():
    stop = threading.Event()

    class StopAfter(Collector):
        flushed = closed = False

        def write(self, records):
            super().write(records)
            if len(self.records) >= 3:
                stop.set()

        def flush(self, timeout):
            StopAfter.flushed = True
            return True

        def close(self):
            StopAfter.closed = True

    clock = SimClock(T0)
    sink = StopAfter()
    monitor = Monitor(
        SimulatorSource(1, interval=10.0),
        Detector(ModelStore(), ScoreParams()),
        [sink],
        interval=10.0,
        clock=clock,
        sleep=clock.sleep,
        stop=stop,
    )
    stats = monitor.run(duration=None)
    assert stats.ticks == 3 and StopAfter.flushed and StopAfter.closed


def test_points_without_any_model_are_kept_unscored():
    clock = SimClock(T0)
    monitor, out = make_monitor(SimulatorSource(1, interval=10.0), clock, interval=10.0)
    monitor.run(duration=30.0)
    assert len(out.records) == 3
    assert all(
        r.score == 0 and not r.is_anomaly and np.isnan(r.yhat) and r.model == "none" for r in out.records
    )


def test_refit_gives_each_series_its_own_model_and_updates_the_artifact(tmp_path):
    clock = SimClock(T0)
    source = SimulatorSource(2, interval=300.0)
    borrowed = profile_model(source, "web-01", T0 - 30 * DAY)  # stale: trained a month ago
    store = ModelStore(
        ModelArtifact(models={borrowed.id: borrowed}, config_hash="sha256:x", model_settings={})
    )
    policy = RefitPolicy(interval=DAY, history=7 * DAY, min_rows=100)
    refitter = Refitter(
        store,
        source,
        ModelSettings(kind="profile"),
        policy,
        executor=InlineExecutor(),
        clock=clock,
        artifact_path=tmp_path / "m.json",
    )
    monitor, out = make_monitor(source, clock, store, interval=300.0, refitter=refitter)
    monitor.run(duration=900.0)
    first_tick = [r for r in out.records if r.ts == T0]
    assert {r.model.endswith("(borrowed)") for r in first_tick if r.series == "host=db-01"} == {True}
    later = [r for r in out.records if r.ts > T0]
    assert all(r.model.split("@")[0] == r.series and "borrowed" not in r.model for r in later)
    assert set(store.models()) == {"host=web-01", "host=db-01"}
    assert store.own("host=web-01").train_end >= T0 - 300  # refitted from recent history
    from core.model.artifact import load_artifact

    assert set(load_artifact(tmp_path / "m.json").models) == {"host=web-01", "host=db-01"}


def test_refit_is_postponed_while_history_is_short():
    clock = SimClock(T0)
    source = SimulatorSource(1, interval=60.0)

    class Short(FlakySource):
        def history(self, series, start, end, max_points=None):
            t = grid_times(end - 600, end, 60.0)
            return PointBatch(series, t, np.full(len(t), 5.0), "flaky")

    short = Short({})
    store = ModelStore()
    refitter = Refitter(
        store,
        short,
        ModelSettings(kind="profile"),
        RefitPolicy(DAY, DAY, min_rows=50),
        executor=InlineExecutor(),
        clock=clock,
    )
    ref = SeriesRef.from_labels({"host": "web-01"}, "host")
    assert refitter.schedule([ref], T0) == 1
    assert store.own(ref.id) is None and refitter.stats.skipped_short == 1
    assert refitter.schedule([ref], T0 + 1) == 0  # not again right away
    del source


@pytest.mark.parametrize("interval", [0.5, 1.0, 60.0])
def test_grid_times(interval):
    t = grid_times(T0 + 0.3 * interval, T0 + 5.7 * interval, interval)
    assert list(t) == [T0 + k * interval for k in range(1, 6)]


def test_a_series_borrows_only_a_model_of_its_own_metric():
    source = SimulatorSource(2, interval=300.0)
    cpu = profile_model(source, "web-01", T0)
    store = ModelStore(ModelArtifact(models={cpu.id: cpu}, config_hash="sha256:x", model_settings={}))
    assert store.get("host=db-01") == (cpu, True)
    assert store.get("metric=memory_used,instance=a") == (None, True)  # never CPU's band for memory
    memory = dataclasses.replace(cpu, id="metric=memory_used,instance=a", labels={"metric": "memory_used"})
    store.put(memory)
    assert store.get("metric=memory_used,instance=b") == (memory, True)
    store.drop(memory.id)
    assert store.own(memory.id) is None and set(store.models()) == {cpu.id}


def test_a_new_series_gets_the_robust_stand_in_from_its_first_points_then_its_own_fit():
    clock = SimClock(T0)

    class Born(FlakySource):
        """A series that first reports at T0: its history starts there."""

        def history(self, series, start, end, max_points=None):
            return self.inner.history(series, max(start, T0 - 1.0), end, max_points)

    source = Born({})
    source.inner = SimulatorSource(1, interval=60.0)
    store = ModelStore()
    refitter = Refitter(
        store,
        source,
        ModelSettings(kind="profile"),
        RefitPolicy(DAY, DAY, min_rows=50, fallback_rows=12),
        executor=InlineExecutor(),
        clock=clock,
    )
    monitor, out = make_monitor(source, clock, store, interval=60.0, refitter=refitter)
    monitor.run(duration=70 * 60.0)
    models = [r.model for r in out.records]
    assert models[:11] == ["none"] * 11  # nothing of its own, nothing to borrow: kept unscored
    assert all(m.startswith("host=web-01@") for m in models[13:])  # its own from about the 12th point
    assert len({m for m in models[13:49]}) == 1  # the stand-in, until 50 points can exist
    model = store.own("host=web-01")
    assert model is not None and model.train_rows >= 50 and model.kind == "profile"
    assert model.band.end - model.train_end >= DAY - 60  # the real fit has the model's horizon again
    assert refitter.stats.fits >= 2
