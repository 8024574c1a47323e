"""Score point batches against the current band of their series; hold the models, swap them atomically."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

import numpy as np
from loguru import logger

from core.artifact import ModelArtifact, SeriesModel
from core.records import PointBatch, ScoredRecord
from core.scoring import SEVERITIES, ScoreParams, score

__all__ = ["Detector", "ModelStore"]


class ModelStore:
    """Series id -> model; readers never lock, a refit replaces one entry by swapping the whole map.

    A series with no model of its own borrows the first model of the artifact (logged once) until a
    refit gives it its own.
    """

    def __init__(self, artifact: ModelArtifact | None = None) -> None:
        self._models: dict[str, SeriesModel] = dict(artifact.models) if artifact else {}
        self._default: SeriesModel | None = next(iter(self._models.values()), None)
        self.artifact = artifact
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def get(self, series_id: str) -> tuple[SeriesModel | None, bool]:
        """Return (model, borrowed) for a series; borrowed is True when it is another series' model."""
        model = self._models.get(series_id)
        if model is not None:
            return model, False
        if series_id not in self._warned:
            self._warned.add(series_id)
            if self._default is not None:
                logger.warning(
                    f"series {series_id} has no model of its own; using {self._default.id}'s until refit"
                )
            else:
                logger.warning(
                    f"series {series_id} has no model yet; its points are stored unscored until refit"
                )
        return self._default, True

    def own(self, series_id: str) -> SeriesModel | None:
        """Return the series' own model, if any."""
        return self._models.get(series_id)

    def put(self, model: SeriesModel) -> None:
        """Install a (re)fitted model; readers see the old map or the new one, never a mix."""
        with self._lock:
            models = dict(self._models)
            models[model.id] = model
            self._models = models
            if self._default is None:
                self._default = model

    def models(self) -> dict[str, SeriesModel]:
        """Return a snapshot of all own models."""
        return dict(self._models)


class Detector:
    """Turn point batches into scored records with the current band (a lookup, never a model call)."""

    def __init__(self, store: ModelStore, params: ScoreParams) -> None:
        self.store = store
        self.params = params

    def score(self, batch: PointBatch) -> list[ScoredRecord]:
        """Score one batch; a series without any model gets records with no band and score 0."""
        n = len(batch.t)
        if n == 0:
            return []
        model, borrowed = self.store.get(batch.series.id)
        if model is None:
            nan = np.full(n, np.nan)
            yhat, lower, upper, stale = nan, nan, nan, np.ones(n, dtype=bool)
            version = "none"
        else:
            yhat, lower, upper, stale = model.band.lookup(batch.t)
            version = f"{model.id}@{model.train_end:.0f}" + ("(borrowed)" if borrowed else "")
        if model is None:
            s = np.zeros(n)
            anomaly = np.zeros(n, dtype=bool)
            severity = np.zeros(n, dtype=np.int8)
            confidence = np.zeros(n)
        else:
            result = score(batch.y, yhat, lower, upper, self.params)
            s, anomaly, severity, confidence = (
                result.score,
                result.is_anomaly,
                result.severity,
                result.confidence,
            )
        labels = dict(batch.series.labels)
        threshold = self.params.threshold_multiplier
        return [
            ScoredRecord(
                ts=float(t),
                series=batch.series.id,
                labels=labels,
                host=batch.series.host,
                source=batch.source,
                value=float(v),
                yhat=float(h),
                lower=float(lo),
                upper=float(up),
                score=float(sc),
                is_anomaly=bool(a),
                severity=SEVERITIES[int(sv)],
                confidence=float(c),
                threshold=threshold,
                model=version,
                stale=bool(st),
            )
            for t, v, h, lo, up, sc, a, sv, c, st in zip(
                batch.t, batch.y, yhat, lower, upper, s, anomaly, severity, confidence, stale, strict=True
            )
        ]


def count_by_severity(records: Iterable[ScoredRecord]) -> dict[str, int]:
    """Return the number of anomalies per severity."""
    counts: dict[str, int] = {}
    for r in records:
        if r.is_anomaly:
            counts[r.severity] = counts.get(r.severity, 0) + 1
    return counts


def finite(x: float) -> bool:
    """Return whether x is a finite number."""
    return isinstance(x, float) and math.isfinite(x)
