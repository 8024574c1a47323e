"""Score values against a forecast band: pure and vectorised.

For a value ``y`` with band ``(lower, yhat, upper)`` and threshold multiplier ``k``::

    half  = upper - yhat  if y >= yhat  else  yhat - lower      (the half-width on the deviation's side)
    score = |y - yhat| / (k * half)

so ``score == 1`` is the edge of the band widened by ``k`` and ``is_anomaly = score > 1`` (strictly), on
the configured side(s) and only where ``|y - yhat|`` exceeds the dead zone ``min_deviation``. A band of
zero width on the deviation's side gives ``score = 0`` for an exact match and ``SCORE_CAP`` otherwise.
Scores are capped at ``SCORE_CAP`` so they stay finite in JSON and databases.

Severity (only for anomalies; ``NONE`` otherwise), with default cut points 1.5, 2 and 3::

    LOW       1      < score <= medium
    MEDIUM    medium < score <= high
    HIGH      high   < score <= critical
    CRITICAL  critical < score

Confidence is how sure the anomaly decision is, in [0, 1]: ``|s^2 - 1| / (s^2 + 1)``. It is 0 on the
band edge (a coin toss), 0.6 at twice the edge or half of it, and tends to 1 far outside the band
(sure anomaly) and at the forecast itself (sure normal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["SCORE_CAP", "SEVERITIES", "ScoreParams", "Scores", "score"]

SCORE_CAP = 1000.0
SEVERITIES = ("NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL")


@dataclass(frozen=True)
class ScoreParams:
    """The decision rule: band widening, side, dead zone and severity cut points."""

    threshold_multiplier: float = 1.0
    direction: Literal["both", "above", "below"] = "both"
    min_deviation: float = 0.0
    medium: float = 1.5
    high: float = 2.0
    critical: float = 3.0

    def __post_init__(self) -> None:
        if not self.threshold_multiplier > 0:
            raise ValueError(f"threshold_multiplier must be > 0, got {self.threshold_multiplier}")
        if self.direction not in ("both", "above", "below"):
            raise ValueError(f"direction must be both, above or below, got {self.direction!r}")
        if not 1 < self.medium < self.high < self.critical:
            raise ValueError("severity cut points must satisfy 1 < medium < high < critical")


@dataclass(frozen=True)
class Scores:
    """Per-point results, arrays of equal length."""

    score: np.ndarray
    is_anomaly: np.ndarray
    severity: np.ndarray  # index into SEVERITIES
    confidence: np.ndarray

    def severity_names(self) -> list[str]:
        """Return the severity of each point as a name."""
        names = np.asarray(SEVERITIES)
        return names[self.severity].tolist()


def score(
    y: np.ndarray,
    yhat: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    params: ScoreParams = ScoreParams(),
) -> Scores:
    """Score values against their band and decide which are anomalies (see the module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    dev = y - yhat
    above = dev >= 0
    half = np.where(above, np.asarray(upper, np.float64) - yhat, yhat - np.asarray(lower, np.float64))
    half = np.maximum(half, 0.0)  # a crossed band (lower > yhat) counts as zero width
    absdev = np.abs(dev)
    width = params.threshold_multiplier * half
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.where(
            width > 0, absdev / np.where(width > 0, width, 1.0), np.where(absdev > 0, SCORE_CAP, 0.0)
        )
    s = np.where(np.isnan(y), 0.0, np.minimum(s, SCORE_CAP))

    side = np.ones_like(above)
    if params.direction == "above":
        side = above
    elif params.direction == "below":
        side = ~above
    anomaly = (s > 1.0) & side & (absdev > params.min_deviation) & ~np.isnan(y)

    severity = np.zeros(s.shape, dtype=np.int8)
    severity[anomaly] = 1 + np.searchsorted(
        [params.medium, params.high, params.critical], s[anomaly], side="left"
    )
    s2 = s * s
    confidence = np.abs(s2 - 1.0) / (s2 + 1.0)
    return Scores(score=s, is_anomaly=anomaly, severity=severity, confidence=confidence)
