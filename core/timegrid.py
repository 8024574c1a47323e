"""Time on the monitor's grid: ``DAY``/``WEEK``, epoch conversion and grid arithmetic (a leaf module).

Every timestamp inside the loop is epoch seconds (UTC, float64). The conversions from and to pandas
live here, once: a naive timestamp is taken as UTC, an aware one is converted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["DAY", "WEEK", "align_down", "from_epoch", "grid_times", "iso_to_epoch", "to_epoch", "to_iso"]

DAY = 86400.0
WEEK = 7 * DAY


def to_epoch(values: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Return epoch seconds (float64) of datetimes; naive ones are taken as UTC."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.tz_convert("UTC").as_unit("ns").asi8 / 1e9


def from_epoch(t: np.ndarray | float) -> pd.DatetimeIndex:
    """Return UTC datetimes for epoch seconds."""
    return pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True))


def iso_to_epoch(text: str) -> float:
    """Return epoch seconds of one ISO 8601 timestamp (as written by :func:`to_iso`)."""
    return float(pd.Timestamp(text).as_unit("ns").value / 1e9)


def to_iso(epoch: float) -> str:
    """Return the ISO 8601 form (UTC, ``+00:00``) of epoch seconds."""
    return pd.Timestamp(epoch, unit="s", tz="UTC").isoformat()


def align_down(t: float, interval: float) -> float:
    """Return the last grid time (a multiple of ``interval`` since the epoch) at or before ``t``."""
    return math.floor(t / interval + 1e-9) * interval


def grid_times(after: float, until: float, interval: float, limit: int | None = None) -> np.ndarray:
    """Return the grid times in ``(after, until]``, the most recent ``limit`` of them if given."""
    first = align_down(after, interval) + interval
    last = align_down(until, interval)
    if last < first:
        return np.empty(0)
    n = int(round((last - first) / interval)) + 1
    if limit is not None and n > limit:
        first += (n - limit) * interval
        n = limit
    return first + interval * np.arange(n, dtype=np.float64)
