"""Many bands as one table: the points of every series of a tick looked up in one vectorised pass.

``BandTable.lookup(which, t)`` gives exactly what ``bands[which[i]].lookup(t[i])`` gives (the same
operations on the same numbers, elementwise), without a Python call per series.
"""

from __future__ import annotations

import numpy as np

from core.band import Band, BandValues

__all__ = ["BandTable"]


class BandTable:
    """Bands stacked end to end, with each one's grid (start, step, end, wrap period, offset).

    With ``adopt`` the bands are made to view the table's arrays (their values are unchanged).
    """

    def __init__(self, bands: list[Band], *, adopt: bool = False) -> None:
        self.bands = bands
        n = np.array([len(b.yhat) for b in bands], dtype=np.int64)
        self.offset = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        self.last = n - 1
        self.start = np.array([b.start for b in bands], dtype=np.float64)
        self.step = np.array([b.step for b in bands], dtype=np.float64)
        self.end = np.array([b.end for b in bands], dtype=np.float64)
        self.period = np.array([b.period or np.nan for b in bands], dtype=np.float64)
        self.yhat, self.lower, self.upper = (
            self._stack(name, n, adopt) for name in ("yhat", "lower", "upper")
        )

    def _stack(self, name: str, n: np.ndarray, adopt: bool) -> np.ndarray:
        whole = np.concatenate([getattr(b, name) for b in self.bands]) if self.bands else np.zeros(0)
        if adopt:
            # The bands' arrays become read-only views into the table: the table costs no memory of its
            # own, and each old array goes as soon as nothing else holds it (one name at a time, so a
            # rebuild holds at most one extra column of every band). The values do not change.
            whole.setflags(write=False)
            for b, off, size in zip(self.bands, self.offset.tolist(), n.tolist(), strict=True):
                object.__setattr__(b, name, whole[off : off + size])
        return whole

    def lookup(self, which: np.ndarray, t: np.ndarray) -> BandValues:
        """Return the band of point ``i`` from band ``which[i]`` at epoch second ``t[i]``."""
        times = np.asarray(t, dtype=np.float64)
        start, end = self.start[which], self.end[which]
        stale = (times > end) | (times < start)
        if stale.any():
            times = times.copy()
            period = self.period[which]
            hold = stale & np.isnan(period)
            times[hold] = np.clip(times[hold], start[hold], end[hold])
            after = (times > end) & ~hold
            times[after] -= np.ceil((times[after] - end[after]) / period[after]) * period[after]
            before = (times < start) & ~hold
            times[before] += np.ceil((start[before] - times[before]) / period[before]) * period[before]
            wrap = stale & ~hold
            times[wrap] = np.clip(times[wrap], start[wrap], end[wrap])
        pos = (times - start) / self.step[which]
        i = np.clip(np.floor(pos).astype(np.int64), 0, self.last[which] - 1)
        frac = np.clip(pos - i, 0.0, 1.0)
        k = self.offset[which] + i

        def interp(arr: np.ndarray) -> np.ndarray:
            return arr[k] + (arr[k + 1] - arr[k]) * frac

        return BandValues(interp(self.yhat), interp(self.lower), interp(self.upper), stale)
