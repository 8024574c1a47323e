"""Robust training input: gross outliers found and left out of a fit, and data finer than the band averaged.

Outlier rule (:func:`find_outliers`): the residual of each value from a centred rolling median over about
an hour of rows (at least 5, at most 61 rows), divided by the series' robust noise unit, 1.4826 times the
median absolute residual (floored at 5% of the range between the 1st and 99th percentiles, and at 0.1%
of the median level, so that a noiseless or flat series still has a unit). A value more than
``OUTLIER_CUT`` (10) units away is an outlier: for Gaussian noise that happens once in 10^23 values, so
it flags a typo, a unit slip or a counter glitch (``1e6`` among percentages), not an ordinary peak; a
labelled incident is left out by its label window, not by this rule. At most ``MAX_OUTLIER_SHARE`` (1%)
of the rows, the farthest first, are flagged: a series that has more is heavy-tailed, and its tails
belong in the band.

Aggregation (:func:`aggregate`): one row is kept per step of a regular grid (``floor(t / step)``, the
first row of each step, stamped at the step's start); it bounds the fit to the band's resolution while
keeping the noise of single points, which the band has to cover.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["MAX_OUTLIER_SHARE", "OUTLIER_CUT", "aggregate", "find_outliers", "nice_step"]

OUTLIER_CUT = 10.0
MAX_OUTLIER_SHARE = 0.01
_NICE_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200)


def find_outliers(t: np.ndarray, y: np.ndarray, *, cut: float = OUTLIER_CUT) -> np.ndarray:
    """Return a boolean mask of the gross outliers of values ``y`` at sorted epoch seconds ``t``."""
    n = len(y)
    mask = np.zeros(n, dtype=bool)
    if n < 5:
        return mask
    step = float(np.median(np.diff(t))) if n > 1 else 0.0
    window = int(np.clip(round(3600.0 / step) if step > 0 else 5, 5, 61)) | 1
    median = pd.Series(y).rolling(window, center=True, min_periods=1).median().to_numpy()
    resid = np.abs(y - median)
    unit = 1.4826 * float(np.median(resid))
    low, high = np.quantile(y, [0.01, 0.99])
    # Floors: a noiseless series still has a unit (5% of its range), and a flat one too (0.1% of its level).
    unit = max(unit, 0.05 * float(high - low), 1e-3 * max(1.0, float(np.median(np.abs(y)))))
    far = np.flatnonzero(resid > cut * unit)
    limit = int(MAX_OUTLIER_SHARE * n)
    if far.size > limit:
        far = far[np.argsort(resid[far])[::-1][:limit]]
    mask[far] = True
    return mask


def nice_step(seconds: float) -> int:
    """Return the smallest round step (1 s, 5 s, ..., 5 min, 10 min, ..., 12 h) not below ``seconds``."""
    for step in _NICE_STEPS:
        if step >= seconds:
            return step
    return int(np.ceil(seconds / 86400.0)) * 86400


def aggregate(frame: pd.DataFrame, step: float) -> pd.DataFrame:
    """Keep the first row of a ``ds, y`` frame in each ``step`` seconds; return a frame on that grid.

    A sample, not a mean: the band must cover single points, and a mean of n points has 1/sqrt(n) of
    their noise (averaging 1-second data to 5 minutes gave a band that covered 9% of the points).
    """
    ns = pd.DatetimeIndex(frame["ds"]).as_unit("ns").asi8
    step_ns = int(round(step * 1e9))
    bucket = (ns // step_ns) * step_ns
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])  # rows are sorted by time
    return pd.DataFrame(
        {"ds": pd.to_datetime(bucket[first], unit="ns", utc=True), "y": frame["y"].to_numpy(float)[first]}
    )
