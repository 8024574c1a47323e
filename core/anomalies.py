"""Incidents as data: an :class:`Anomaly` and its effect on a series (a leaf module).

The simulator injects them into its hosts, ``scripts/make_dataset.py`` into the sample data and the
evaluation into a copy of the holdout; none of them depends on the others for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Anomaly", "anomaly_effect"]


@dataclass(frozen=True)
class Anomaly:
    """An injected incident: kind, start (epoch s), duration (s) and magnitude (percentage points)."""

    kind: str
    start: float
    duration: float
    magnitude: float


def anomaly_effect(values: np.ndarray, t: np.ndarray, anomalies: list[Anomaly]) -> np.ndarray:
    """Apply incidents to values at epoch seconds ``t``: spike, dip, level_shift, drift, flatline, dropout."""
    out = values.copy()
    for a in anomalies:
        inside = (t >= a.start) & (t < a.start + a.duration)
        if not inside.any():
            continue
        if a.kind == "spike":
            out[inside] += a.magnitude
        elif a.kind == "dip":
            out[inside] -= a.magnitude
        elif a.kind == "level_shift":
            out[inside] += a.magnitude
        elif a.kind == "drift":
            out[inside] += a.magnitude * (t[inside] - a.start) / a.duration
        elif a.kind == "flatline":
            first = int(np.argmax(inside))
            out[inside] = out[first]
        elif a.kind == "dropout":
            out[inside] = 0.0
        else:
            raise ValueError(f"unknown anomaly kind {a.kind!r}")
    return out
