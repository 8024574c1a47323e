"""Score point batches against the current band of their series, calibrated online; hold the models."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from core import heap
from core.band import Band
from core.band_table import BandTable
from core.calibration import CalibrationParams, SeriesCalibrator
from core.columnar import ColumnarCalibrator
from core.config import Settings
from core.model.artifact import SeriesModel
from core.model.store import ModelStore
from core.records import PointBatch, ScoredBatch, ScoredRecord, SeriesRef
from core.scoring import SEVERITIES, ScoreParams, decide
from core.units import SeriesPlans

__all__ = ["PRIME_POINTS", "TABLE_MIN_BANDS", "Detector", "calibration_params"]

PRIME_POINTS = 500_000  # history points primed in one group of series (about 4 MB per column)
TABLE_MIN_BANDS = 64  # fewer bands than this are looked up one by one (no table)


def calibration_params(settings: Settings) -> CalibrationParams:
    """Return the online calibration from the settings: the band's coverage is ``model.interval_width``."""
    c = settings.scoring.calibration
    p0 = (1.0 - settings.model.interval_width) / 2.0
    return CalibrationParams(
        p0=p0,
        p1=min(1.0 - c.tail_quantile, p0 / 2.0),
        window=c.window,
        min_history=c.min_history,
        shift_window=c.shift_window,
        flat_window=c.flat_window,
        flat_history=c.flat_history,
        flat_delay=c.flat_delay,
        learn_limit=c.learn_limit,
    )


class _Bands:
    """The band of every point of a tick: one lookup over the bands of all its series."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._table: BandTable | None = None
        self._index: dict[int, int] = {}
        self._versions: dict[tuple[int, bool], tuple[SeriesModel, str]] = {}

    def lookup(
        self, batches: Sequence[PointBatch]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
        models: list[tuple[SeriesModel | None, bool]] = [self.store.get(b.series.id) for b in batches]
        index = self._index
        missing = {id(m.band): m.band for m, _ in models if m is not None and id(m.band) not in index}
        # Bands new since the table was built (refits) are looked up one by one until there are enough
        # of them to rebuild the table: a fleet's refits do not rebuild it once a tick.
        if len(missing) > max(TABLE_MIN_BANDS, len(index) // 8):
            self._rebuild(list(missing.values()))
            index, missing = self._index, {}
        extra = {key: -2 - k for k, key in enumerate(missing)}
        codes = [-1 if m is None else index.get(id(m.band), extra.get(id(m.band), -1)) for m, _ in models]
        sizes = np.array([len(b.t) for b in batches], dtype=np.int64)
        t = np.concatenate([b.t for b in batches])
        point_band = np.repeat(np.array(codes, dtype=np.int64), sizes)
        n = len(t)
        yhat, lower, upper = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        stale = np.ones(n, dtype=bool)
        has = point_band >= 0
        if has.any():
            assert self._table is not None
            v = self._table.lookup(point_band[has], t[has])
            yhat[has], lower[has], upper[has], stale[has] = v
        for key, band in missing.items():
            sel = point_band == extra[key]
            yhat[sel], lower[sel], upper[sel], stale[sel] = band.lookup(t[sel])
        return yhat, lower, upper, stale, [self._version(m, borrowed) for m, borrowed in models]

    def _version(self, model: SeriesModel | None, borrowed: bool) -> str:
        if model is None:
            return "none"
        key = (id(model), borrowed)
        held = self._versions.get(key)
        if held is None or held[0] is not model:  # an id is reused only once its model is gone
            text = f"{model.id}@{model.train_end:.0f}" + ("(borrowed)" if borrowed else "")
            held = self._versions[key] = (model, text)
        return held[1]

    def _rebuild(self, wanted: list[Band]) -> None:
        # The store's current bands plus the ones asked for; bands no model uses any more are let go.
        live = {id(m.band): m.band for m in self.store.models().values()}
        live.update((id(b), b) for b in wanted)
        table = list(live.values())
        self._table = BandTable(table, adopt=True)
        self._index = {id(b): i for i, b in enumerate(table)}
        self._versions = {}  # a new band means a new model: let the replaced models go
        heap.trim()  # the adopted bands' old arrays are free now: give their pages back


class Detector:
    """Turn point batches into scored records: the band is a lookup, the score is calibrated online.

    Every series gets a slot of one :class:`ColumnarCalibrator` the first time it is seen; with
    ``history`` (the source's ``history``) it is first primed with the series' last ``prime_seconds``
    of values against the current band, so a restarted monitor or an evaluation does not start blind
    (all new series of a tick are primed together). ``calibrator``, if given, makes one object per
    series instead (the reference :class:`SeriesCalibrator`, or a subclass that records its inputs).
    """

    def __init__(
        self,
        store: ModelStore,
        params: ScoreParams,
        calibration: CalibrationParams | None = None,
        *,
        history: Callable[[SeriesRef, float, float], PointBatch] | None = None,
        prime_seconds: float = 0.0,
        calibrator: Callable[[CalibrationParams], SeriesCalibrator] | None = None,
        plans: SeriesPlans | None = None,
    ) -> None:
        self.store = store
        self.plans = plans  # each series' metric: its side and dead zone in the decision
        self.params = params
        self.calibration = calibration or CalibrationParams()
        self.history = history
        self.prime_seconds = prime_seconds
        self._new_calibrator = calibrator
        self._calibrators: dict[str, SeriesCalibrator] = {}
        self._columnar = ColumnarCalibrator(self.calibration) if calibrator is None else None
        self._bands = _Bands(store)

    def drop(self, series_ids: Iterable[str]) -> int:
        """Forget the calibration of these series (a series seen again starts afresh); return how many."""
        ids = list(series_ids)
        if self._columnar is not None:
            return self._columnar.drop(ids)
        return sum(self._calibrators.pop(sid, None) is not None for sid in ids)

    def _past(self, batch: PointBatch) -> PointBatch | None:
        if self.history is None or self.prime_seconds <= 0 or not len(batch.t):
            return None
        first = float(batch.t[0])
        past = self.history(batch.series, first - self.prime_seconds, first - 1e-6)
        keep = past.t < first
        if not keep.any():
            return None
        return PointBatch(batch.series, past.t[keep], past.y[keep], past.source)

    def _calibrator(self, batch: PointBatch) -> SeriesCalibrator:
        assert self._new_calibrator is not None
        sid = batch.series.id
        cal = self._calibrators.get(sid)
        if cal is None:
            cal = self._calibrators[sid] = self._new_calibrator(self.calibration)
            hist = self._past(batch)
            if hist is not None:
                yhat, lower, upper, _, _ = self._bands.lookup([hist])
                cal.update(hist.t, hist.y, yhat, lower, upper)
        return cal

    def _calibrate_each(
        self, batches: list[PointBatch], yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        parts = []
        offset = 0
        for batch in batches:
            sl = slice(offset, offset + len(batch.t))
            cal = self._calibrator(batch).update(batch.t, batch.y, yhat[sl], lower[sl], upper[sl])
            parts.append(cal)
            offset += len(batch.t)
        return tuple(
            np.concatenate([getattr(p, k) for p in parts]) for k in ("score", "lower", "upper", "sign")
        )

    def _calibrate_columnar(
        self, batches: list[PointBatch], yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        col = self._columnar
        assert col is not None
        ids = [b.series.id for b in batches]
        rows, fresh = col.allocate(ids)
        if fresh:
            self._prime([batches[i] for i in fresh])
        sizes = np.array([len(b.t) for b in batches], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        t = np.concatenate([b.t for b in batches])
        y = np.concatenate([b.y for b in batches])
        if len(set(ids)) == len(ids):  # the common case: each series once
            out = col.update_runs(rows, starts, t, y, yhat, lower, upper)
            return out.score, out.lower, out.upper, out.sign
        # A series twice in one call: its second batch is scored after its first, as one object would.
        score, low, up = np.zeros(len(t)), lower.copy(), upper.copy()
        sign = np.zeros(len(t), dtype=np.int8)
        seen: dict[int, int] = {}
        occurrence = []
        for r in rows.tolist():
            seen[r] = seen.get(r, -1) + 1
            occurrence.append(seen[r])
        rounds = np.array(occurrence)
        for k in range(int(rounds.max()) + 1):
            sel = np.flatnonzero(rounds == k)
            pts = np.concatenate([np.arange(starts[i], starts[i] + sizes[i]) for i in sel])
            sub_starts = np.concatenate([[0], np.cumsum(sizes[sel])[:-1]]).astype(np.int64)
            out = col.update_runs(rows[sel], sub_starts, t[pts], y[pts], yhat[pts], lower[pts], upper[pts])
            score[pts], low[pts], up[pts], sign[pts] = out.score, out.lower, out.upper, out.sign
        return score, low, up, sign

    def _prime(self, new: list[PointBatch]) -> None:
        """Prime the fresh slots of ``new`` series with their history, many series per run pass.

        Series are taken in groups of at most ``PRIME_POINTS`` history points, so that a fleet's first
        tick does not hold every series' history (and its band) in memory at once.
        """
        group: list[PointBatch] = []
        points = 0
        for batch in new:
            past = self._past(batch)
            if past is None:
                continue
            group.append(past)
            points += len(past.t)
            if points >= PRIME_POINTS:
                self._prime_group(group)
                group, points = [], 0
        if group:
            self._prime_group(group)
        heap.trim()  # the histories and their bands are free now

    def _prime_group(self, past: list[PointBatch]) -> None:
        col = self._columnar
        assert col is not None
        yhat, lower, upper, _, _ = self._bands.lookup(past)
        sizes = np.array([len(h.t) for h in past], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        t = np.concatenate([h.t for h in past])
        y = np.concatenate([h.y for h in past])
        rows = col.slots([h.series.id for h in past])
        col.update_runs(rows, starts, t, y, yhat, lower, upper, learn_only=True)

    def score_batch(self, batches: Sequence[PointBatch]) -> ScoredBatch:
        """Score the batches of one tick as columns: one band lookup, the calibration, one decision pass.

        A series without any model gets points with no band, score 0 and no anomaly.
        """
        batches = [b for b in batches if len(b.t)]
        if not batches:
            return _empty(self.params.threshold_multiplier)
        yhat, lower, upper, stale, versions = self._bands.lookup(batches)
        if self._columnar is not None:
            s, low, up, sign = self._calibrate_columnar(batches, yhat, lower, upper)
        else:
            s, low, up, sign = self._calibrate_each(batches, yhat, lower, upper)
        y = np.concatenate([b.y for b in batches])
        sizes = np.array([len(b.t) for b in batches], dtype=np.int64)
        side, zone = self._sides(batches, sizes)
        result = decide(s, y - yhat, self.params, sign=sign.astype(np.float64), side=side, dead_zone=zone)
        return ScoredBatch(
            series=[b.series for b in batches],
            sources=[b.source for b in batches],
            models=versions,
            owner=np.repeat(np.arange(len(batches)), sizes),
            ts=np.concatenate([b.t for b in batches]),
            value=y,
            yhat=yhat,
            lower=low,
            upper=up,
            score=result.score,
            is_anomaly=result.is_anomaly,
            severity=result.severity,
            confidence=result.confidence,
            stale=stale,
            threshold=self.params.threshold_multiplier,
            names=SEVERITIES,
        )

    def _sides(
        self, batches: Sequence[PointBatch], sizes: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Return each point's metric's side and dead zone, or (None, None) when no metric declares one."""
        if self.plans is None or not self.plans.declared:
            return None, None
        plans = [self.plans.of(b.series.id, b.series.labels) for b in batches]  # cached per series id
        pairs = [(plan.side, plan.dead_zone) for plan in plans]
        if not any(side or zone for side, zone in pairs):
            return None, None
        side = np.repeat(np.array([p[0] for p in pairs], dtype=np.int8), sizes)
        zone = np.repeat(np.array([p[1] for p in pairs], dtype=np.float64), sizes)
        return side, zone

    def score_many(self, batches: Sequence[PointBatch]) -> list[ScoredRecord]:
        """Score the batches of one tick (see :meth:`score_batch`) and return one record per point."""
        return self.score_batch(batches).records()


def _empty(threshold: float) -> ScoredBatch:
    z = np.zeros(0)
    return ScoredBatch(
        [],
        [],
        [],
        np.zeros(0, np.int64),
        z,
        z,
        z,
        z,
        z,
        z,
        z.astype(bool),
        z.astype(np.int8),
        z,
        z.astype(bool),
        threshold,
        SEVERITIES,
    )
