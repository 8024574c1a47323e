"""Per-slot rolling windows as numpy arrays: rows are series slots, one vectorised push per tick.

The building blocks of :class:`core.columnar.ColumnarCalibrator`; each reproduces, bit for bit, what a
``core.calibration`` window of Python floats gives:

* :class:`Ring`: the last ``size`` values in arrival order, ``(S, size)`` with a head per row.
* :class:`QuantileWindow`: a ring plus the sums of its positive and negative parts and, for the quantiles
  near either end, a sorted block of the ``K`` largest (and of the ``K`` smallest) values. A quantile at
  ``p0 = 2.5%`` of 1,000 values needs only the 26 values nearest its end, so a block of a few dozen is
  kept sorted by a vectorised insert and delete, and rebuilt from the ring (a sort of the row) in the
  rare case its count falls below what the quantiles need.
* :class:`RankWindow`: a ring plus a sorted copy of it from the last rebuild and the values added and
  removed since; the rank of a value is a vectorised binary search plus two small counts. Rows are
  rebuilt (one sort each) on staggered schedules, so a fleet that started together does not rebuild in
  the same tick.

Every method takes ``rows``, an array of distinct slot indices.
"""

from __future__ import annotations

import numpy as np

__all__ = ["QuantileWindow", "RankWindow", "Ring", "ordered_sum"]


def _grown(a: np.ndarray, capacity: int, fill: float | int) -> np.ndarray:
    out = np.full((capacity, *a.shape[1:]), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class Ring:
    """The last ``size`` values of each row in arrival order."""

    def __init__(self, size: int, capacity: int) -> None:
        self.size = size
        self.buf = np.zeros((capacity, size))
        self.n = np.zeros(capacity, dtype=np.int64)
        self.head = np.zeros(capacity, dtype=np.int64)  # where the next value goes

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` rows (existing rows keep their state)."""
        self.buf = _grown(self.buf, capacity, 0.0)
        self.n = _grown(self.n, capacity, 0)
        self.head = _grown(self.head, capacity, 0)

    def clear(self, rows: np.ndarray) -> None:
        """Forget the rows' values."""
        self.n[rows] = 0
        self.head[rows] = 0

    def push(self, rows: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append ``x``; return (evicted, old): whether the row was full and the value it dropped."""
        h = self.head[rows]
        old = self.buf[rows, h]
        full = self.n[rows] == self.size
        self.buf[rows, h] = x
        h += 1
        h[h == self.size] = 0
        self.head[rows] = h
        self.n[rows] += ~full
        return full, old

    def ordered(self, rows: np.ndarray) -> np.ndarray:
        """Return full rows' values oldest first, ``(len(rows), size)``."""
        idx = self.head[rows, None] + np.arange(self.size)
        idx[idx >= self.size] -= self.size
        return np.take_along_axis(self.buf[rows], idx, axis=1)

    def valid(self, rows: np.ndarray, fill: float) -> np.ndarray:
        """Return the rows' values with ``fill`` where a row holds no value yet."""
        vals = self.buf[rows]
        return np.where(np.arange(self.size) < self.n[rows, None], vals, fill)

    def values(self, row: int) -> list[float]:
        """Return one row's values oldest first, as Python floats."""
        n, h = int(self.n[row]), int(self.head[row])
        vals = self.buf[row]
        return (np.concatenate([vals[h:], vals[:h]]) if n == self.size else vals[:n]).tolist()

    def load(self, row: int, values: list[float]) -> None:
        """Set one row to ``values`` (oldest first, at most ``size``)."""
        n = len(values)
        self.buf[row, :n] = values
        self.n[row] = n
        self.head[row] = n % self.size


def ordered_sum(cols: np.ndarray) -> np.ndarray:
    """Sum each row left to right, as Python's ``sum`` of floats does (numpy's pairwise sum differs)."""
    acc = cols[:, 0] + 0.0
    for j in range(1, cols.shape[1]):
        acc += cols[:, j]
    return acc


class _Block:
    """The ``k`` largest values of each row's window, sorted descending (``-inf`` past the count)."""

    def __init__(self, k: int, capacity: int) -> None:
        self.k = k
        self.top = np.full((capacity, k), -np.inf)
        self.c = np.zeros(capacity, dtype=np.int64)
        self._j = np.arange(k)

    def grow(self, capacity: int) -> None:
        self.top = _grown(self.top, capacity, -np.inf)
        self.c = _grown(self.c, capacity, 0)

    def clear(self, rows: np.ndarray) -> None:
        self.top[rows] = -np.inf
        self.c[rows] = 0

    def insert(self, rows: np.ndarray, x: np.ndarray, n_before: np.ndarray) -> None:
        c = self.c[rows]
        low = self.top[rows, np.maximum(c - 1, 0)]
        # Everything outside the block is <= its smallest value: x joins if it is larger, or if the
        # block holds the whole window.
        take = ((c == n_before) & (c < self.k)) | (x > low)
        if not take.any():
            return
        r, x, c = rows[take], x[take], c[take]
        w = min(int(c.max()) + 1, self.k)  # columns past every row's count hold -inf: leave them
        t = self.top[r, :w]
        p = (t > x[:, None]).sum(axis=1)
        shifted = np.empty_like(t)
        shifted[:, 1:] = t[:, :-1]
        shifted[:, 0] = -np.inf
        new = np.where(self._j[:w] < p[:, None], t, shifted)
        new[np.arange(len(r)), p] = x
        self.top[r, :w] = new
        self.c[r] = np.minimum(c + 1, self.k)

    def delete(self, rows: np.ndarray, old: np.ndarray) -> None:
        c = self.c[rows]
        take = (c > 0) & (old >= self.top[rows, np.maximum(c - 1, 0)])
        if not take.any():
            return
        r, old, c = rows[take], old[take], c[take]
        w = int(c.max())
        t = self.top[r, :w]
        p = (t > old[:, None]).sum(axis=1)  # the first copy of ``old``
        shifted = np.empty_like(t)
        shifted[:, :-1] = t[:, 1:]
        shifted[:, -1] = -np.inf
        self.top[r, :w] = np.where(self._j[:w] < p[:, None], t, shifted)
        self.c[r] = c - 1

    def refill(self, rows: np.ndarray, values: np.ndarray, n: np.ndarray) -> None:
        """Rebuild from the rows' whole windows (``values`` padded with ``-inf``)."""
        k = min(self.k, values.shape[1])
        self.top[rows] = -np.inf
        self.top[rows, :k] = -np.sort(-values, axis=1)[:, :k]
        self.c[rows] = np.minimum(n, self.k)


class QuantileWindow:
    """A window of each row's last ``size`` values: its extreme quantiles and positive/negative sums."""

    def __init__(self, size: int, capacity: int, p: float, lower: bool) -> None:
        self.ring = Ring(size, capacity)
        self.pos = np.zeros(capacity)  # sum of max(x, 0), accumulated as the reference does
        self.neg = np.zeros(capacity)  # sum of max(-x, 0)
        # Quantiles at p or 1 - p (and beyond) read at most the ``need`` values nearest the end.
        self.need = int((size - 1) * p) + 2
        k = self.need + max(self.need, 32)
        self.hi = _Block(k, capacity)
        self.lo = _Block(k, capacity) if lower else None  # the largest of -x: the smallest of x

    @property
    def n(self) -> np.ndarray:
        """Return how many values each row holds."""
        return self.ring.n

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` rows."""
        self.ring.grow(capacity)
        self.pos = _grown(self.pos, capacity, 0.0)
        self.neg = _grown(self.neg, capacity, 0.0)
        for b in (self.hi, self.lo):
            if b is not None:
                b.grow(capacity)

    def clear(self, rows: np.ndarray) -> None:
        """Forget the rows' values."""
        self.ring.clear(rows)
        self.pos[rows] = 0.0
        self.neg[rows] = 0.0
        for b in (self.hi, self.lo):
            if b is not None:
                b.clear(rows)

    def push(self, rows: np.ndarray, x: np.ndarray) -> None:
        """Append ``x`` to each row, dropping its oldest value when full."""
        if not len(rows):
            return
        n_before = self.ring.n[rows]
        full, old = self.ring.push(rows, x)
        self.pos[rows] += np.maximum(x, 0.0)
        self.neg[rows] += np.maximum(-x, 0.0)
        er, eo = rows[full], old[full]
        if len(er):
            self.pos[er] -= np.maximum(eo, 0.0)
            self.neg[er] -= np.maximum(-eo, 0.0)
        n = self.ring.n[rows]
        for block, sign in ((self.hi, 1.0), (self.lo, -1.0)):
            if block is None:
                continue
            block.insert(rows, sign * x, n_before)
            if len(er):
                block.delete(er, sign * eo)
            short = block.c[rows] < np.minimum(self.need, n)
            if short.any():
                sr = rows[short]
                block.refill(sr, sign * self.ring.valid(sr, -sign * np.inf), n[short])

    def load(self, row: int, values: list[float], pos: float, neg: float) -> None:
        """Set one row to ``values`` (oldest first) with its running sums, and rebuild its blocks."""
        self.ring.load(row, values)
        self.pos[row], self.neg[row] = pos, neg
        r, n = np.array([row]), self.ring.n[[row]]
        for block, sign in ((self.hi, 1.0), (self.lo, -1.0)):
            if block is not None:
                block.refill(r, sign * self.ring.valid(r, -sign * np.inf), n)

    def quantile(self, rows: np.ndarray, q: float) -> np.ndarray:
        """Return the rows' ``q`` quantiles (linear interpolation); ``q`` within ``p`` of 0 or 1."""
        n = self.ring.n[rows]
        h = (n - 1) * q
        lo = h.astype(np.int64)
        frac = h - lo
        if q > 0.5:  # the block of the largest: rank j is top[n - 1 - j]
            t = self.hi.top
            a = t[rows, n - 1 - lo]
            b = t[rows, np.maximum(n - 2 - lo, 0)]
            return np.where(lo + 1 >= n, t[rows, 0], a + frac * (b - a))
        assert self.lo is not None
        t = self.lo.top  # holds -x: rank j of x is -top[j]
        a = -t[rows, lo]
        b = -t[rows, np.minimum(lo + 1, self.lo.k - 1)]
        return np.where(lo + 1 >= n, -t[rows, np.clip(n - 1, 0, self.lo.k - 1)], a + frac * (b - a))


class RankWindow:
    """A window of each row's last ``size`` values that counts how many lie below a value."""

    def __init__(self, size: int, capacity: int, every: int = 32) -> None:
        self.ring = Ring(size, capacity)
        self.every = every
        self.sorted = np.full((capacity, size), np.inf)
        self.added = np.zeros((capacity, every))
        self.removed = np.full((capacity, every), np.nan)  # NaN: nothing removed (never counted)
        self.m = np.zeros(capacity, dtype=np.int64)
        self._bits = int(size).bit_length() + 1

    @property
    def n(self) -> np.ndarray:
        """Return how many values each row holds."""
        return self.ring.n

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` rows."""
        self.ring.grow(capacity)
        self.sorted = _grown(self.sorted, capacity, np.inf)
        self.added = _grown(self.added, capacity, 0.0)
        self.removed = _grown(self.removed, capacity, np.nan)
        self.m = _grown(self.m, capacity, 0)

    def clear(self, rows: np.ndarray) -> None:
        """Forget the rows' values."""
        self.ring.clear(rows)
        self.sorted[rows] = np.inf
        self.removed[rows] = np.nan
        self.m[rows] = 0

    def push(self, rows: np.ndarray, x: np.ndarray) -> None:
        """Append ``x`` to each row, dropping its oldest value when full."""
        if not len(rows):
            return
        full, old = self.ring.push(rows, x)
        m = self.m[rows]
        self.added[rows, m] = x
        self.removed[rows, m] = np.where(full, old, np.nan)
        m += 1
        self.m[rows] = m
        # Staggered: row s rebuilds after every/2 + s % (every/2) + 1 pushes (at most ``every``).
        half = self.every // 2
        due = m >= half + rows % half + 1
        if due.any():
            self._rebuild(rows[due])

    def load(self, row: int, values: list[float]) -> None:
        """Set one row to ``values`` (oldest first) and rebuild its sorted copy."""
        self.ring.load(row, values)
        self._rebuild(np.array([row]))

    def _rebuild(self, rows: np.ndarray) -> None:
        self.sorted[rows] = np.sort(self.ring.valid(rows, np.inf), axis=1)
        self.removed[rows] = np.nan
        self.m[rows] = 0

    def count_below(self, rows: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Return how many of each row's values are ``< v`` (``bisect_left`` on the sorted window)."""
        srt = self.sorted
        if len(rows) <= 8:  # a replay of a few series: one C search per row beats 13 vector steps
            lo = np.array(
                [
                    0 if vi != vi else int(np.searchsorted(srt[r], vi))
                    for r, vi in zip(rows.tolist(), v.tolist(), strict=True)
                ],
                dtype=np.int64,
            )  # NaN: bisect_left finds nothing below it (numpy would sort it last)
            return self._delta(rows, v, lo)
        lo = np.zeros(len(rows), dtype=np.int64)
        hi = np.full(len(rows), srt.shape[1], dtype=np.int64)
        last = srt.shape[1] - 1
        for _ in range(self._bits):
            mid = (lo + hi) >> 1
            less = srt[rows, np.minimum(mid, last)] < v
            active = lo < hi
            lo = np.where(active & less, mid + 1, lo)
            hi = np.where(active & ~less, mid, hi)
        return self._delta(rows, v, lo)

    def _delta(self, rows: np.ndarray, v: np.ndarray, lo: np.ndarray) -> np.ndarray:
        live = np.arange(self.every) < self.m[rows, None]
        vv = v[:, None]
        lo += ((self.added[rows] < vv) & live).sum(axis=1)
        lo -= ((self.removed[rows] < vv) & live).sum(axis=1)
        return lo
