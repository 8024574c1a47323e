"""Reference detector for the NAB scorer's tests: NAB's windowedGaussian, rewritten from its description.

NAB's ``nab/detectors/gaussian/windowedGaussian_detector.py`` scores each row by how far it lies in the
tail of a normal distribution fitted to earlier rows: ``1 - Q(|x - mean| / std)`` with Q the normal tail
probability (via erfc). The fit covers every earlier row until 6,400 rows have been seen; then it is
refitted every 100 rows on the last 6,400. The first row scores 0. A zero std becomes 1e-6.
The floating-point operations follow NAB's order so that ties at exactly 1.0 come out the same.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["windowed_gaussian"]


def _fit(window: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Return (mean, std) as NAB computes them (numpy mean and population std; 0 std -> 1e-6)."""
    std = float(np.std(window))
    return float(np.mean(window)), (std if std != 0.0 else 0.000001)


def windowed_gaussian(values: npt.ArrayLike, window: int = 6400, step: int = 100) -> npt.NDArray[np.float64]:
    """Return NAB windowedGaussian anomaly scores in [0, 1], one per value, computed causally."""
    x = np.asarray(values, dtype=np.float64)
    scores = np.zeros(len(x))
    mean, std = 0.0, 1.0
    for i, value in enumerate(x.tolist()):
        if i > 0:
            # Q(z) of the mirrored point: NAB reflects values below the mean (2 * mean - x) first.
            v = 2 * mean - value if value < mean else value
            z = (v - mean) / std
            scores[i] = 1 - 0.5 * math.erfc(z / math.sqrt(2))
        if i < window:
            mean, std = _fit(x[: i + 1])
        elif (i + 1 - window) % step == 0:
            mean, std = _fit(x[i + 1 - window : i + 1])
    return scores
