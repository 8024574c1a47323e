"""Forecast-quality measures shared by train and evaluate: MAPE, errors, band coverage, EDA statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.band import Band
from core.scoring import ScoreParams, score
from core.timegrid import DAY, WEEK

__all__ = ["band_metrics", "eda_summary", "mape", "seasonality_strength"]


def mape(y: np.ndarray, yhat: np.ndarray, *, floor: float = 1.0) -> float | None:
    """Return the mean absolute percentage error in percent, over points with ``|y| >= floor``."""
    mask = np.abs(y) >= floor
    if not mask.any():
        return None
    return float(np.mean(np.abs(y[mask] - yhat[mask]) / np.abs(y[mask])) * 100)


def band_metrics(t: np.ndarray, y: np.ndarray, band: Band, params: ScoreParams) -> dict[str, Any]:
    """Return errors, band coverage and anomaly rate of values ``y`` at epoch seconds ``t``."""
    if len(y) == 0:
        return {"points": 0}
    values = band.lookup(t)
    err = y - values.yhat
    inside = (y >= values.lower) & (y <= values.upper)
    scores = score(y, values.yhat, values.lower, values.upper, params)
    return {
        "points": int(len(y)),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape_percent": mape(y, values.yhat),
        "coverage": float(np.mean(inside)),
        "mean_band_width": float(np.mean(values.upper - values.lower)),
        "anomaly_rate": float(np.mean(scores.is_anomaly)),
    }


def seasonality_strength(t: np.ndarray, y: np.ndarray, period: float, slot: float) -> float | None:
    """Return the share of variance explained by the mean per slot of the period (0 = none, 1 = all)."""
    if len(y) < 3 or (t[-1] - t[0]) < period:
        return None
    total = float(np.var(y))
    if total == 0:
        return 0.0
    idx = ((t % period) // slot).astype(np.int64)
    means = pd.Series(y).groupby(idx).transform("mean").to_numpy()
    return float(max(0.0, 1 - np.var(y - means) / total))


def eda_summary(t: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Return summary statistics and seasonality strength of one series."""
    q = np.quantile(y, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {
        "count": int(len(y)),
        "mean": float(np.mean(y)),
        "std": float(np.std(y)),
        "min": float(q[0]),
        "p05": float(q[1]),
        "median": float(q[2]),
        "p95": float(q[3]),
        "max": float(q[4]),
        "daily_seasonality_strength": seasonality_strength(t, y, DAY, 3600.0),
        "weekly_seasonality_strength": seasonality_strength(t, y, WEEK, 3600.0),
    }
