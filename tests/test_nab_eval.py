"""Tests for core.nab_eval: causality of the whole replay, the NAB runner's files, the score mapping.

Synthetic NAB-format corpora are built in tmp_path (1,500 rows at 5 minutes: a daily wave plus noise),
so nothing here needs the shared corpus. Prophet runs with few uncertainty samples to stay fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import nab
from core.band import DAY
from core.config import Settings, load_settings
from core.nab_eval import DETECTOR, NabParams, nab_scores, run_nab, score_file

ROWS = 1500
STEP = 300.0
START = "2014-04-01 00:00:00"


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Default settings with a cheap band."""
    base = load_settings(None, env={})
    return base.model_copy(update={"model": base.model.model_copy(update={"uncertainty_samples": 20})})


def series(seed: int, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Return (timestamps as text, values): a daily wave plus noise."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(START, periods=rows, freq="5min")
    phase = 2 * np.pi * np.arange(rows) * STEP / DAY
    values = 50 + 10 * np.sin(phase) + rng.normal(0, 1.0, rows)
    return stamps.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=str), np.round(values, 3)


def corpus_file(key: str, seed: int, windows: tuple[nab.Window, ...] = ()) -> nab.CorpusFile:
    """Return an in-memory corpus file."""
    stamps, values = series(seed)
    return nab.CorpusFile(key, stamps, values, windows)


def write_corpus(root: Path, files: dict[str, tuple[int, list[tuple[int, int]]]]) -> None:
    """Write data/<key> CSVs and labels/combined_windows.json; rows of a window become timestamps."""
    labels: dict[str, list[list[str]]] = {"synthetic/not_here.csv": [[START + ".000000", START + ".000000"]]}
    for key, (seed, windows) in files.items():
        stamps, values = series(seed)
        for left, _ in windows:
            values[left : left + 3] += 40.0  # a spike at the start of each window
        path = root / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)
        labels[key] = [[f"{stamps[lo]}.000000", f"{stamps[hi]}.000000"] for lo, hi in windows]
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Causality of the whole path: replay, refits, mapping


@pytest.mark.slow
def test_changing_future_rows_leaves_past_scores_unchanged(settings: Settings) -> None:
    k = 1000
    original = corpus_file("synthetic/a.csv", seed=1)
    changed_values = original.values.copy()
    changed_values[k + 1 :] += np.linspace(0, 80, ROWS - k - 1) + 30 * np.sin(np.arange(ROWS - k - 1))
    changed = dataclasses.replace(original, values=changed_values)

    before = score_file(settings, original)
    after = score_file(settings, changed)

    assert len(before) == len(after) == ROWS
    np.testing.assert_array_equal(before[: k + 1], after[: k + 1])
    assert not np.array_equal(before[k + 1 :], after[k + 1 :])  # the test can see a change at all


# ----------------------------------------------------------------------------------------------
# The runner: results files, nab_scores.json, and re-scoring from disk


@pytest.mark.slow
def test_run_nab_writes_results_that_rescore_to_the_same_numbers(settings: Settings, tmp_path: Path) -> None:
    root, out = tmp_path / "nab", tmp_path / "out"
    write_corpus(
        root,
        {
            "synthetic/a.csv": (1, [(1100, 1180)]),
            "synthetic/b.csv": (2, [(900, 980), (1300, 1380)]),
            "synthetic/c.csv": (3, []),
        },
    )

    summary = run_nab(settings, root, out, n_jobs=2)

    files = nab.load_corpus(root / "data", root / "labels" / "combined_windows.json")
    assert [f.key for f in files] == ["synthetic/a.csv", "synthetic/b.csv", "synthetic/c.csv"]
    for f in files:
        written = pd.read_csv(out / "nab" / "synthetic" / f"{DETECTOR}_{Path(f.key).name}", dtype=str)
        source = pd.read_csv(root / "data" / f.key, dtype=str)
        assert list(written.columns) == ["timestamp", "value", "anomaly_score", "label"]
        assert written["timestamp"].tolist() == source["timestamp"].tolist()
        scores = written["anomaly_score"].astype(float)
        assert ((scores >= 0) & (scores <= 1)).all()
    assert not (out / "nab" / "synthetic" / f"{DETECTOR}_not_here.csv").exists()

    saved = json.loads((out / "nab_scores.json").read_text(encoding="utf-8"))
    rescored = nab.score_results_dir(out, DETECTOR, files)
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert saved[profile] == summary[profile] == rescored[profile]
    assert saved["standard"] > 0  # the spikes are found


# ----------------------------------------------------------------------------------------------
# The mapping


T = np.arange(3000) * STEP


def noise_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (y, yhat): unit noise around a forecast that starts at row 300."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1, len(T))
    yhat = np.zeros(len(T))
    yhat[:300] = np.nan
    return y, yhat


@pytest.mark.parametrize(
    "params", [NabParams(), NabParams(lags=()), NabParams(lagged_mean=False), NabParams(smooth=1, suppress=1)]
)
def test_scores_are_in_unit_interval_and_zero_without_forecast(params: NabParams) -> None:
    y, yhat = noise_case()
    y[2000] += 50.0
    scores = nab_scores(T, y, yhat, params)
    assert scores.shape == y.shape
    assert ((scores >= 0) & (scores < 1)).all()
    assert (scores[:300] == 0).all()
    assert scores[2000] == scores.max()


@pytest.mark.parametrize("params", [NabParams(), NabParams(lags=())])
def test_score_grows_with_the_residual(params: NabParams) -> None:
    # The forecast is 0; the same time a day and a week before the value was -1, so a larger residual
    # also moves the value further from them (with lags the point channel is the smaller of both).
    # The rows just before, and those a day and a week before them, sit on the forecast, so the mean
    # channels grow with the residual too.
    y, yhat = noise_case()
    y[-25:-1] = 0.0
    for lag_rows in (int(DAY / STEP), int(7 * DAY / STEP)):
        y[-25 - lag_rows : -lag_rows] = 0.0
        y[-1 - lag_rows] = -1.0
    last = []
    for deviation in [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 100.0]:
        trial = y.copy()
        trial[-1] = deviation
        last.append(nab_scores(T, trial, yhat, params)[-1])
    assert all(b >= a for a, b in zip(last, last[1:], strict=False))
    assert last[-1] > last[0]


@pytest.mark.parametrize(
    ("scale", "offset"),
    [(1.0, 0.0), (1000.0, 0.0), (0.01, 5.0), (3.0, -1e6)],
    ids=["unit", "big", "small", "far"],
)
def test_scores_do_not_depend_on_the_series_unit(scale: float, offset: float) -> None:
    y, yhat = noise_case(seed=3)
    y[2500] += 8.0
    reference = nab_scores(T, y, yhat)
    np.testing.assert_allclose(nab_scores(T, scale * y + offset, scale * yhat + offset), reference, atol=1e-9)


def test_a_value_repeating_yesterday_is_not_an_alarm() -> None:
    # A sharp daily spike the forecast misses: the first one is an alarm, the next day's is explained.
    y, yhat = noise_case(seed=4)
    per_day = int(DAY / STEP)
    y[1000] += 30.0
    y[1000 + per_day] += 30.0
    scores = nab_scores(T, y, yhat)
    without_lags = nab_scores(T, y, yhat, NabParams(lags=()))
    assert scores[1000] > 0.6 and without_lags[1000] > 0.6
    assert scores[1000 + per_day] < without_lags[1000 + per_day]
    assert scores[1000 + per_day] < scores[1000]


def test_later_rows_of_one_excursion_are_damped() -> None:
    y, yhat = noise_case(seed=5)
    # A plateau: its first row beats the past, the rest do not (point channel alone: smooth=1).
    y[1500:1510] = np.linspace(10, 9, 10)
    damped = nab_scores(T, y, yhat, NabParams(lags=(), smooth=1))
    assert damped[1500] == damped[1400:1600].max()
    assert (damped[1501:1510] < damped[1500]).all()
    assert (damped[1502:1510] < damped[1500] / 2).all()  # the scale has seen two plateau rows by then
