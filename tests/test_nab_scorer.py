"""Tests for core.evaluation.nab (corpus, scorer): hand-computed NAB scores, the fast sweep against a
naive one, NAB's baselines.

Notation in the comments: f(y) = tanh(-2.5 y) (= 2 sigmoid(-5y) - 1), so f(-1) = tanh(2.5) = 0.98661...
Unless a case says otherwise, a file has N = 40 rows, so P = floor(0.15 * 40) = 6, and one window
[L, R] = [10, 14] of width W = 5.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nab_reference import windowed_gaussian

from core.evaluation import nab
from core.evaluation.nab import LOW_FN, LOW_FP, PROFILES, STANDARD, CorpusFile, Profile

N = 40
WINDOW = (10, 14)


def scores_with(hits: dict[int, float], n: int = N) -> np.ndarray:
    """Return n zero scores with the given rows set."""
    scores = np.zeros(n)
    for row, value in hits.items():
        scores[row] = value
    return scores


def sweep_total_at(entries: Sequence[nab.Entry], profile: Profile, threshold: float) -> float:
    """Return the sweep's S(t) for the lowest candidate threshold >= t (same detections as t)."""
    thresholds, totals = nab.threshold_sweep(entries, profile)
    return float(totals[np.flatnonzero(thresholds >= threshold)[-1]])


# ----------------------------------------------------------------------------------------------
# Small cases computed by hand


FILE_CASES = [
    # id, profile, windows, {row: score}, threshold, expected raw score
    # Row 10 is the window's first row: y = -(14 - 10 + 1) / 5 = -1, weight A_TP f(-1) / f(-1) = 1.
    ("first row of window", STANDARD, [WINDOW], {10: 1.0}, 1.0, 1.0),
    # Row 14 is the last row: y = -1/5, weight tanh(0.5) / tanh(2.5) = 0.46212 / 0.98661.
    ("last row of window", STANDARD, [WINDOW], {14: 1.0}, 1.0, 0.4683868439022782),
    # Rows 11 and 13: only the earliest counts, y = -4/5: tanh(2) / tanh(2.5) = 0.96403 / 0.98661.
    ("two detections, earliest counts", STANDARD, [WINDOW], {11: 1.0, 13: 1.0}, 1.0, 0.9771068409226047),
    # Row 10 scores below the threshold, so row 12 is the detection: y = -3/5, tanh(1.5) / tanh(2.5).
    ("threshold picks the detection", STANDARD, [WINDOW], {10: 0.4, 12: 0.6}, 0.5, 0.9174286804284078),
    # ... and at 0.4 both are detected and row 10 (weight 1) wins.
    ("lower threshold, earlier row", STANDARD, [WINDOW], {10: 0.4, 12: 0.6}, 0.4, 1.0),
    # Row 7: no window has ended yet -> -A_FP = -0.11; the window is missed -> -A_FN = -1.
    ("false positive before any window", STANDARD, [WINDOW], {7: 1.0}, 1.0, -1.11),
    # Row 15: y = (15 - 14) / (5 - 1) = 0.25, A_FP f(0.25) = 0.11 tanh(-0.625) = -0.0610060; missed -1.
    ("false positive right after window", STANDARD, [WINDOW], {15: 1.0}, 1.0, -1.061005969458432),
    # Row 26: y = 12/4 = 3 (not > 3): 0.11 tanh(-7.5) = -0.1099999327; missed -1.
    ("false positive three widths after", STANDARD, [WINDOW], {26: 1.0}, 1.0, -1.10999993270151),
    # Row 27: y = 13/4 > 3, f = -1: -0.11 exactly; missed -1.
    ("false positive beyond three widths", STANDARD, [WINDOW], {27: 1.0}, 1.0, -1.11),
    # Low-FP profile doubles A_FP: 1 (row 10) + 0.22 tanh(-0.625) = 1 - 0.1220119.
    ("low FP profile, FP after a hit", LOW_FP, [WINDOW], {10: 1.0, 15: 1.0}, 1.0, 0.8779880610831359),
    # Nothing detected: the window is missed, -A_FN.
    ("missed window", STANDARD, [WINDOW], {}, 1.0, -1.0),
    ("missed window, low FN profile", LOW_FN, [WINDOW], {}, 1.0, -2.0),
    # Row 3 < P = 6 is ignored: the window is still missed and there is no false positive.
    ("probationary detection ignored", STANDARD, [WINDOW], {3: 1.0}, 1.0, -1.0),
    # A window wholly inside the probationary period counts for nothing (NAB's code), not -A_FN.
    ("window inside probation ignored", STANDARD, [(2, 4), WINDOW], {10: 1.0}, 1.0, 1.0),
    # Window [10, 10] (W = 1) then a detection at row 11: W' - 1 = 0, we take y = +inf, -A_FP.
    ("width-1 window, then FP", STANDARD, [(10, 10)], {10: 1.0, 11: 1.0}, 1.0, 1.0 - 0.11),
    # No windows, three false positives before any window: 3 * -0.11.
    ("no windows, three FPs", STANDARD, [], {8: 1.0, 20: 0.7, 39: 0.9}, 0.5, -0.33),
]


@pytest.mark.parametrize(
    ("profile", "windows", "hits", "threshold", "expected"),
    [case[1:] for case in FILE_CASES],
    ids=[case[0] for case in FILE_CASES],
)
def test_file_score_by_hand(
    profile: Profile,
    windows: list[tuple[int, int]],
    hits: dict[int, float],
    threshold: float,
    expected: float,
) -> None:
    scores = scores_with(hits)
    assert nab.file_score(scores, windows, profile, threshold) == pytest.approx(
        expected, rel=1e-12, abs=1e-12
    )
    assert sweep_total_at([(scores, windows)], profile, threshold) == pytest.approx(
        expected, rel=1e-12, abs=1e-12
    )


@pytest.mark.parametrize(
    ("n_rows", "expected"), [(0, 0), (6, 0), (7, 1), (20, 3), (40, 6), (4032, 604), (5000, 750), (10**6, 750)]
)
def test_probationary_period(n_rows: int, expected: int) -> None:
    # floor(0.15 N) capped at 750: 0.15 * 4032 = 604.8 -> 604; 0.15 * 5000 = 750.
    assert nab.probationary_period(n_rows) == expected


def test_profiles_are_nab_cost_matrices() -> None:
    assert [(p.name, p.a_tp, p.a_fp, p.a_fn) for p in PROFILES] == [
        ("standard", 1.0, 0.11, 1.0),
        ("reward_low_FP_rate", 1.0, 0.22, 1.0),
        ("reward_low_FN_rate", 1.0, 0.11, 2.0),
    ]


def test_tie_goes_to_the_higher_threshold() -> None:
    # Candidates 1.1 (S = -1), 0.9 (row 10: S = 1), 0.8 (adds row 12, later in the window: S = 1),
    # 0.0 (every scorable row: 4 FPs before the window and 25 after it pull S below 1).
    scores = scores_with({10: 0.9, 12: 0.8})
    thresholds, totals = nab.threshold_sweep([(scores, [WINDOW])], STANDARD)
    assert thresholds.tolist() == [1.1, 0.9, 0.8, 0.0]
    assert totals[:3].tolist() == [-1.0, 1.0, 1.0]  # an exact tie, not merely a close one
    assert totals[3] < 1.0
    assert nab.best_threshold([(scores, [WINDOW])], STANDARD) == (0.9, 1.0)


def test_threshold_is_shared_by_the_corpus() -> None:
    # File a alone would pick 0.9 (S = 1); file b's only score at or above 0.5 is a false positive at
    # 0.5 before its window. Together: t = 0.9 -> 1 - 1 = 0; t = 0.5 adds b's FP: 1 - 1 - 0.11.
    a = scores_with({10: 0.9})
    b = scores_with({7: 0.5})
    assert nab.best_threshold([(a, [WINDOW]), (b, [WINDOW])], STANDARD) == (0.9, 0.0)


@pytest.mark.parametrize(
    ("raw", "n_windows", "profile", "expected"),
    [
        # SCORING.md's full corpus, 116 windows: windowedGaussian raw totals -> 39.6 / 20.9 / 47.4.
        (-24.013105, 116, STANDARD, 100 * (-24.013105 + 116) / 232),
        (-67.586273, 116, LOW_FP, 100 * (-67.586273 + 116) / 232),
        (-67.013105, 116, LOW_FN, 100 * (-67.013105 + 232) / 348),
        (-116.0, 116, STANDARD, 0.0),
        (116.0, 116, LOW_FN, 100.0),
    ],
)
def test_normalised_score(raw: float, n_windows: int, profile: Profile, expected: float) -> None:
    assert nab.normalised_score(raw, n_windows, profile) == pytest.approx(expected, rel=1e-12)


def test_normalised_score_needs_windows() -> None:
    with pytest.raises(ValueError, match="no scorable anomaly windows"):
        nab.normalised_score(0.0, 0, STANDARD)


def synthetic_corpus() -> list[CorpusFile]:
    """Return two files: a (40 rows, window [10, 14]) and b (100 rows, P = 15, two windows)."""

    def make(key: str, n: int, windows: tuple[tuple[int, int], ...]) -> CorpusFile:
        times = np.datetime64("2014-01-01T00:00:00", "s") + np.arange(n) * np.timedelta64(5, "m")
        text = np.array([str(t).replace("T", " ") for t in times])
        return CorpusFile(key, text, np.sin(np.arange(n) / 3.0) * 10.0, windows)

    return [make("catA/a.csv", 40, (WINDOW,)), make("catB/b.csv", 100, ((30, 39), (60, 69)))]


def test_null_and_perfect_detectors() -> None:
    files = synthetic_corpus()
    null = nab.score_corpus(files, {f.key: np.zeros(f.rows) for f in files})
    # Threshold 1.1 (no detection) beats 0.0 (everything detected): S = -A_FN * 3 windows.
    assert [null[p.name] for p in PROFILES] == [0.0, 0.0, 0.0]
    assert null["thresholds"] == {p.name: 1.1 for p in PROFILES}
    assert null["raw"] == {"standard": -3.0, "reward_low_FP_rate": -3.0, "reward_low_FN_rate": -6.0}

    perfect = {f.key: scores_with({left: 1.0 for left, _ in f.windows}, f.rows) for f in files}
    result = nab.score_corpus(files, perfect)
    # One detection on each window's first row: S = 3 * A_TP = 3 -> 100.
    assert [result[p.name] for p in PROFILES] == [100.0, 100.0, 100.0]
    assert result["thresholds"] == {p.name: 1.0 for p in PROFILES}
    assert result["files"]["catB/b.csv"] == {
        "windows": 2,
        "rows": 100,
        "standard": 2.0,
        "reward_low_FP_rate": 2.0,
        "reward_low_FN_rate": 2.0,
    }
    json.dumps(result)  # JSON-able as it is


def test_score_corpus_rejects_bad_scores() -> None:
    files = synthetic_corpus()
    scores = {f.key: np.zeros(f.rows) for f in files}
    with pytest.raises(ValueError, match=r"catA/a\.csv row 3: anomaly score 1\.5 is not in \[0, 1\]"):
        nab.score_corpus(files, {**scores, "catA/a.csv": scores_with({3: 1.5})})
    with pytest.raises(ValueError, match=r"catB/b\.csv: got \(40,\) anomaly scores; expected one per row"):
        nab.score_corpus(files, {**scores, "catB/b.csv": np.zeros(40)})
    with pytest.raises(ValueError, match=r"catA/a\.csv: no anomaly scores given"):
        nab.score_corpus(files, {"catB/b.csv": scores["catB/b.csv"]})


# ----------------------------------------------------------------------------------------------
# The fast sweep against a naive O(N^2) implementation written straight from SCORING.md


def naive_weight(i: int, windows: Sequence[tuple[int, int]], profile: Profile) -> float:
    """Return the weight of a detection at row i, row by row from the spec."""

    def f(y: float) -> float:
        return -1.0 if y > 3 else math.tanh(-2.5 * y)

    for left, right in windows:
        if left <= i <= right:
            return profile.a_tp * f(-(right - i + 1) / (right - left + 1)) / f(-1.0)
    ended = [(left, right) for left, right in windows if right < i]
    if not ended:
        return -profile.a_fp
    left, right = ended[-1]
    if right == left:  # width 1: our documented choice, y = +inf
        return -profile.a_fp
    return profile.a_fp * f((i - right) / (right - left))


def naive_total(corpus: list[tuple[list[float], list[tuple[int, int]]]], profile: Profile, t: float) -> float:
    """Return S(t) by scoring every row of every file at threshold t."""
    total = 0.0
    for scores, windows in corpus:
        p = min(math.floor(0.15 * len(scores)), 750)
        detected = [i for i in range(p, len(scores)) if scores[i] >= t]
        for left, right in windows:
            if right < p:
                continue
            hits = [naive_weight(i, windows, profile) for i in detected if left <= i <= right]
            total += max(hits) if hits else -profile.a_fn
        inside = {i for left, right in windows for i in range(left, right + 1)}
        total += sum(naive_weight(i, windows, profile) for i in detected if i not in inside)
    return total


@st.composite
def corpora(draw: st.DrawFn) -> list[tuple[list[float], list[tuple[int, int]]]]:
    """Draw 1-3 files of up to 60 rows with sorted, disjoint windows and coarse (tie-prone) scores."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 60))
        k = draw(st.integers(0, 3))
        ends = sorted(draw(st.lists(st.integers(0, n - 1), min_size=2 * k, max_size=2 * k)))
        windows = [(ends[2 * j], ends[2 * j + 1]) for j in range(k)]  # width 1 when the two ends meet
        assume(all(windows[j + 1][0] > windows[j][1] for j in range(k - 1)))
        grid = draw(st.sampled_from([4, 10, 1000]))
        out.append(([draw(st.integers(0, grid)) / grid for _ in range(n)], windows))
    return out


@settings(max_examples=150, deadline=None)
@given(corpus=corpora(), profile=st.sampled_from(PROFILES))
def test_fast_sweep_equals_naive(
    corpus: list[tuple[list[float], list[tuple[int, int]]]], profile: Profile
) -> None:
    thresholds, totals = nab.threshold_sweep(corpus, profile)
    scorable = {s for scores, _ in corpus for s in scores[min(math.floor(0.15 * len(scores)), 750) :]}
    assert thresholds.tolist() == [1.1, *sorted(scorable, reverse=True)]
    naive = [naive_total(corpus, profile, t) for t in thresholds.tolist()]
    assert totals.tolist() == pytest.approx(naive, rel=1e-12, abs=1e-12)
    per_file = [sum(nab.file_score(s, ws, profile, t) for s, ws in corpus) for t in thresholds.tolist()]
    assert per_file == pytest.approx(naive, rel=1e-12, abs=1e-12)
    # The best threshold is the naive one: the highest among those within rounding of the maximum.
    best_t, best_s = nab.best_threshold(corpus, profile)
    top = max(naive)
    assert best_t == next(t for t, s in zip(thresholds.tolist(), naive, strict=True) if s >= top - 1e-9)
    assert best_s == pytest.approx(top, rel=1e-12, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Reading the corpus and the results files


def write_data(path: Path, rows: list[tuple[str, str]]) -> None:
    """Write a NAB data CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows))


def stamps(minutes: Sequence[int]) -> np.ndarray:
    """Return datetime64[us] times at the given minutes after 2014-01-01 00:00."""
    return np.datetime64("2014-01-01T00:00", "us") + np.asarray(minutes) * np.timedelta64(1, "m")


def w(start_min: int, end_min: int) -> tuple[str, str]:
    """Return a window in combined_windows.json's format, in minutes after 2014-01-01 00:00."""
    t0 = np.datetime64("2014-01-01T00:00", "s")
    start, end = (
        str(t0 + np.timedelta64(m, "m")).replace("T", " ") + ".000000" for m in (start_min, end_min)
    )
    return start, end


@pytest.mark.parametrize(
    ("minutes", "window", "expected"),
    [
        ([0, 5, 10, 15, 20, 25], w(5, 15), (1, 3)),  # exact boundaries
        ([0, 5, 10, 15, 20, 25], w(7, 17), (2, 3)),  # first row >= start, last row <= end
        ([0, 5, 10, 10, 15, 20], w(5, 15), (1, 4)),  # a repeated timestamp inside the window
        ([0, 5, 10, 15, 20, 10, 15, 20], w(5, 15), (1, 3)),  # clock jumps back after the window
        ([0, 5, 10, 15], w(0, 15), (0, 3)),  # the whole file
    ],
)
def test_map_windows(minutes: list[int], window: tuple[str, str], expected: tuple[int, int]) -> None:
    assert nab.map_windows(stamps(minutes), [window], "x.csv") == (expected,)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            w(6, 7),
            r"x\.csv: window \[2014-01-01 00:06:00\.000000, 2014-01-01 00:07:00\.000000\] covers no rows",
        ),
        (w(30, 40), r"x\.csv: window \[2014-01-01 00:30:00\.000000, .*\] covers no rows"),
        (
            ("2014-13-01 00:00:00.000000", "2014-01-01 00:05:00.000000"),
            r"x\.csv: window \[2014-13-01 .* not a date",
        ),
    ],
)
def test_map_windows_errors(window: tuple[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nab.map_windows(stamps([0, 5, 10, 15]), [window], "x.csv")


def test_map_windows_rejects_overlap() -> None:
    with pytest.raises(ValueError, match=r"x\.csv: window rows \[2, 3\] overlap"):
        nab.map_windows(stamps([0, 5, 10, 15]), [w(0, 10), w(10, 15)], "x.csv")


def test_load_corpus_skips_missing_files(tmp_path: Path) -> None:
    rows = [(f"2014-01-01 00:{m:02d}:00", str(m)) for m in range(0, 50, 5)]
    write_data(tmp_path / "data" / "catA" / "a.csv", rows)
    write_data(tmp_path / "data" / "catB" / "b.csv", rows[:4])
    crlf = (tmp_path / "data" / "catB" / "b.csv").read_text().replace("\n", "\r\n")  # as rogue_agent_key_*
    (tmp_path / "data" / "catB" / "b.csv").write_bytes(crlf.encode())
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps({"catA/a.csv": [w(10, 20)], "catB/b.csv": [], "catC/missing.csv": [w(0, 5)]})
    )
    files = nab.load_corpus(tmp_path / "data", labels)
    assert [(f.key, f.rows, f.windows) for f in files] == [
        ("catA/a.csv", 10, ((2, 4),)),
        ("catB/b.csv", 4, ()),
    ]
    assert files[0].timestamps[3] == "2014-01-01 00:15:00"
    assert files[0].values.tolist() == [float(m) for m in range(0, 50, 5)]
    assert files[1].timestamps.tolist()[-1] == "2014-01-01 00:15:00" and files[1].values[-1] == 15.0


def test_load_corpus_names_bad_line(tmp_path: Path) -> None:
    write_data(
        tmp_path / "data" / "c" / "a.csv", [("2014-01-01 00:00:00", "1"), ("2014-13-01 00:05:00", "2")]
    )
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"c/a.csv": []}))
    with pytest.raises(ValueError, match=r"a\.csv line 3: timestamp '2014-13-01 00:05:00' is not a date"):
        nab.load_corpus(tmp_path / "data", labels)


def test_results_path() -> None:
    path = nab.results_path(Path("out"), "prophetband", "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv")
    assert path == Path("out/nab/realAWSCloudwatch/prophetband_ec2_cpu_utilization_24ae8d.csv")


def test_results_round_trip(tmp_path: Path) -> None:
    files = synthetic_corpus()
    rng = np.random.default_rng(7)
    scores = {f.key: rng.random(f.rows) for f in files}
    scores["catA/a.csv"][0] = 0.1 + 0.2  # 0.30000000000000004: must not be rounded
    for f in files:
        nab.write_results(nab.results_path(tmp_path, "det", f.key), f, scores[f.key])
    text = (tmp_path / "nab" / "catA" / "det_a.csv").read_text().splitlines()
    assert text[0] == "timestamp,value,anomaly_score,label"
    assert text[1] == "2014-01-01 00:00:00,0.0,0.30000000000000004,0"
    assert [line.rsplit(",", 1)[1] for line in text[10:17]] == [
        "0",
        "1",
        "1",
        "1",
        "1",
        "1",
        "0",
    ]  # rows 9-15
    for f in files:
        back = nab.read_results(nab.results_path(tmp_path, "det", f.key), f)
        assert np.array_equal(back, scores[f.key])  # bit for bit
    assert nab.score_results_dir(tmp_path, "det", files) == nab.score_corpus(files, scores)


def test_results_errors(tmp_path: Path) -> None:
    a, b = synthetic_corpus()
    with pytest.raises(ValueError, match=r"catA/a\.csv row 2: anomaly score nan is not in \[0, 1\]"):
        nab.write_results(tmp_path / "x.csv", a, scores_with({2: math.nan}))
    nab.write_results(tmp_path / "x.csv", a, np.zeros(a.rows))
    with pytest.raises(ValueError, match=r"x\.csv: has 40 rows but catB/b\.csv has 100"):
        nab.read_results(tmp_path / "x.csv", b)
    shifted = CorpusFile(a.key, np.roll(a.timestamps, 1), a.values, a.windows)
    with pytest.raises(ValueError, match=r"x\.csv line 2: timestamp '2014-01-01 00:00:00' differs"):
        nab.read_results(tmp_path / "x.csv", shifted)
    with pytest.raises(FileNotFoundError, match=r"no results for catA/a\.csv"):
        nab.score_results_dir(tmp_path / "empty", "det", [a])


# ----------------------------------------------------------------------------------------------
# NAB's own data (skipped when the shared subset is absent)


def nab_dir() -> Path:
    """Return $NAB_DIR, or ../shared/nab beside the repository."""
    env = os.environ.get("NAB_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "nab"


@pytest.fixture(scope="module")
def nab_corpus() -> list[CorpusFile]:
    root = nab_dir()
    labels = root / "labels" / "combined_windows.json"
    if not (root / "data").is_dir() or not labels.is_file():
        pytest.skip(f"NAB data not found at {root} (set NAB_DIR to a dir with data/ and labels/)")
    return nab.load_corpus(root / "data", labels)


@pytest.fixture(scope="module")
def gaussian_scores(nab_corpus: list[CorpusFile]) -> dict[str, np.ndarray]:
    return {f.key: windowed_gaussian(f.values) for f in nab_corpus}


def test_subset_shape(nab_corpus: list[CorpusFile]) -> None:
    # SOURCE.md: 42 CSVs and 69 windows; the repeated 03:00 stamps do not disturb the mapping.
    assert len(nab_corpus) == 42
    assert sum(len(f.windows) for f in nab_corpus) == 69
    by_key = {f.key: f for f in nab_corpus}
    assert by_key["realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv"].windows == ((2399, 2871),)
    assert by_key["realAWSCloudwatch/ec2_network_in_5abac7.csv"].windows == ((2490, 2726), (3091, 3327))


def test_null_detector_on_subset(nab_corpus: list[CorpusFile]) -> None:
    result = nab.score_corpus(nab_corpus, {f.key: np.zeros(f.rows) for f in nab_corpus})
    assert [result[p.name] for p in PROFILES] == [0.0, 0.0, 0.0]
    assert result["raw"] == {"standard": -69.0, "reward_low_FP_rate": -69.0, "reward_low_FN_rate": -138.0}


@pytest.mark.parametrize(
    ("decimals", "expected"),
    [(None, [30.8, 17.0, 37.3]), (12, [30.6, 16.4, 37.3])],
    ids=["exact floats", "rounded to 12 decimals"],
)
def test_windowed_gaussian_matches_baselines(
    nab_corpus: list[CorpusFile],
    gaussian_scores: dict[str, np.ndarray],
    decimals: int | None,
    expected: list[float],
) -> None:
    # BASELINES.md: NAB windowedGaussian on this subset, standard / low FP / low FN.
    scores = (
        gaussian_scores
        if decimals is None
        else {k: np.round(v, decimals) for k, v in gaussian_scores.items()}
    )
    result = nab.score_corpus(nab_corpus, scores)
    assert [round(result[p.name], 1) for p in PROFILES] == expected
    for profile in PROFILES:
        # The reported total is the files' sum at the threshold the corpus sweep chose.
        entries = [(scores[f.key], f.windows) for f in nab_corpus]
        assert result["thresholds"][profile.name] == nab.best_threshold(entries, profile)[0]
        assert result["raw"][profile.name] == pytest.approx(nab.best_threshold(entries, profile)[1], abs=1e-9)
        assert result["raw"][profile.name] == pytest.approx(
            sum(v[profile.name] for v in result["files"].values()), abs=1e-12
        )
