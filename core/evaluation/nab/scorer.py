"""Score anomaly detectors with the Numenta Anomaly Benchmark (NAB) rules, as NAB's own scorer does.

Specification: ``SCORING.md`` (NAB corpus v1.1). Where that text and NAB's code (``nab/sweeper.py``,
``nab/optimizer.py``, ``nab/scorer.py``) leave room, the code decides; each such point is marked
"NAB's code" below. Everything here is a pure function of its arguments except
:func:`score_results_dir`, which reads results files (the readers and writers are in ``corpus.py``).

Vocabulary: a corpus file has N rows (row index i = 0..N-1), anomaly windows as inclusive row ranges
[L, R], and the detector gives every row an ``anomaly_score`` in [0, 1]. Rows before the probationary
period P = min(floor(0.15 N), 750) are ignored. A window that lies wholly inside the probationary period
is ignored too: it is neither a true positive nor a false negative (NAB's code: its rows carry no window
name, so the sweep never sees the window) and it does not count in the normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.evaluation.nab.corpus import (
    CorpusFile,
    FloatArray,
    Window,
    _check_windows,
    _scores_array,
    _window_ids,
    read_results,
    results_path,
)

__all__ = [
    "LOW_FN",
    "LOW_FP",
    "PROFILES",
    "STANDARD",
    "Entry",
    "Profile",
    "best_threshold",
    "file_score",
    "normalised_score",
    "probationary_period",
    "row_weights",
    "score_corpus",
    "score_results_dir",
    "threshold_sweep",
]

Entry = tuple[npt.ArrayLike, Sequence[Window]]  # one file for the sweep: its scores and its windows

NO_DETECTION = 1.1  # NAB's first candidate threshold: above every valid score, so nothing is detected
PROBATION_FRACTION = 0.15
PROBATION_MAX = 750  # NAB writes it as 0.15 * 5000


@dataclass(frozen=True)
class Profile:
    """Hold the weights of one NAB application profile (config/profiles.json)."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


STANDARD = Profile("standard", a_tp=1.0, a_fp=0.11, a_fn=1.0)
LOW_FP = Profile("reward_low_FP_rate", a_tp=1.0, a_fp=0.22, a_fn=1.0)
LOW_FN = Profile("reward_low_FN_rate", a_tp=1.0, a_fp=0.11, a_fn=2.0)
PROFILES: tuple[Profile, ...] = (STANDARD, LOW_FP, LOW_FN)


def probationary_period(n_rows: int) -> int:
    """Return P = min(floor(0.15 * N), 750): the number of leading rows that are not scored."""
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX)


# --------------------------------------------------------------------------------------------------
# Scoring


def _scaled_sigmoid(y: FloatArray) -> FloatArray:
    """Return NAB's f(y) = 2 * sigmoid(-5y) - 1, and -1 for y > 3 (same operation order as NAB)."""
    x = -5.0 * np.minimum(y, 3.0)  # the clip only keeps exp() finite; y > 3 is replaced below
    return np.where(y > 3.0, -1.0, 2.0 * (1.0 / (1.0 + np.exp(-x))) - 1.0)


_MAX_TP = float(_scaled_sigmoid(np.array([-1.0]))[0])  # f(-1) = 0.98661...: a window's first row


def row_weights(n_rows: int, windows: Sequence[Window], profile: Profile) -> FloatArray:
    """Return the weight each row would add if detected (ignoring the probationary period).

    Inside a window [L, R] of width W: A_TP * f(-(R - i + 1) / W) / f(-1). Outside: -A_FP before the
    first window has ended; after it, A_FP * f((i - R') / (W' - 1)) for the last window [L', R'] that
    ended before i. A window of width 1 has W' - 1 = 0: NAB's code divides by zero there (its older
    scorer used y = 2); we take the limit y -> +inf, i.e. -A_FP, the same as a row far from any window.
    """
    _check_windows(n_rows, windows)
    weights = np.full(n_rows, -profile.a_fp)
    idx = np.arange(n_rows, dtype=np.float64)
    bounds = [*windows, (n_rows, n_rows)]
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        y = -(right - idx[left : right + 1] + 1.0) / float(width)
        weights[left : right + 1] = _scaled_sigmoid(y) * profile.a_tp / _MAX_TP
        after = slice(right + 1, bounds[k + 1][0])
        if width > 1:
            weights[after] = _scaled_sigmoid((idx[after] - right) / float(width - 1)) * profile.a_fp
    return weights


def _scorable_windows(n_rows: int, windows: Sequence[Window]) -> int:
    """Return how many windows have a row at or after the probationary period."""
    p = probationary_period(n_rows)
    return sum(1 for _, right in windows if right >= p)


def file_score(scores: npt.ArrayLike, windows: Sequence[Window], profile: Profile, threshold: float) -> float:
    """Return one file's raw NAB score when rows with score >= threshold are detections.

    NAB's code cannot score a file at a threshold below all of that file's scores (its matching row is
    None); here that simply means every scorable row is detected.
    """
    arr = _scores_array(scores)
    n, p = len(arr), probationary_period(len(arr))
    weights = row_weights(n, windows, profile)
    detected = arr >= threshold
    detected[:p] = False
    total = float(np.sum(weights[detected & (_window_ids(n, windows) < 0)]))
    for left, right in windows:
        if right < p:
            continue
        hits = np.flatnonzero(detected[left : right + 1])
        # Weights fall with the row index inside a window, so the earliest detection is the largest.
        total += float(weights[left + hits[0]]) if hits.size else -profile.a_fn
    return total


def threshold_sweep(entries: Sequence[Entry], profile: Profile) -> tuple[FloatArray, FloatArray]:
    """Return every candidate threshold (1.1, then distinct scores, descending) and the corpus S(t).

    One sort and one pass: lowering the threshold past a row adds its weight if it is outside every
    window, or raises its window's value to the row's weight if the row is the window's earliest
    detection so far. Rows that change nothing add an exact 0.0, so ties stay exact ties.
    """
    score_parts: list[FloatArray] = []
    weight_parts: list[FloatArray] = []
    window_parts: list[npt.NDArray[np.int64]] = []
    n_windows = 0
    for scores, windows in entries:
        arr = _scores_array(scores)
        n = len(arr)
        keep = slice(probationary_period(n), n)
        ids = _window_ids(n, windows)
        score_parts.append(arr[keep])
        weight_parts.append(row_weights(n, windows, profile)[keep])
        window_parts.append(np.where(ids[keep] >= 0, ids[keep] + n_windows, -1))
        n_windows += len(windows)
        # Windows wholly inside the probationary period have no rows here: they never count.
    s_all = np.concatenate(score_parts) if score_parts else np.empty(0)
    w_all = np.concatenate(weight_parts) if weight_parts else np.empty(0)
    win_all = np.concatenate(window_parts) if window_parts else np.empty(0, dtype=np.int64)
    base = 0.0 - profile.a_fn * len(np.unique(win_all[win_all >= 0]))  # 0.0 - : no -0.0 when empty

    order = np.argsort(-s_all, kind="stable")  # descending score; row order breaks ties
    s, win = s_all[order], win_all[order]
    fp_delta = np.where(win < 0, w_all[order], 0.0)

    # Window rows: per window, in sweep order, the running earliest detected row. Positions in the
    # concatenation increase with the row index inside a file, so "earliest" is a running minimum;
    # subtracting window * big makes one np.minimum.accumulate restart at each window (exact ints).
    in_win = np.flatnonzero(win >= 0)
    by_window = in_win[np.argsort(win[in_win], kind="stable")]
    group = win[by_window]
    big = len(s_all) + 1
    earliest = np.minimum.accumulate(order[by_window] - group * big) + group * big
    value = w_all[earliest]
    first_in_group = np.ones(len(group), dtype=bool)
    first_in_group[1:] = group[1:] != group[:-1]
    previous = np.where(first_in_group, -profile.a_fn, np.roll(value, 1))
    window_delta = np.zeros(len(s))
    window_delta[by_window] = value - previous

    # Two running sums, as NAB keeps them: the false positives' and the windows' (starting at -A_FN each).
    fp_running = np.cumsum(fp_delta)
    window_running = base + np.cumsum(window_delta)
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True)) if len(s) else np.empty(0, dtype=np.int64)
    thresholds = np.concatenate(([NO_DETECTION], s[ends]))
    totals = np.concatenate(([base], fp_running[ends] + window_running[ends]))
    return thresholds, totals


def best_threshold(entries: Sequence[Entry], profile: Profile) -> tuple[float, float]:
    """Return (threshold, S) maximising the corpus score; ties go to the higher threshold."""
    thresholds, totals = threshold_sweep(entries, profile)
    best = int(np.argmax(totals))  # first maximum = highest threshold, as NAB's stable sort picks
    return float(thresholds[best]), float(totals[best])


def normalised_score(raw: float, n_windows: int, profile: Profile) -> float:
    """Return 100 * (S - S_null) / (S_perfect - S_null), with S_perfect = A_TP n, S_null = -A_FN n."""
    if n_windows <= 0:
        raise ValueError("the corpus has no scorable anomaly windows: the normalised NAB score is undefined")
    null = -profile.a_fn * n_windows
    return 100.0 * (raw - null) / (profile.a_tp * n_windows - null)


def score_corpus(files: Sequence[CorpusFile], scores: Mapping[str, npt.ArrayLike]) -> dict[str, Any]:
    """Score a detector on a corpus for the three profiles; return a JSON-able summary.

    ``{"standard": x, "reward_low_FP_rate": y, "reward_low_FN_rate": z, "thresholds": {profile: t},
    "raw": {profile: S}, "files": {key: {profile: S_file, "windows": n, "rows": N}}}``. "windows" counts
    the windows that take part in scoring (not wholly inside the probationary period).
    """
    arrays = {}
    for f in files:
        if f.key not in scores:
            raise ValueError(f"{f.key}: no anomaly scores given for this corpus file")
        arrays[f.key] = _scores_array(scores[f.key], f.rows, f.key)
    entries = [(arrays[f.key], f.windows) for f in files]
    n_windows = sum(_scorable_windows(f.rows, f.windows) for f in files)
    result: dict[str, Any] = {"thresholds": {}, "raw": {}}
    per_file: dict[str, dict[str, Any]] = {
        f.key: {"windows": _scorable_windows(f.rows, f.windows), "rows": f.rows} for f in files
    }
    for profile in PROFILES:
        threshold, _ = best_threshold(entries, profile)
        # The corpus total is the sum of the files' scores at that threshold, as NAB reports it.
        raw = 0.0
        for f in files:
            per_file[f.key][profile.name] = file_score(arrays[f.key], f.windows, profile, threshold)
            raw += per_file[f.key][profile.name]
        result["thresholds"][profile.name] = threshold
        result["raw"][profile.name] = raw
        result[profile.name] = normalised_score(raw, n_windows, profile)
    result["files"] = per_file
    return result


def score_results_dir(out_dir: Path | str, detector: str, files: Sequence[CorpusFile]) -> dict[str, Any]:
    """Score the results files a detector wrote under ``<out>/nab`` against the files' windows."""
    scores = {}
    for f in files:
        path = results_path(out_dir, detector, f.key)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results for {f.key}; run detector {detector!r} on it first")
        scores[f.key] = read_results(path, f)
    return score_corpus(files, scores)
