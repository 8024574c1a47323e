"""A clean series: rows sorted and merged, the unit decided, span and gaps described, odd traits named.

:func:`core.data.load_csv` applies these to each series of a file; they know nothing of CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from core.timegrid import DAY, to_epoch

__all__ = [
    "SeriesReport",
    "Unit",
    "describe_series",
    "detect_unit",
    "implausible",
    "sort_and_merge",
    "typical",
]

Unit = Literal["fraction", "percent", "raw"]


@dataclass(frozen=True)
class SeriesReport:
    """What cleaning found and did in one series."""

    rows: int
    start: str
    end: str
    step_seconds: float
    gaps: int
    missing_steps: int
    longest_gap_seconds: float


def detect_unit(values: np.ndarray, unit: str) -> tuple[Unit, float]:
    """Decide whether values are 0-1 fractions, 0-100 percentages or raw numbers; return (unit, scale)."""
    if unit == "fraction":
        return "fraction", 100.0
    if unit in ("percent", "raw"):
        return unit, 1.0  # type: ignore[return-value]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "raw", 1.0
    low, high = float(finite.min()), float(finite.max())
    if low >= 0 and high <= 1.0:
        return "fraction", 100.0
    if low >= 0 and high <= 100.0:
        return "percent", 1.0
    return "raw", 1.0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def typical(values: np.ndarray) -> np.ndarray:
    """Return the finite values without gross outliers (at most 0.1%), for deciding the unit."""
    finite = values[np.isfinite(values)]
    if finite.size < 10:
        return finite
    median = float(np.median(finite))
    spread = max(1.4826 * float(np.median(np.abs(finite - median))), 1e-9)
    keep = np.abs(finite - median) <= 50 * spread
    return finite[keep] if (~keep).sum() <= max(1.0, 0.001 * finite.size) else finite


def implausible(sid: str, frame: pd.DataFrame, vcol: str, *, percent: bool, now: float) -> list[str]:
    """Return one warning per implausible trait of a clean series (``ds``, ``y``, ``line``)."""
    y = frame["y"].to_numpy(float)
    lines = frame["line"].to_numpy() if "line" in frame else np.arange(len(y)) + 2
    found = []
    if percent and (y < 0).any():
        i = int(np.argmin(y))
        found.append(
            f"series {sid}: {_count(int((y < 0).sum()), 'negative value')} in '{vcol}' "
            f"(lowest {y[i]:g} on line {lines[i]}); CPU usage cannot be below 0%: check the source"
        )
    if percent and (y > 100).any():
        i = int(np.argmax(y))
        found.append(
            f"series {sid}: {_count(int((y > 100).sum()), 'value')} above 100% in '{vcol}' "
            f"(highest {y[i]:g} on line {lines[i]}); CPU usage is a percentage of all cores: "
            f"check the unit (data.unit)"
        )
    if len(y) and float(np.ptp(y)) == 0.0:
        found.append(
            f"series {sid}: every value is {y[0]:g} ({len(y)} rows); a constant series has no pattern to "
            f"learn and any change will be flagged: check the column '{vcol}'"
        )
    last = pd.Timestamp(frame["ds"].iloc[-1])
    ahead = last.value / 1e9 - now
    if ahead > DAY:
        days = ahead / DAY
        span = f"{days / 365.25:.1f} years" if days >= 365.25 else f"{days:.1f} days"
        found.append(
            f"series {sid}: last timestamp {last.isoformat()} (line {lines[-1]}) is {span} in the "
            f"future; check the clock of the source or data.timezone"
        )
    return found


def describe_series(frame: pd.DataFrame, gap_factor: float = 3.0) -> SeriesReport:
    """Summarise a clean series: span, typical step and gaps longer than ``gap_factor`` steps."""
    secs = to_epoch(frame["ds"])
    diffs = np.diff(secs)
    step = float(np.median(diffs)) if diffs.size else 0.0
    big = diffs > gap_factor * step if step > 0 else np.zeros(0, bool)
    missing = int(np.sum(np.round(diffs[big] / step) - 1)) if big.any() else 0
    return SeriesReport(
        rows=int(len(frame)),
        start=frame["ds"].iloc[0].isoformat(),
        end=frame["ds"].iloc[-1].isoformat(),
        step_seconds=step,
        gaps=int(big.sum()),
        missing_steps=missing,
        longest_gap_seconds=float(diffs[big].max()) if big.any() else 0.0,
    )


def sort_and_merge(frame: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int, int]:
    """Sort, merge duplicate timestamps and drop missing values; return (frame, unsorted, duplicates).

    A ``line`` column, if present, follows its rows (a merged timestamp keeps its first line).
    """
    # Copies only where something changes: a file of millions of clean, sorted rows is not duplicated.
    ns = pd.DatetimeIndex(frame["ds"]).as_unit("ns").asi8
    unsorted = int(np.sum(ns[1:] < np.maximum.accumulate(ns)[:-1])) if len(ns) > 1 else 0
    missing = np.isnan(frame["y"].to_numpy(float))
    if missing.any():
        frame = frame.loc[~missing]
    if unsorted:
        frame = frame.sort_values("ds", kind="stable")
    ns = pd.DatetimeIndex(frame["ds"]).as_unit("ns").asi8
    dups = int(np.count_nonzero(ns[1:] == ns[:-1]))
    if dups:
        if policy == "mean":
            agg = {"y": ("y", "mean")} | ({"line": ("line", "first")} if "line" in frame else {})
            frame = frame.groupby("ds", as_index=False, sort=True).agg(**agg)
        else:
            frame = frame.drop_duplicates("ds", keep="last" if policy == "last" else "first")
    keep = ["ds", "y", "line"] if "line" in frame else ["ds", "y"]
    return frame.reset_index(drop=True)[keep], unsorted, dups
