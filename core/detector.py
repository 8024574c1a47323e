"""Score point batches against the current band of their series; hold the models, swap them atomically."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.model.store import ModelStore  # re-exported: the old import path keeps working
from core.records import PointBatch, ScoredRecord
from core.scoring import SEVERITIES, ScoreParams, score

__all__ = ["Detector", "ModelStore"]


class Detector:
    """Turn point batches into scored records with the current band (a lookup, never a model call)."""

    def __init__(self, store: ModelStore, params: ScoreParams) -> None:
        self.store = store
        self.params = params

    def score_many(self, batches: Sequence[PointBatch]) -> list[ScoredRecord]:
        """Score the batches of one tick in a single vectorised pass.

        Each series' band is looked up for its own timestamps; the scoring itself runs once over all
        points. A series without any model gets records with no band, score 0 and no anomaly.
        """
        batches = [b for b in batches if len(b.t)]
        if not batches:
            return []
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        versions: list[str] = []
        for batch in batches:
            model, borrowed = self.store.get(batch.series.id)
            if model is None:
                nan = np.full(len(batch.t), np.nan)
                parts.append((nan, nan, nan, np.ones(len(batch.t), dtype=bool)))
                versions.append("none")
            else:
                v = model.band.lookup(batch.t)
                parts.append((v.yhat, v.lower, v.upper, v.stale))
                versions.append(f"{model.id}@{model.train_end:.0f}" + ("(borrowed)" if borrowed else ""))
        y = np.concatenate([b.y for b in batches])
        yhat, lower, upper, stale = (np.concatenate([p[k] for p in parts]) for k in range(4))
        result = score(y, yhat, lower, upper, self.params)
        unscored = np.isnan(yhat)
        confidence = np.where(unscored, 0.0, result.confidence)
        names = np.asarray(SEVERITIES)[result.severity].tolist()
        cols = [
            a.tolist() for a in (y, yhat, lower, upper, result.score, result.is_anomaly, confidence, stale)
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
