"""The ten-line baseline every evaluation reports beside the detector (no model, no tuning).

residual = |y - median of the previous 12 rows|, divided by the 99th percentile of that residual over
the previous 2,000 rows, mapped into [0, 1) by s / (1 + s). Causal: row i uses rows before it only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["baseline_scores"]


def baseline_scores(y: np.ndarray, median_rows: int = 12, scale_rows: int = 2000) -> np.ndarray:
    """Return the baseline's anomaly scores in [0, 1), one per value."""
    values = pd.Series(np.asarray(y, dtype=np.float64))
    centre = values.shift(1).rolling(median_rows, min_periods=1).median()
    dist = (values - centre).abs()
    scale = dist.shift(1).rolling(scale_rows, min_periods=1).quantile(0.99)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (dist / scale).to_numpy()
    s = np.where(np.isfinite(s), s, 0.0)
    return s / (1.0 + s)
