"""Detection-quality measures: point and event precision/recall/F1, ROC and AUC (numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "PointMetrics",
    "events",
    "event_metrics",
    "point_metrics",
    "roc_auc",
    "roc_curve",
]


@dataclass(frozen=True)
class PointMetrics:
    """Confusion counts and the rates derived from them."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        """Return TP / (TP + FP), 0 when nothing was flagged."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """Return TP / (TP + FN), 0 when there was nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        """Return FP / (FP + TN): the share of normal points flagged."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return counts and rates as plain data."""
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "fpr": self.fpr,
        }


def point_metrics(truth: np.ndarray, flagged: np.ndarray) -> PointMetrics:
    """Count agreement of per-point truth and decisions."""
    truth, flagged = truth.astype(bool), flagged.astype(bool)
    return PointMetrics(
        tp=int(np.sum(truth & flagged)),
        fp=int(np.sum(~truth & flagged)),
        fn=int(np.sum(truth & ~flagged)),
        tn=int(np.sum(~truth & ~flagged)),
    )


def events(mask: np.ndarray, max_gap: int = 1) -> list[tuple[int, int]]:
    """Merge flagged points into events ``(first, last)``, inclusive; gaps up to ``max_gap`` points join."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def event_metrics(
    true_events: list[tuple[int, int]], flagged: np.ndarray, *, max_gap: int = 1
) -> dict[str, Any]:
    """Event-level quality: a true event is found if any of its points is flagged; a flagged event is
    correct if it overlaps a true event."""
    detected = [bool(flagged[a : b + 1].any()) for a, b in true_events]
    predicted = events(flagged, max_gap)
    truth_mask = np.zeros(len(flagged), dtype=bool)
    for a, b in true_events:
        truth_mask[a : b + 1] = True
    correct = [bool(truth_mask[a : b + 1].any()) for a, b in predicted]
    recall = sum(detected) / len(detected) if detected else 0.0
    precision = sum(correct) / len(correct) if correct else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_events": len(true_events),
        "detected_events": int(sum(detected)),
        "flagged_events": len(predicted),
        "false_events": int(len(correct) - sum(correct)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "detected": detected,
    }


def roc_curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (false positive rate, true positive rate, thresholds) over every distinct score."""
    truth = truth.astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], truth[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size > 1 else np.empty(0, dtype=np.int64)
    cut = np.concatenate([distinct, [s.size - 1]]) if s.size else np.empty(0, dtype=np.int64)
    tps = np.cumsum(t)[cut] if s.size else np.empty(0)
    fps = (cut + 1) - tps
    pos, neg = max(int(t.sum()), 1), max(int((~t).sum()), 1)
    fpr = np.concatenate([[0.0], fps / neg])
    tpr = np.concatenate([[0.0], tps / pos])
    thresholds = np.concatenate([[np.inf], s[cut]]) if s.size else np.array([np.inf])
    return fpr, tpr, thresholds


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Return the area under the ROC curve (ties count half), or None without both classes."""
    truth = truth.astype(bool)
    if truth.all() or not truth.any():
        return None
    fpr, tpr, _ = roc_curve(truth, scores)
    return float(np.trapezoid(tpr, fpr))
