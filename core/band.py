"""The forecast band: yhat, lower and upper precomputed on a regular time grid, looked up in O(1).

Scoring a point is a lookup (linear interpolation between grid points), never a model call. Beyond the
end of the grid (or before its start) the band repeats its last whole week (or day, for short grids)
with the trend held flat, and the point is marked *stale* so the monitor knows a refit is due: a model
trained months ago never extrapolates its trend to today.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from core.timegrid import DAY, WEEK

__all__ = ["Band", "BandValues"]


class BandValues(NamedTuple):
    """The band at some timestamps; ``stale`` marks points outside the grid (served by wrapping)."""

    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    stale: np.ndarray


@dataclass(frozen=True, eq=False)
class Band:
    """Forecast band on the grid ``start + i * step`` (epoch seconds, UTC)."""

    start: float
    step: float
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    trained_until: float

    def __post_init__(self) -> None:
        n = len(self.yhat)
        if n < 2 or len(self.lower) != n or len(self.upper) != n:
            raise ValueError("a band needs at least 2 grid points and equal-length yhat/lower/upper")
        if not self.step > 0:
            raise ValueError(f"band step must be positive, got {self.step}")
        for name in ("yhat", "lower", "upper"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def end(self) -> float:
        """Return the epoch second of the last grid point."""
        return self.start + self.step * (len(self.yhat) - 1)

    @property
    def period(self) -> float | None:
        """Return the wrap period used outside the grid: a week, a day, or None (hold the edge)."""
        span = self.end - self.start
        if span >= WEEK:
            return WEEK
        if span >= DAY:
            return DAY
        return None

    def lookup(self, t: np.ndarray | float) -> BandValues:
        """Return the band at epoch seconds ``t`` (vectorised, interpolated)."""
        times = np.atleast_1d(np.asarray(t, dtype=np.float64))
        start, end = self.start, self.end
        stale = (times > end) | (times < start)
        if stale.any():
            times = times.copy()
            period = self.period
            if period is None:
                times = np.clip(times, start, end)
            else:
                after = times > end
                times[after] -= np.ceil((times[after] - end) / period) * period
                before = times < start
                times[before] += np.ceil((start - times[before]) / period) * period
                times = np.clip(times, start, end)
        pos = (times - start) / self.step
        last = len(self.yhat) - 1
        i = np.clip(np.floor(pos).astype(np.int64), 0, last - 1)
        frac = np.clip(pos - i, 0.0, 1.0)

        def interp(arr: np.ndarray) -> np.ndarray:
            return arr[i] + (arr[i + 1] - arr[i]) * frac

        return BandValues(interp(self.yhat), interp(self.lower), interp(self.upper), stale)

    def to_dict(self) -> dict[str, Any]:
        """Return the band as plain JSON-able data (floats round-trip exactly through JSON)."""
        return {
            "start": self.start,
            "step": self.step,
            "trained_until": self.trained_until,
            "yhat": self.yhat.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
        }

    def to_compact(self) -> dict[str, Any]:
        """Return the band with its arrays as base64 float64 bytes and their SHA-256 (exact, 4x smaller)."""
        raw = [getattr(self, n).astype("<f8").tobytes() for n in ("yhat", "lower", "upper")]
        return {
            "start": self.start,
            "step": self.step,
            "trained_until": self.trained_until,
            "n": len(self.yhat),
            "dtype": "<f8",
            "sha256": hashlib.sha256(b"".join(raw)).hexdigest(),
            **{
                n: base64.b64encode(r).decode("ascii")
                for n, r in zip(("yhat", "lower", "upper"), raw, strict=True)
            },
        }

    @classmethod
    def from_compact(cls, data: dict[str, Any]) -> Band:
        """Build a band from :meth:`to_compact` output; ValueError if a length or the checksum is wrong."""
        raw = [base64.b64decode(data[n], validate=True) for n in ("yhat", "lower", "upper")]
        if data.get("dtype") != "<f8":
            raise ValueError(f"band dtype {data.get('dtype')!r} is not '<f8'")
        if hashlib.sha256(b"".join(raw)).hexdigest() != data["sha256"]:
            raise ValueError("band checksum mismatch: the arrays are corrupt")
        arrays = [np.frombuffer(r, dtype="<f8") for r in raw]
        if any(len(a) != int(data["n"]) for a in arrays):
            raise ValueError(f"band arrays do not hold the {data['n']} points the entry names")
        return cls(
            start=float(data["start"]),
            step=float(data["step"]),
            yhat=arrays[0],
            lower=arrays[1],
            upper=arrays[2],
            trained_until=float(data["trained_until"]),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Band:
        """Build a band from :meth:`to_dict` output."""
        return cls(
            start=float(data["start"]),
            step=float(data["step"]),
            yhat=np.asarray(data["yhat"], dtype=np.float64),
            lower=np.asarray(data["lower"], dtype=np.float64),
            upper=np.asarray(data["upper"], dtype=np.float64),
            trained_until=float(data["trained_until"]),
        )

    def equals(self, other: Band) -> bool:
        """Return whether two bands are identical (grid and values)."""
        return (
            self.start == other.start
            and self.step == other.step
            and self.trained_until == other.trained_until
            and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in ("yhat", "lower", "upper"))
        )
