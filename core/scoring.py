"""Score values against a band and decide which are anomalies: pure and vectorised.

The score and the decision are separate. A score is a number where higher is more unusual and **1.0 is
the band edge**; for a value ``y`` with band ``(lower, yhat, upper)``::

    half  = upper - yhat  if y >= yhat  else  yhat - lower      (the half-width on the deviation's side)
    score = |y - yhat| / half                                   (band_score)

In the monitor the score comes from the calibrated band and its other channels (``core.calibration``);
``band_score`` is the same rule for a band alone (the training report, the band before calibration).

The decision (``decide``) with threshold ``k`` (``scoring.threshold_multiplier``)::

    is_anomaly = score > k   on the configured side(s), where |y - yhat| exceeds the dead zone

A band of zero width on the deviation's side gives score 0 for an exact match and ``SCORE_CAP``
otherwise. Scores are capped at ``SCORE_CAP`` so they stay finite in JSON and databases.

Severity (only for anomalies; ``NONE`` otherwise), cut points on the score itself::

    LOW       k        < score <= medium
    MEDIUM    medium   < score <= high
    HIGH      high     < score <= critical
    CRITICAL  critical < score

(an anomaly above a cut point that is below ``k`` starts at that level). Confidence is how sure the
decision is, in [0, 1]: ``|s^2 - k^2| / (s^2 + k^2)``: 0 on the threshold, 0.6 at twice or half of it,
towards 1 far beyond it (sure anomaly) and at the forecast (sure normal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["SCORE_CAP", "SEVERITIES", "ScoreParams", "Scores", "band_score", "decide", "score"]

SCORE_CAP = 1000.0
SEVERITIES = ("NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL")


@dataclass(frozen=True)
class ScoreParams:
    """The decision rule: threshold on the score, side, dead zone and severity cut points."""

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


def band_score(
    y: npt.ArrayLike, yhat: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike
) -> np.ndarray:
    """Return ``|y - yhat|`` over the band's half-width on the deviation's side (1.0 = band edge)."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    dev = y - yhat
    above = dev >= 0
    half = np.where(above, np.asarray(upper, np.float64) - yhat, yhat - np.asarray(lower, np.float64))
    half = np.maximum(half, 0.0)  # a crossed band (lower > yhat) counts as zero width
    absdev = np.abs(dev)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.where(half > 0, absdev / np.where(half > 0, half, 1.0), np.where(absdev > 0, SCORE_CAP, 0.0))
    return np.where(np.isnan(y) | np.isnan(yhat), 0.0, np.minimum(s, SCORE_CAP))


def decide(
    s: np.ndarray,
    deviation: np.ndarray,
    params: ScoreParams = ScoreParams(),
    sign: np.ndarray | None = None,
    *,
    side: np.ndarray | None = None,
    dead_zone: np.ndarray | None = None,
) -> Scores:
    """Apply the decision rule to scores (see the module docstring).

    ``deviation`` is ``y - yhat`` (NaN where there is no value or no forecast: never an anomaly);
    ``sign`` is the side of the evidence that decided the score (+1 above, -1 below, 0 for evidence with
    no side, such as a stuck value); by default the deviation's sign. ``side`` and ``dead_zone``, per
    point, are each point's metric's own: ``metrics[].side`` as +1 above, -1 below, 0 both (which
    leaves ``params.direction``), and ``metrics[].dead_zone`` (the larger of it and
    ``params.min_deviation`` applies).
    """
    s = np.minimum(np.nan_to_num(np.asarray(s, dtype=np.float64), nan=0.0), SCORE_CAP)
    deviation = np.asarray(deviation, dtype=np.float64)
    if sign is None:
        evidence = np.where(np.nan_to_num(deviation, nan=0.0) >= 0, 1, -1)
    else:
        evidence = np.asarray(sign)
    ok = np.ones(s.shape, dtype=bool)
    if params.direction == "above":
        ok = evidence >= 0
    elif params.direction == "below":
        ok = evidence <= 0
    if side is not None:
        side = np.asarray(side)
        ok = np.where(side > 0, evidence >= 0, np.where(side < 0, evidence <= 0, ok))
    valid = ~np.isnan(deviation)
    anomaly = (s > params.threshold_multiplier) & ok & valid
    zone: float | np.ndarray = params.min_deviation
    if dead_zone is not None:
        zone = np.maximum(np.asarray(dead_zone, dtype=np.float64), params.min_deviation)
    if np.any(np.asarray(zone) > 0):
        anomaly &= np.abs(np.nan_to_num(deviation, nan=0.0)) > zone
    severity = np.zeros(s.shape, dtype=np.int8)
    severity[anomaly] = 1 + np.searchsorted(
        [params.medium, params.high, params.critical], s[anomaly], side="left"
    )
    k2 = params.threshold_multiplier**2
    s2 = s * s
    confidence = np.where(valid, np.abs(s2 - k2) / (s2 + k2), 0.0)
    return Scores(score=s, is_anomaly=anomaly, severity=severity, confidence=confidence)


def score(
    y: np.ndarray,
    yhat: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    params: ScoreParams = ScoreParams(),
) -> Scores:
    """Score values against a band alone and decide which are anomalies."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    return decide(band_score(y, yhat, lower, upper), y - yhat, params)
