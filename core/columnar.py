"""The online calibration of every series at once: one struct of numpy arrays, rows are series slots.

:class:`ColumnarCalibrator` computes exactly what one :class:`core.calibration.SeriesCalibrator` per
series computes (the same floating-point operations in the same order, so the same bits; the rule is
described in ``core.calibration``), with all series' state in ``(slots, window)`` arrays
(``core.calibration_state``). :meth:`ColumnarCalibrator.update` scores one point of each of many slots
in one vectorised pass; :meth:`ColumnarCalibrator.update_runs` scores runs of points (a replay, a
priming) as one pass per point index across all the runs or, for a few long runs, by handing each
slot's state to the reference's per-point loop and back (numpy's fixed cost per call would dominate a
pass over a handful of series). Slots are allocated as series appear and freed by
:meth:`ColumnarCalibrator.drop`; the arrays grow by doubling and never shrink (freed slots are reused).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import numpy as np

from core.calibration import CHANNELS, Calibrated, CalibrationParams, SeriesCalibrator
from core.calibration_state import QuantileWindow, RankWindow, Ring, ordered_sum
from core.scoring import SCORE_CAP, band_score

__all__ = ["ColumnarCalibrator"]

_PRIOR, _POINT, _SHIFT, _FLAT = (CHANNELS.index(c) for c in ("prior", "point", "shift", "flat"))


def _mlog(x: np.ndarray) -> np.ndarray:
    """Return ``math.log`` of each value: numpy's SIMD log differs from libm's in the last bit."""
    return np.fromiter(map(math.log, x.tolist()), dtype=np.float64, count=len(x))


class ColumnarCalibrator:
    """The calibration state of many series, one row (slot) each; see the module docstring."""

    # How runs are scored: None chooses by the costs below (µs, measured on the 2-core build machine);
    # "sequential" or "vectorised" force one way (the tests check both give the same bits).
    path: str | None = None
    COST_PASS, COST_PASS_POINT = 450.0, 2.0  # one vectorised pass, and per point in it
    COST_RUN, COST_RUN_POINT = 1500.0, 12.0  # moving a slot into the per-point loop and back, per point

    def __init__(self, params: CalibrationParams, capacity: int = 64) -> None:
        self.p = p = params
        self._slots: dict[Hashable, int] = {}
        self._free: list[int] = []
        self._capacity = capacity = max(int(capacity), 1)
        self._last_t = np.full(capacity, -np.inf)
        self._recent = Ring(p.shift_window, capacity)
        self._values = Ring(p.flat_window, capacity)
        self._pending = Ring(max(p.flat_delay, 1), capacity)
        self._resid = QuantileWindow(p.window, capacity, p.p0, lower=True)
        self._resid_edge = QuantileWindow(p.window, capacity, p.p0, lower=True)
        self._shift = QuantileWindow(p.window, capacity, p.p0, lower=False)
        self._shift_edge = QuantileWindow(p.window, capacity, p.p0, lower=False)
        self._flat = RankWindow(p.flat_history, capacity)
        self._log_p0 = math.log(p.p0)
        self._log_inv_p0 = math.log(1.0 / p.p0)
        self._log_p0_p1 = math.log(p.p0 / p.p1)
        h = p.flat_history
        # The flat channel's score for every rank of a full history (the common case), via math.log.
        self._flat_full = np.maximum(_mlog((np.arange(h + 1) + 1) / (h + 1)) / self._log_p0, 0.0)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def slots(self, keys: Iterable[Hashable]) -> np.ndarray:
        """Return the slot of each key, allocating (fresh) slots for keys not seen before."""
        return self.allocate(keys)[0]

    def allocate(self, keys: Iterable[Hashable]) -> tuple[np.ndarray, list[int]]:
        """Return the slot of each key and the positions of the keys that got a fresh slot."""
        keys = list(keys)
        get, out, fresh = self._slots.get, [], []
        for i, key in enumerate(keys):
            slot = get(key)
            if slot is None:
                slot = self._free.pop() if self._free else len(self._slots)
                if slot >= self._capacity:  # grow once for all the new keys, to a power of two
                    want = slot + sum(get(k) is None for k in keys[i:])
                    self._grow(max(2 * self._capacity, 1 << (want - 1).bit_length()))
                self._slots[key] = slot
                fresh.append(i)
            out.append(slot)
        return np.asarray(out, dtype=np.int64), fresh

    def drop(self, keys: Iterable[Hashable]) -> int:
        """Free the slots of these keys (a series seen again starts afresh); return how many were held."""
        rows = [self._slots.pop(k) for k in keys if k in self._slots]
        if rows:
            r = np.asarray(rows, dtype=np.int64)
            self._last_t[r] = -np.inf
            for state in self._states():
                state.clear(r)
            self._free.extend(rows)
        return len(rows)

    def _states(self) -> tuple[Ring | QuantileWindow | RankWindow, ...]:
        return (
            self._recent,
            self._values,
            self._pending,
            self._resid,
            self._resid_edge,
            self._shift,
            self._shift_edge,
            self._flat,
        )

    def _grow(self, capacity: int) -> None:
        last = np.full(capacity, -np.inf)
        last[: self._capacity] = self._last_t
        self._last_t = last
        for state in self._states():
            state.grow(capacity)
        self._capacity = capacity

    def update_runs(
        self,
        rows: np.ndarray,
        starts: np.ndarray,
        t: np.ndarray,
        y: np.ndarray,
        yhat: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        *,
        learn_only: bool = False,
    ) -> Calibrated:
        """Score runs of points: run ``i`` is ``[starts[i], starts[i + 1])`` of the arrays, slot ``rows[i]``.

        Points of one run are scored in order, each with the state the ones before it left; the slots
        must be distinct. A pass per point index scores that point of every run at once. With
        ``learn_only`` (a priming) the state is the same but no results are kept (empty arrays).
        """
        n = len(t)
        out = _Out(n, lower, upper, keep=not learn_only)
        ends = np.append(starts[1:], n)
        lengths = ends - starts
        if not n:
            return out.result()
        if self._sequential_is_cheaper(len(rows), n, int(lengths.max())):
            # Few long runs: a pass would score a handful of points for numpy's fixed cost per call;
            # the reference's per-point loop on the slot's state is faster, and gives the same bits.
            for row, a, b in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
                res = self._sequential(row, t[a:b], y[a:b], yhat[a:b], lower[a:b], upper[a:b])
                if out.keep:
                    sl = slice(a, b)
                    out.score[sl], out.lower[sl], out.upper[sl] = res.score, res.lower, res.upper
                    out.sign[sl], out.channel[sl] = res.sign, res.channel
            return out.result()
        for j in range(int(lengths.max())):
            live = lengths > j
            idx = starts[live] + j
            self._step(rows[live], idx, t, y, yhat, out)
        return out.result()

    def _sequential_is_cheaper(self, runs: int, points: int, longest: int) -> bool:
        if self.path is not None:
            return self.path == "sequential"
        sequential = self.COST_RUN * runs + self.COST_RUN_POINT * points
        return sequential < self.COST_PASS * longest + self.COST_PASS_POINT * points

    def _sequential(self, row: int, *arrays: np.ndarray) -> Calibrated:
        """Score one run with a :class:`SeriesCalibrator` holding the slot's state, then store it back."""
        cal = SeriesCalibrator(self.p)
        cal._last_t = float(self._last_t[row])
        windows = (
            (cal._resid, self._resid),
            (cal._resid_edge, self._resid_edge),
            (cal._shift, self._shift),
            (cal._shift_edge, self._shift_edge),
        )
        for w, state in windows:
            w.order.extend(state.ring.values(row))
            w.sorted = sorted(w.order)
            w.pos, w.neg = float(state.pos[row]), float(state.neg[row])
        cal._recent.extend(self._recent.values(row))
        cal._values.extend(self._values.values(row))
        cal._flat.order.extend(self._flat.ring.values(row))
        cal._flat.sorted = sorted(cal._flat.order)  # its pos/neg sums are never read
        if self.p.flat_delay:
            cal._flat_pending.extend(self._pending.values(row))
        res = cal.update(*arrays)
        self._last_t[row] = cal._last_t
        for w, state in windows:
            state.load(row, list(w.order), w.pos, w.neg)
        self._recent.load(row, list(cal._recent))
        self._values.load(row, list(cal._values))
        self._flat.load(row, list(cal._flat.order))
        if self.p.flat_delay:
            self._pending.load(row, list(cal._flat_pending))
        return res

    def update(
        self,
        rows: np.ndarray,
        t: np.ndarray,
        y: np.ndarray,
        yhat: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
    ) -> Calibrated:
        """Score one point of each of the distinct slots ``rows`` (the common case: one tick)."""
        out = _Out(len(t), lower, upper)
        if len(t):
            self._step(np.asarray(rows, dtype=np.int64), np.arange(len(t)), t, y, yhat, out)
        return out.result()

    def _step(
        self,
        rows: np.ndarray,
        idx: np.ndarray,
        t: np.ndarray,
        y: np.ndarray,
        yhat: np.ndarray,
        out: _Out,
    ) -> None:
        ti, yi = t[idx], y[idx]
        ok = np.isfinite(yi) & ~(ti <= self._last_t[rows])  # as the reference: a NaN time passes
        if not ok.all():
            rows, idx, ti, yi = rows[ok], idx[ok], ti[ok], yi[ok]
        if not len(rows):
            return
        self._last_t[rows] = ti
        flat_s = self._flat_score(rows, yi)
        fi = yhat[idx]
        model = np.isfinite(fi)
        if not model.all():
            rows, idx, yi, fi, flat_s = rows[model], idx[model], yi[model], fi[model], flat_s[model]
        if not len(rows):
            return
        s, lo, up, sg, ch = self._score(rows, yi, fi, out.band_lower[idx], out.band_upper[idx])
        flat = flat_s > s
        s = np.where(flat, flat_s, s)
        sg = np.where(flat, 0, sg)
        ch = np.where(flat, _FLAT, ch)
        if out.keep:
            out.score[idx], out.lower[idx], out.upper[idx], out.sign[idx], out.channel[idx] = (
                s,
                lo,
                up,
                sg,
                ch,
            )

    def _score(
        self, rows: np.ndarray, y: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        p = self.p
        r = y - yhat
        self._recent.push(rows, r)
        mean = np.full(len(rows), np.nan)
        full = self._recent.n[rows] == p.shift_window
        if full.any():
            mean[full] = ordered_sum(self._recent.ordered(rows[full])) / p.shift_window
        has_mean = np.isfinite(mean)
        sg = np.where(r >= 0, 1, -1).astype(np.int8)
        s = np.empty(len(rows))
        ch = np.full(len(rows), _PRIOR, dtype=np.int8)
        lower, upper = lower.copy(), upper.copy()
        cal = self._resid.n[rows] >= p.min_history
        if not cal.all():
            prior = ~cal
            s[prior] = band_score(y[prior], yhat[prior], lower[prior], upper[prior])
        if cal.any():
            c = np.flatnonzero(cal)
            rc, rr, fc = rows[c], r[c], yhat[c]
            u_hi, b_hi, u_lo, b_lo = self._point_scales(rc)
            lower[c], upper[c] = fc - u_lo, fc + u_hi
            above = rr >= 0
            sc = np.where(above, self._tail(rr, u_hi, b_hi), self._tail(-rr, u_lo, b_lo))
            chc = np.full(len(c), _POINT, dtype=np.int8)
            sgc = sg[c]
            sh = has_mean[c] & (self._shift.n[rc] >= p.min_history)
            if sh.any():
                k = np.flatnonzero(sh)
                u, b = self._shift_scale(rc[k])
                m = mean[c][k]
                s_shift = self._tail(np.abs(m), u, b)
                win = s_shift > sc[k]
                kw = k[win]
                sc[kw] = s_shift[win]
                chc[kw] = _SHIFT
                sgc[kw] = np.where(m[win] >= 0, 1, -1)
            s[c], ch[c], sg[c] = sc, chc, sgc
        learn = (s <= p.learn_limit) | (ch == _PRIOR)  # the trained band alone never locks learning out
        self._resid.push(rows, r)
        self._resid_edge.push(rows[learn], r[learn])
        if has_mean.any():
            am = np.abs(mean[has_mean])
            self._shift.push(rows[has_mean], am)
            both = has_mean & learn
            self._shift_edge.push(rows[both], np.abs(mean[both]))
        return s, lower, upper, sg, ch

    def _edge(self, u: np.ndarray, q1: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # As core.calibration._edge: floors for a history that is mostly zeros.
        u = np.maximum(u, mean * 0.1 + 1e-9)
        return u, np.maximum((q1 - u) / self._log_p0_p1, u * 0.05)

    def _point_scales(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        p, res, edge = self.p, self._resid, self._resid_edge
        en = edge.n[rows]
        use_edge = en >= p.min_history
        n = np.where(use_edge, en, res.n[rows])
        u_hi = np.where(use_edge, edge.quantile(rows, 1 - p.p0), res.quantile(rows, 1 - p.p0))
        pos = np.where(use_edge, edge.pos[rows], res.pos[rows])
        u_lo = np.where(use_edge, -edge.quantile(rows, p.p0), -res.quantile(rows, p.p0))
        neg = np.where(use_edge, edge.neg[rows], res.neg[rows])
        q_hi = np.maximum(res.quantile(rows, 1 - p.p1), 0.0)
        q_lo = np.maximum(-res.quantile(rows, p.p1), 0.0)
        u_hi, b_hi = self._edge(np.maximum(u_hi, 0.0), q_hi, np.maximum(pos, 0.0) / n)
        u_lo, b_lo = self._edge(np.maximum(u_lo, 0.0), q_lo, np.maximum(neg, 0.0) / n)
        return u_hi, b_hi, u_lo, b_lo

    def _shift_scale(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, sh, edge = self.p, self._shift, self._shift_edge
        en = edge.n[rows]
        use_edge = en >= p.min_history
        n = np.where(use_edge, en, sh.n[rows])
        u = np.where(use_edge, edge.quantile(rows, 1 - p.p0), sh.quantile(rows, 1 - p.p0))
        pos = np.where(use_edge, edge.pos[rows], sh.pos[rows])
        q1 = np.maximum(sh.quantile(rows, 1 - p.p1), 0.0)
        return self._edge(np.maximum(u, 0.0), q1, np.maximum(pos, 0.0) / n)

    def _tail(self, x: np.ndarray, u: np.ndarray, beta: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            beyond = np.minimum(1.0 + (x - u) / (beta * self._log_inv_p0), SCORE_CAP)
            return np.where(x <= u, x / u, beyond)

    def _flat_score(self, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rank the spread of the rows' last values against their own histories; learn the new ones."""
        p = self.p
        self._values.push(rows, y)
        s = np.zeros(len(rows))
        full = self._values.n[rows] >= p.flat_window
        if not full.any():
            return s
        f = np.flatnonzero(full)
        rf = rows[f]
        vals = self._values.ordered(rf)
        m = ordered_sum(vals) / p.flat_window
        d = vals - m[:, None]
        var = np.maximum(ordered_sum(d * d) / p.flat_window, 0.0)
        res = self._resid
        rn = res.n[rf]
        with np.errstate(divide="ignore", invalid="ignore"):
            floor = np.where(rn > 0, p.flat_floor * ((res.pos[rf] + res.neg[rf]) / rn), 0.0)
        x = -_mlog(np.maximum(np.sqrt(var), floor) + 1e-12)
        n = self._flat.n[rf]
        ranked = n >= p.min_history
        if ranked.any():
            k = np.flatnonzero(ranked)
            rk, nk = rf[k], n[k]
            # At the floor, the floors of earlier rows rank as equal (see core.calibration).
            level = np.minimum(x[k] - 1e-9, -_mlog(floor[k] + 1e-12) - p.flat_tolerance)
            at_least = nk - self._flat.count_below(rk, level)
            whole = nk == p.flat_history
            sk = np.empty(len(k))
            sk[whole] = self._flat_full[at_least[whole]]
            part = ~whole
            if part.any():
                ratio = (at_least[part] + 1) / (nk[part] + 1)
                sk[part] = np.maximum(_mlog(ratio) / self._log_p0, 0.0)
            s[f[k]] = sk
        # Spreads join the ranked history only after ``flat_delay`` rows (see core.calibration).
        if p.flat_delay == 0:
            self._flat.push(rf, x)
        else:
            done, old = self._pending.push(rf, x)
            self._flat.push(rf[done], old[done])
        return s


class _Out:
    """The output arrays of one update, filled as points are scored."""

    def __init__(self, n: int, lower: np.ndarray, upper: np.ndarray, keep: bool = True) -> None:
        self.keep = keep
        self.band_lower = np.asarray(lower, dtype=np.float64)  # the model's band, read only
        self.band_upper = np.asarray(upper, dtype=np.float64)
        m = n if keep else 0
        self.score = np.zeros(m)
        self.lower = self.band_lower.copy() if keep else np.zeros(0)
        self.upper = self.band_upper.copy() if keep else np.zeros(0)
        self.sign = np.zeros(m, dtype=np.int8)
        self.channel = np.zeros(m, dtype=np.int8)

    def result(self) -> Calibrated:
        return Calibrated(self.score, self.lower, self.upper, self.sign, self.channel)
