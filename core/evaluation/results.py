"""The evaluation's results: per-series holdout records with the truth, and the pooled metrics.

:class:`EvaluatedSeries` is what the holdout replay produces and what the report reads; it lives here,
below both, so the report never imports the replay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.config import Settings
from core.evaluation.baseline import baseline_scores
from core.evaluation.metrics import event_metrics, point_metrics, roc_auc
from core.model.quality import mape
from core.scoring import ScoreParams, decide

__all__ = ["EvaluatedSeries", "summarise"]


@dataclass
class EvaluatedSeries:
    """Per-point results of one series' holdout, with the truth."""

    id: str
    t: np.ndarray
    y: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    truth: np.ndarray
    true_events: list[tuple[int, int]]
    event_kinds: list[str]
    train_t: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    train_y: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))


def summarise(results: list[EvaluatedSeries], params: ScoreParams, settings: Settings) -> dict[str, Any]:
    """Pool the series and compute point, event, ranking and forecast metrics, plus the threshold sweep."""
    cat = {
        name: np.concatenate([getattr(r, name) for r in results])
        for name in ("y", "yhat", "lower", "upper", "score", "flagged", "truth")
    }
    normal = ~cat["truth"]
    inside = (cat["y"] >= cat["lower"]) & (cat["y"] <= cat["upper"])
    events_all, flagged_all, offset, kinds = [], [], 0, []
    for r in results:
        events_all += [(a + offset, b + offset) for a, b in r.true_events]
        kinds += r.event_kinds
        offset += len(r.t)
        flagged_all.append(r.flagged)
    ev = event_metrics(events_all, cat["flagged"])
    by_kind: dict[str, dict[str, int]] = {}
    for kind, hit in zip(kinds, ev.pop("detected"), strict=True):
        entry = by_kind.setdefault(kind, {"events": 0, "detected": 0})
        entry["events"] += 1
        entry["detected"] += int(hit)
    deviation = cat["y"] - cat["yhat"]
    sweep = []
    for k in settings.evaluation.threshold_grid:
        # The same decision on the same recorded scores: only the threshold changes.
        flagged_k = decide(
            cat["score"], deviation, dataclasses.replace(params, threshold_multiplier=k)
        ).is_anomaly
        pm = point_metrics(cat["truth"], flagged_k)
        em = event_metrics(events_all, flagged_k)
        sweep.append(
            {
                "threshold_multiplier": k,
                "point": pm.to_dict(),
                "event": {key: v for key, v in em.items() if key != "detected"},
            }
        )
    baseline = _baseline(results, cat["truth"], cat["flagged"], events_all)
    return {
        "threshold_multiplier": params.threshold_multiplier,
        "points": int(len(cat["y"])),
        "anomalous_points": int(cat["truth"].sum()),
        "series": [r.id for r in results],
        "point": point_metrics(cat["truth"], cat["flagged"]).to_dict(),
        "event": ev,
        "events_by_kind": by_kind,
        "roc_auc": roc_auc(cat["truth"], cat["score"]),
        "mape_normal_percent": mape(cat["y"][normal], cat["yhat"][normal]),
        "coverage_normal": float(inside[normal].mean()) if normal.any() else None,
        "nominal_coverage": settings.model.interval_width,
        "threshold_analysis": sweep,
        "baseline": baseline,
        "seed": settings.evaluation.seed,
    }


def _baseline(
    results: list[EvaluatedSeries], truth: np.ndarray, flagged: np.ndarray, true_events: list[tuple[int, int]]
) -> dict[str, Any]:
    """Score the same replayed values with the ten-line baseline, at the detector's false-positive rate."""
    parts = []
    for r in results:
        y = np.concatenate([r.train_y, r.y])
        parts.append(baseline_scores(y)[len(r.train_y) :])
    scores = np.concatenate(parts)
    normal = ~truth
    fpr = float(flagged[normal].mean()) if normal.any() else 0.0
    # The baseline's threshold that flags the same share of normal points as the detector does.
    cut = float(np.quantile(scores[normal], 1.0 - fpr)) if normal.any() else 0.5
    chosen = scores > cut
    em = event_metrics(true_events, chosen)
    return {
        "method": "|y - median of previous 12 rows| / trailing 99th percentile of 2,000 rows; s / (1 + s)",
        "roc_auc": roc_auc(truth, scores),
        "threshold": cut,
        "point": point_metrics(truth, chosen).to_dict(),
        "event": {key: v for key, v in em.items() if key != "detected"},
    }
