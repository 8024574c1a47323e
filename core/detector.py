"""Score point batches against the current band of their series, calibrated online; hold the models."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from core.calibration import CalibrationParams, SeriesCalibrator
from core.config import Settings
from core.model.store import ModelStore
from core.records import PointBatch, ScoredRecord, SeriesRef
from core.scoring import SEVERITIES, ScoreParams, decide

__all__ = ["Detector", "calibration_params"]


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


class Detector:
    """Turn point batches into scored records: the band is a lookup, the score is calibrated online.

    Each series gets a :class:`SeriesCalibrator` the first time it is seen; with ``history`` (the
    source's ``history``) it is first primed with the series' last ``prime_seconds`` of values against
    the current band, so a restarted monitor or an evaluation does not start blind.
    """

    def __init__(
        self,
        store: ModelStore,
        params: ScoreParams,
        calibration: CalibrationParams | None = None,
        *,
        history: Callable[[SeriesRef, float, float], PointBatch] | None = None,
        prime_seconds: float = 0.0,
        calibrator: Callable[[CalibrationParams], SeriesCalibrator] = SeriesCalibrator,
    ) -> None:
        self.store = store
        self.params = params
        self.calibration = calibration or CalibrationParams()
        self.history = history
        self.prime_seconds = prime_seconds
        self._new_calibrator = calibrator
        self._calibrators: dict[str, SeriesCalibrator] = {}

    def _band(self, batch: PointBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
        model, borrowed = self.store.get(batch.series.id)
        n = len(batch.t)
        if model is None:
            nan = np.full(n, np.nan)
            return nan, nan, nan, np.ones(n, dtype=bool), "none"
        v = model.band.lookup(batch.t)
        version = f"{model.id}@{model.train_end:.0f}" + ("(borrowed)" if borrowed else "")
        return v.yhat, v.lower, v.upper, v.stale, version

    def _calibrator(self, batch: PointBatch) -> SeriesCalibrator:
        sid = batch.series.id
        cal = self._calibrators.get(sid)
        if cal is None:
            cal = self._calibrators[sid] = self._new_calibrator(self.calibration)
            if self.history is not None and self.prime_seconds > 0 and len(batch.t):
                first = float(batch.t[0])
                past = self.history(batch.series, first - self.prime_seconds, first - 1e-6)
                keep = past.t < first
                if keep.any():
                    hist = PointBatch(batch.series, past.t[keep], past.y[keep], past.source)
                    yhat, lower, upper, _, _ = self._band(hist)
                    cal.update(hist.t, hist.y, yhat, lower, upper)
        return cal

    def score_many(self, batches: Sequence[PointBatch]) -> list[ScoredRecord]:
        """Score the batches of one tick: band lookups, the online calibration, one decision pass.

        A series without any model gets records with no band, score 0 and no anomaly.
        """
        batches = [b for b in batches if len(b.t)]
        if not batches:
            return []
        parts: list[tuple[np.ndarray, ...]] = []
        versions: list[str] = []
        for batch in batches:
            yhat, lower, upper, stale, version = self._band(batch)
            cal = self._calibrator(batch).update(batch.t, batch.y, yhat, lower, upper)
            parts.append((yhat, cal.lower, cal.upper, stale, cal.score, cal.sign.astype(np.float64)))
            versions.append(version)
        y = np.concatenate([b.y for b in batches])
        yhat, lower, upper, stale, s, sign = (np.concatenate([p[k] for p in parts]) for k in range(6))
        result = decide(s, y - yhat, self.params, sign=sign)
        names = np.asarray(SEVERITIES)[result.severity].tolist()
        cols = [
            a.tolist()
            for a in (y, yhat, lower, upper, result.score, result.is_anomaly, result.confidence, stale)
        ]
        threshold = self.params.threshold_multiplier
        records: list[ScoredRecord] = []
        offset = 0
        for batch, version in zip(batches, versions, strict=True):
            ref, labels, n = batch.series, dict(batch.series.labels), len(batch.t)
            for i, t in enumerate(batch.t.tolist(), start=offset):
                records.append(
                    ScoredRecord(
                        ts=t,
                        series=ref.id,
                        labels=labels,
                        host=ref.host,
                        source=batch.source,
                        value=cols[0][i],
                        yhat=cols[1][i],
                        lower=cols[2][i],
                        upper=cols[3][i],
                        score=cols[4][i],
                        is_anomaly=cols[5][i],
                        severity=names[i],
                        confidence=cols[6][i],
                        threshold=threshold,
                        model=version,
                        stale=cols[7][i],
                    )
                )
            offset += n
        return records
