"""Calibrate the anomaly score online from each series' own out-of-sample residuals.

Prophet (or the profile model) gives the expectation ``yhat``; how far from it is unusual is learned per
series from the residuals ``r = y - yhat`` the loop has already scored, each one against a band fitted
*before* it arrived (split-conformal style, updated with every point). Each channel turns a magnitude
``x`` (larger = more unusual) into a score with one meaning, from the channel's previous ``window`` rows:

    u     = q(1 - p0)                                   the band edge: score 1.0
    beta  = (q(1 - p1) - u) / ln(p0 / p1)               the tail's scale, from two quantiles
    s     = x / u                                       for x <= u
    s     = 1 + (x - u) / (beta * ln(1 / p0))           beyond the edge (an exponential tail)

so, were the quantiles exact, a normal point would reach score ``s`` with probability ``p0 ** s`` per
channel side. With the short default window (1,000 rows, chosen on NAB so that an old outlier is soon
forgotten) the estimated tail runs light: on i.i.d. noise of any tail shape about 10% of points score
above 1, 0.6% above 2 and 0.03-0.06% above 3, all channels together (``tests/test_calibration.py``); the
README gives the measured false alarms per series per day at each severity. The channels:

* ``point``: ``max(r, 0)`` and ``max(-r, 0)``, each side on its own history, ``p0 = (1 - width) / 2``:
  the band ``[yhat - u_lo, yhat + u_hi]`` written with every point is this calibrated band (nominal
  coverage ``width``), the one Grafana draws, and the point channel scores above 1 exactly outside it.
* ``shift``: ``|mean of the last shift_window residuals|``: a level shift smaller than the noise shows in
  the mean first.
* ``flat``: a stuck value: the spread of the last ``flat_window`` values, ranked against the series'
  own ``flat_history`` spreads before the last ``flat_delay`` rows (so a stuck stretch cannot make
  itself normal while it lasts). Its score is ``ln(p) / ln(p0)`` for the empirical p-value ``p`` of a
  spread that small: at most 2.25 with a full history (no extrapolation: a series that is often flat
  never fires it). Spreads are ranked at a resolution: below ``flat_floor`` times the series' mean
  |residual| a spread counts as that floor, and a floored spread ranks as small as any earlier spread
  within a factor of two of the floor, so a series polled faster than it changes (plateaus of
  repeated values, with a smooth pattern under them) does not look stuck on each plateau whose spread
  is a new low by a hair.

The band's edge is learned only from points that scored at most ``learn_limit`` (an anomaly does not
widen the band it is judged by), while the tail scale learns every point: a repeat of an excursion
just seen scores lower (NAB rewards that: one alarm per excursion). The score is the largest channel
score. Until ``min_history`` residuals exist the point channel uses the
band the model was trained with and the other channels stay at 0. Row ``i`` is scored with rows before
``i`` only, so a replay scores exactly as the live loop does. Parameters were chosen by
leave-one-category-out cross-validation on NAB (``bench/nab_cv.py``).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from core.scoring import SCORE_CAP, band_score

__all__ = ["CHANNELS", "CalibrationParams", "Calibrated", "SeriesCalibrator", "tail_score"]

CHANNELS = ("none", "prior", "point", "shift", "flat")
_PRIOR, _POINT, _SHIFT, _FLAT = (CHANNELS.index(c) for c in ("prior", "point", "shift", "flat"))


@dataclass(frozen=True)
class CalibrationParams:
    """One parameter set for every series."""

    p0: float = 0.025
    p1: float = 0.0005
    window: int = 1000
    min_history: int = 100
    shift_window: int = 6
    flat_window: int = 12
    flat_history: int = 4032
    flat_delay: int = 288
    learn_limit: float = 3.0
    # The stuck-value channel's resolution: a spread below flat_floor x the series' mean |residual|
    # counts as that floor, and at the floor, earlier spreads within a factor exp(flat_tolerance) of
    # it rank as equally small, so a series sampled faster than it changes (a 1 s poll of a 15 s
    # scrape) is not "stuck" on every plateau.
    flat_floor: float = 1e-3
    flat_tolerance: float = math.log(2.0)

    def __post_init__(self) -> None:
        if not 0 < self.p1 < self.p0 < 0.5:
            raise ValueError(f"calibration needs 0 < p1 < p0 < 0.5, got p0={self.p0}, p1={self.p1}")
        if not 10 <= self.min_history <= self.window:
            raise ValueError("calibration needs 10 <= min_history <= window")
        if self.shift_window < 2 or self.flat_window < 2:
            raise ValueError("calibration windows need at least 2 rows")

    @property
    def prime_rows(self) -> int:
        """Return how many past rows fill every history (what a restarted monitor primes with)."""
        return max(self.window, self.flat_history + self.flat_delay + self.flat_window)


class Calibrated(NamedTuple):
    """The calibrator's verdict on a run of points of one series (arrays of equal length)."""

    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    sign: np.ndarray  # +1 above the expectation, -1 below, 0 for the flat channel or no score
    channel: np.ndarray  # index into CHANNELS


def _quantile(srt: list[float], q: float) -> float:
    """Return the q quantile of a sorted list (linear interpolation, as numpy's default)."""
    h = (len(srt) - 1) * q
    lo = int(h)
    if lo + 1 >= len(srt):
        return srt[-1]
    return srt[lo] + (h - lo) * (srt[lo + 1] - srt[lo])


def _edge(u: float, q1: float, mean: float, p0: float, p1: float) -> tuple[float, float]:
    """Return (u, beta) from the edge and tail quantiles of a magnitude and its mean magnitude."""
    # Floors: a history that is mostly zeros (idle or quantised series) still gets a usable unit.
    u = max(u, mean * 0.1 + 1e-9)
    return u, max((q1 - u) / math.log(p0 / p1), u * 0.05)


class _Window:
    """The last ``size`` values in arrival order and sorted, with their sum of positive parts."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []
        self.pos = 0.0  # sum of max(x, 0)
        self.neg = 0.0  # sum of max(-x, 0)

    def __len__(self) -> int:
        return len(self.sorted)

    def push(self, x: float) -> None:
        self.order.append(x)
        bisect.insort(self.sorted, x)
        self.pos += max(x, 0.0)
        self.neg += max(-x, 0.0)
        if len(self.order) > self.size:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]
            self.pos -= max(old, 0.0)
            self.neg -= max(-old, 0.0)

    def upper_scale(self, p0: float, p1: float, edge: _Window | None = None) -> tuple[float, float]:
        """Return (u, beta) of max(x, 0); the edge ``u`` from ``edge`` if it is given."""
        e = edge if edge is not None else self
        u = max(_quantile(e.sorted, 1 - p0), 0.0)
        q1 = max(_quantile(self.sorted, 1 - p1), 0.0)
        return _edge(u, q1, max(e.pos, 0.0) / len(e.sorted), p0, p1)

    def lower_scale(self, p0: float, p1: float, edge: _Window | None = None) -> tuple[float, float]:
        """Return (u, beta) of max(-x, 0); the edge ``u`` from ``edge`` if it is given."""
        e = edge if edge is not None else self
        u = max(-_quantile(e.sorted, p0), 0.0)
        q1 = max(-_quantile(self.sorted, p1), 0.0)
        return _edge(u, q1, max(e.neg, 0.0) / len(e.sorted), p0, p1)


def tail_score(x: float, u: float, beta: float, p0: float) -> float:
    """Map a magnitude to a calibrated score: linear up to 1.0 at ``u``, then the exponential tail."""
    if x <= u:
        return x / u
    return min(1.0 + (x - u) / (beta * math.log(1.0 / p0)), SCORE_CAP)


class SeriesCalibrator:
    """The online state of one series: its recent residuals, values and spreads."""

    def __init__(self, params: CalibrationParams) -> None:
        self.p = params
        self._resid = _Window(params.window)
        self._shift = _Window(params.window)
        self._resid_edge = _Window(params.window)
        self._shift_edge = _Window(params.window)
        self._recent: deque[float] = deque(maxlen=params.shift_window)
        self._values: deque[float] = deque(maxlen=params.flat_window)
        self._flat = _Window(params.flat_history)
        self._flat_pending: deque[float] = deque()
        self._last_t = -math.inf

    @property
    def calibrated(self) -> bool:
        """Return whether the band comes from the series' own residuals yet."""
        return len(self._resid) >= self.p.min_history

    def update(
        self, t: np.ndarray, y: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> Calibrated:
        """Score points of this series in time order, each with the state left by the ones before it.

        ``t`` are epoch seconds; ``yhat``, ``lower`` and ``upper`` the model's band at the points (NaN
        where there is no model yet); non-finite values are not scored and teach nothing, and a point
        not later than one already seen is not learned twice (it scores 0).
        """
        n = len(y)
        out_s, out_lo, out_up = np.zeros(n), np.array(lower, dtype=float), np.array(upper, dtype=float)
        sign, chan = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int8)
        ts, ys, fs = (np.asarray(a, float).tolist() for a in (t, y, yhat))
        for i, (ti, yi, fi) in enumerate(zip(ts, ys, fs, strict=True)):
            if not math.isfinite(yi) or ti <= self._last_t:
                continue
            self._last_t = ti
            flat_s = self._flat_score(yi)
            if not math.isfinite(fi):
                continue
            s, lo, up, sg, ch = self._score(yi, fi, float(out_lo[i]), float(out_up[i]))
            if flat_s > s:
                s, sg, ch = flat_s, 0, _FLAT
            out_s[i], out_lo[i], out_up[i], sign[i], chan[i] = s, lo, up, sg, ch
        return Calibrated(out_s, out_lo, out_up, sign, chan)

    def _score(
        self, y: float, yhat: float, lower: float, upper: float
    ) -> tuple[float, float, float, int, int]:
        p = self.p
        r = y - yhat
        self._recent.append(r)
        mean = sum(self._recent) / len(self._recent) if len(self._recent) == p.shift_window else math.nan
        sg = 1 if r >= 0 else -1
        if self.calibrated:
            edge = self._resid_edge if len(self._resid_edge) >= p.min_history else None
            u_hi, b_hi = self._resid.upper_scale(p.p0, p.p1, edge)
            u_lo, b_lo = self._resid.lower_scale(p.p0, p.p1, edge)
            lower, upper = yhat - u_lo, yhat + u_hi
            s = tail_score(r, u_hi, b_hi, p.p0) if r >= 0 else tail_score(-r, u_lo, b_lo, p.p0)
            ch = _POINT
            if math.isfinite(mean) and len(self._shift) >= p.min_history:
                sedge = self._shift_edge if len(self._shift_edge) >= p.min_history else None
                u, b = self._shift.upper_scale(p.p0, p.p1, sedge)
                s_shift = tail_score(abs(mean), u, b, p.p0)
                if s_shift > s:
                    s, ch, sg = s_shift, _SHIFT, (1 if mean >= 0 else -1)
        else:
            # Not enough out-of-sample residuals yet: the model's own band is the edge.
            s, ch = float(band_score(y, yhat, lower, upper)), _PRIOR
        learn = s <= p.learn_limit or ch == _PRIOR  # the trained band alone never locks learning out
        self._resid.push(r)
        if learn:
            self._resid_edge.push(r)
        if math.isfinite(mean):
            self._shift.push(abs(mean))
            if learn:
                self._shift_edge.push(abs(mean))
        return s, lower, upper, sg, ch

    def _flat_score(self, y: float) -> float:
        """Rank the spread of the last values against the series' own history; learn the new one."""
        p = self.p
        self._values.append(y)
        if len(self._values) < p.flat_window:
            return 0.0
        vals = self._values
        m = sum(vals) / p.flat_window
        var = max(sum((v - m) * (v - m) for v in vals) / p.flat_window, 0.0)
        n = len(self._resid)
        floor = p.flat_floor * ((self._resid.pos + self._resid.neg) / n) if n else 0.0
        x = -math.log(max(math.sqrt(var), floor) + 1e-12)
        s = 0.0
        srt = self._flat.sorted
        if len(srt) >= p.min_history:
            # At the floor, the floors of earlier rows (their mean |residual| differed) rank as equal.
            level = min(x - 1e-9, -math.log(floor + 1e-12) - p.flat_tolerance)
            at_least = len(srt) - bisect.bisect_left(srt, level)
            s = max(math.log((at_least + 1) / (len(srt) + 1)) / math.log(p.p0), 0.0)
        # Spreads join the ranked history only after ``flat_delay`` rows, so a stuck stretch cannot
        # make itself normal while it lasts.
        self._flat_pending.append(x)
        if len(self._flat_pending) > p.flat_delay:
            self._flat.push(self._flat_pending.popleft())
        return s
