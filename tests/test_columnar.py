"""The columnar calibrator and scoring path give exactly what one SeriesCalibrator per series gives.

``core.calibration.SeriesCalibrator`` is the reference: the columnar state must reproduce its scores,
bands, signs and channels bit for bit, on series with gaps, repeated and out-of-order timestamps, no
model, stuck stretches and excursions that lock learning out, whether points arrive one per tick or
in runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.band import Band
from core.band_table import BandTable
from core.calibration import CalibrationParams, SeriesCalibrator
from core.columnar import ColumnarCalibrator
from core.detector import Detector
from core.model.artifact import SeriesModel
from core.model.store import ModelStore
from core.records import PointBatch, ScoredRecord, SeriesRef
from core.scoring import ScoreParams

FIELDS = ("score", "lower", "upper", "sign", "channel")
# Small windows so that every window fills, evicts, refills its sorted blocks and rebuilds its ranks.
SMALL = CalibrationParams(
    p0=0.05, p1=0.01, window=200, min_history=20, shift_window=3, flat_window=4, flat_history=60,
    flat_delay=7, learn_limit=2.0,
)  # fmt: skip


def series_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Return t, y, yhat, lower, upper of one awkward series."""
    t = np.arange(n) * 60.0
    y = rng.standard_t(3, n) * rng.uniform(0.1, 5)
    kind = rng.integers(0, 4)
    if kind == 0:  # a level shift
        y[n // 2 :] += rng.uniform(1, 20)
    elif kind == 1:  # stuck stretches, some of them long
        for start in rng.integers(0, n, 6):
            y[start : start + rng.integers(5, 60)] = y[start]
    elif kind == 2:  # big excursions: learning of the edge locks out
        y[rng.random(n) < 0.03] *= 40
    else:  # quantised, mostly zeros
        y = np.round(np.abs(y) * (rng.random(n) < 0.2))
    y[rng.random(n) < 0.05] = np.nan
    if rng.random() < 0.5:  # repeated and out-of-order timestamps
        bad = rng.integers(1, n, 10)
        t[bad] = t[bad - 1] - rng.choice([0.0, 30.0, 600.0], 10)
    yhat = np.full(n, 0.5)
    if rng.random() < 0.3:
        yhat[: rng.integers(0, n)] = np.nan  # no model for a while (or ever)
    half = rng.uniform(0.5, 3)
    return t, y, yhat, yhat - half, yhat + half


def assert_same(a: object, b: object) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def feed_ticks(col: ColumnarCalibrator, rows: np.ndarray, data: list[tuple[np.ndarray, ...]]) -> list[dict]:
    """Give every series' points to ``col`` one tick at a time; return each series' results."""
    got: list[dict] = [{k: [] for k in FIELDS} for _ in data]
    for i in range(max((len(d[0]) for d in data), default=0)):
        live = [s for s in range(len(data)) if len(data[s][0]) > i]
        out = col.update(rows[live], *[np.array([data[s][c][i] for s in live]) for c in range(5)])
        for j, s in enumerate(live):
            for name in FIELDS:
                got[s][name].append(getattr(out, name)[j])
    return [{k: np.array(v) for k, v in g.items()} for g in got]


def feed_runs(col: ColumnarCalibrator, rows: np.ndarray, data: list[tuple[np.ndarray, ...]]) -> list[dict]:
    """Give every series' points to ``col`` as runs in one call; return each series' results."""
    sizes = [len(d[0]) for d in data]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = col.update_runs(rows, starts, *[np.concatenate([d[c] for d in data]) for c in range(5)])
    return [{k: getattr(out, k)[a : a + n] for k in FIELDS} for a, n in zip(starts, sizes, strict=True)]


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    first=st.sampled_from(["ticks", "runs", "sequential"]),
    then=st.sampled_from(["ticks", "runs", "sequential"]),
    small=st.booleans(),
)
def test_the_same_bits_as_one_series_calibrator_per_series(
    seed: int, first: str, then: str, small: bool
) -> None:
    """Points given one tick at a time, as vectorised runs or through the per-point loop, in two parts."""
    rng = np.random.default_rng(seed)
    params = SMALL if small else CalibrationParams(window=120, min_history=30, flat_history=200)
    n_series = int(rng.integers(1, 7))
    data = [series_data(rng, int(rng.integers(1, 700))) for _ in range(n_series)]
    expected = [SeriesCalibrator(params).update(*d) for d in data]
    col = ColumnarCalibrator(params, capacity=2)  # grows as slots are taken
    rows = col.slots(range(n_series))
    cuts = [int(rng.integers(0, len(d[0]) + 1)) for d in data]
    parts = []
    for how, sl in ((first, lambda c: slice(0, c)), (then, lambda c: slice(c, None))):
        part = [tuple(a[sl(c)] for a in d) for d, c in zip(data, cuts, strict=True)]
        col.path = "sequential" if how == "sequential" else "vectorised"
        parts.append((feed_ticks if how == "ticks" else feed_runs)(col, rows, part))
    for s in range(n_series):
        for name in FIELDS:
            got = np.concatenate([parts[0][s][name], parts[1][s][name]])
            np.testing.assert_array_equal(got, getattr(expected[s], name), err_msg=f"{name} of series {s}")


@pytest.mark.parametrize("path", ["vectorised", None])
def test_the_same_bits_with_the_default_windows_over_thousands_of_points(path: str | None) -> None:
    rng = np.random.default_rng(7)
    params = CalibrationParams()
    data = [series_data(rng, 6000) for _ in range(4)]
    col = ColumnarCalibrator(params)
    col.path = path  # None: four long runs go through the per-point loop
    sizes = [len(d[0]) for d in data]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = col.update_runs(
        col.slots("abcd"), starts, *[np.concatenate([d[c] for d in data]) for c in range(5)]
    )
    for s, d in enumerate(data):
        ref = SeriesCalibrator(params).update(*d)
        sl = slice(starts[s], starts[s] + sizes[s])
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(out, name)[sl], getattr(ref, name), err_msg=name)
    assert {0, 2, 3, 4} <= set(out.channel.tolist())  # none, point, shift and flat all decided points


def test_a_dropped_slot_is_reused_and_starts_afresh() -> None:
    rng = np.random.default_rng(3)
    t, y, yhat, lo, up = series_data(rng, 400)
    col = ColumnarCalibrator(SMALL, capacity=1)
    a, b = col.slots(["a", "b"])
    col.update_runs(
        np.array([a, b]), np.array([0, 400]), *[np.concatenate([x, x]) for x in (t, y, yhat, lo, up)]
    )
    assert col.drop(["a", "missing"]) == 1 and "a" not in col and len(col) == 1
    (c,) = col.slots(["c"])
    assert c == a  # the freed slot
    assert_same(
        col.update_runs(np.array([c]), np.array([0]), t, y, yhat, lo, up),
        SeriesCalibrator(SMALL).update(t, y, yhat, lo, up),
    )


def band(start: float, n: int, step: float = 300.0, seed: int = 0) -> Band:
    rng = np.random.default_rng(seed)
    yhat = 50 + rng.normal(0, 5, n)
    return Band(start, step, yhat, yhat - rng.uniform(1, 3, n), yhat + rng.uniform(1, 3, n), start + step * n)


def test_one_table_lookup_equals_each_band_lookup() -> None:
    bands = [band(0.0, 3000, seed=1), band(1e5, 400, seed=2), band(7.0, 50, 60.0, seed=3)]  # week, day, none
    table = BandTable(bands)
    rng = np.random.default_rng(0)
    which = rng.integers(0, 3, 5000)
    t = rng.uniform(-2e6, 3e6, 5000)
    got = table.lookup(which, t)
    for k, b in enumerate(bands):
        want = b.lookup(t[which == k])
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g[which == k], w)


@pytest.mark.parametrize(("prime_points", "table_min"), [(None, None), (2500, 0)])
def test_the_detector_scores_primes_and_drops_as_one_calibrator_per_series_does(
    prime_points: int | None, table_min: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if prime_points:  # new series primed in several groups
        monkeypatch.setattr("core.detector.PRIME_POINTS", prime_points)
    if table_min is not None:  # the bands in one table (by default 6 bands are looked up one by one)
        monkeypatch.setattr("core.detector.TABLE_MIN_BANDS", table_min)
    rng = np.random.default_rng(5)
    refs = [SeriesRef.from_labels({"host": f"h{i}"}) for i in range(6)]
    store = ModelStore()
    for i, ref in enumerate(refs[:4]):  # two series have no model: the first one's is borrowed
        store.put(
            SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=band(0.0, 4000, seed=i))
        )
    past = {ref.id: 50 + rng.normal(0, 3, 3000) for ref in refs}

    def history(ref: SeriesRef, start: float, end: float) -> PointBatch:
        t = np.arange(3000) * 300.0
        keep = (t >= start) & (t <= end)
        return PointBatch(ref, t[keep], past[ref.id][keep], "history")

    kw = {"history": history, "prime_seconds": 2000 * 300.0}
    new, old = (
        Detector(store, ScoreParams(), SMALL, **kw),
        Detector(store, ScoreParams(), SMALL, calibrator=SeriesCalibrator, **kw),
    )
    for tick in range(40):
        t0 = 3000 * 300.0 + tick * 600.0
        batches = [
            PointBatch(
                ref,
                t0 + np.arange(1 + (i == 2 and tick % 5 == 0)) * 300.0,
                50 + rng.normal(0, 3 + 20 * (tick == 30), 1 + (i == 2 and tick % 5 == 0)),
                "sim",
            )
            for i, ref in enumerate(refs)
            if (tick + i) % 7
        ]
        if tick % 10 == 3:  # a series twice in one call: its second batch after its first
            batches.append(PointBatch(refs[0], np.array([t0 + 450.0]), np.array([80.0]), "sim"))
        if tick == 20:
            assert new.drop([refs[1].id]) == old.drop([refs[1].id]) == 1
        assert new.score_many(batches) == old.score_many(batches)


def test_records_from_columns_equal_records_built_field_by_field() -> None:
    ref = SeriesRef.from_labels({"host": "a", "dc": "x"})
    store = ModelStore()
    store.put(SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=band(0.0, 100)))
    batch = PointBatch(ref, np.array([10.0, 20.0]), np.array([50.0, np.nan]), "sim")
    got = Detector(store, ScoreParams(), SMALL).score_many([batch])
    v = store.own(ref.id).band.lookup(batch.t)  # type: ignore[union-attr]
    assert got[0] == ScoredRecord(
        ts=10.0, series=ref.id, labels=dict(ref.labels), host=ref.host, source="sim", value=50.0,
        yhat=v.yhat[0], lower=v.lower[0], upper=v.upper[0], score=got[0].score, is_anomaly=got[0].is_anomaly,
        severity=got[0].severity, confidence=got[0].confidence, threshold=1.0, model=f"{ref.id}@0",
    )  # fmt: skip
    assert got[1].score == 0.0 and not got[1].is_anomaly and got[1].extra == {}
    assert got[0].extra is not got[1].extra
    assert ScoredRecord.from_json(got[0].to_json()) == got[0]


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_point_ticks(n: int) -> None:
    ref = SeriesRef.from_labels({"host": "a"})
    det = Detector(ModelStore(), ScoreParams(), SMALL)
    out = det.score_many([PointBatch(ref, np.arange(n, dtype=float), np.ones(n), "sim")])
    assert len(out) == n and all(r.model == "none" and r.score == 0.0 for r in out)


def test_a_series_costs_about_a_hundred_kilobytes_of_state() -> None:
    def arrays(obj: object) -> list[np.ndarray]:
        out = []
        for v in vars(obj).values():
            if isinstance(v, np.ndarray):
                out.append(v)
            elif type(v).__module__ == "core.calibration_state":
                out += arrays(v)
        return out

    col = ColumnarCalibrator(CalibrationParams(), capacity=100)
    per_slot = sum(a.nbytes for a in arrays(col) if len(a) == 100) / 100
    # The windows' values once each (1,000 x 4 residual windows, 4,032 flat spreads and their sorted
    # copy) and small blocks: about 100 kB, where a warm SeriesCalibrator held about 1.5 MB.
    assert 90_000 < per_slot < 120_000


@pytest.mark.parametrize("table_min", [64, 0])
def test_a_refit_band_is_used_from_the_next_tick_on(table_min: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.detector.TABLE_MIN_BANDS", table_min)
    ref = SeriesRef.from_labels({"host": "a"})
    store = ModelStore()
    store.put(SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=band(0.0, 100, seed=1)))
    det = Detector(store, ScoreParams(), SMALL)
    t = np.array([3000.0])
    first = det.score_many([PointBatch(ref, t, np.array([50.0]), "sim")])[0]
    new = band(0.0, 100, seed=2)
    want = new.lookup(t + 300.0).yhat[0]
    store.put(SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=new, train_end=9.0))
    second = det.score_many([PointBatch(ref, t + 300.0, np.array([50.0]), "sim")])[0]
    assert first.model == f"{ref.id}@0" and second.model == f"{ref.id}@9"
    assert second.yhat == want and new.lookup(t + 300.0).yhat[0] == want  # in a table: the same values


def test_bands_new_since_the_table_was_built_are_looked_up_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.detector.TABLE_MIN_BANDS", 0)
    refs = [SeriesRef.from_labels({"host": f"h{i}"}) for i in range(16)]
    store = ModelStore()
    for i, ref in enumerate(refs):
        store.put(
            SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=band(0.0, 100, seed=i))
        )
    det = Detector(store, ScoreParams(), SMALL)
    t = np.array([1000.0, 1300.0])
    det.score_many([PointBatch(ref, t, np.array([50.0, 51.0]), "sim") for ref in refs])  # builds the table
    table = det._bands._table
    store.put(
        SeriesModel(id=refs[3].id, labels={}, kind="profile", band=band(0.0, 100, seed=99), train_end=5)
    )
    got = det.score_many([PointBatch(ref, t + 600, np.array([50.0, 51.0]), "sim") for ref in refs])
    assert det._bands._table is table  # one new band of 16: not rebuilt
    want = np.concatenate([store.own(ref.id).band.lookup(t + 600).yhat for ref in refs])  # type: ignore[union-attr]
    np.testing.assert_array_equal([r.yhat for r in got], want)
    assert got[6].model == f"{refs[3].id}@5"
