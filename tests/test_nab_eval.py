"""Tests for core.evaluation.nab.run: causality of the whole replay, the NAB runner's files, one detector.

Synthetic NAB-format corpora are built in tmp_path (1,500 rows at 5 minutes: a daily wave plus noise),
so nothing here needs the shared corpus.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import Settings, load_settings
from core.evaluation import nab
from core.evaluation.nab.run import DETECTOR, nab_score, replay_file, run_nab, score_file
from core.timegrid import DAY

ROWS = 1500
STEP = 300.0
START = "2014-04-01 00:00:00"


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Default settings (the production path)."""
    return load_settings(None, env={})


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
# One detector: NAB scores are the monitor's scores through a strictly increasing map


def test_nab_score_is_strictly_increasing_into_the_unit_interval() -> None:
    s = np.array([0.0, 0.5, 1.0, 1.0001, 2.0, 10.0, 1000.0])
    mapped = nab_score(s)
    assert mapped[0] == 0.0 and mapped[2] == 0.5  # the band edge maps to 0.5
    assert np.all(np.diff(mapped) > 0)
    assert np.all((mapped >= 0) & (mapped < 1))
    assert nab_score(np.array([np.nan]))[0] == 0.0


@pytest.mark.slow
def test_nab_scores_are_the_monitor_records_scores(settings: Settings) -> None:
    f = corpus_file("synthetic/a.csv", seed=4)
    records = replay_file(settings, f)
    np.testing.assert_array_equal(score_file(settings, f), nab_score(records["score"]))
    assert (records["score"][:288] == 0).all()  # no model before data.min_rows rows
    assert (records["score"][400:] > 0).any()


@pytest.mark.slow
def test_monitor_replay_of_a_nab_file_scores_as_the_nab_mode(settings: Settings, tmp_path: Path) -> None:
    """`--mode monitor` (source replay, no model) and the NAB mode give the same per-row scores."""
    import os
    import subprocess
    import sys

    stamps, values = series(seed=5)
    values[1200:1210] += 25.0
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(tmp_path / "f.csv", index=False)
    env = {**os.environ, "MONITORING_SOURCE": "replay", "TELEMETRY_PORT": "0"}
    env = {k: v for k, v in env.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    main = Path(__file__).resolve().parents[1] / "main.py"
    result = subprocess.run(
        [sys.executable, str(main), "--mode", "monitor", "--dataset", "f.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    monitor = np.array([r["score"] or 0.0 for r in lines])
    nab_mode = replay_file(settings, nab.CorpusFile("f.csv", stamps, values, ()))["score"]
    assert len(monitor) == len(nab_mode) == ROWS
    rho = pd.Series(monitor).rank().corr(pd.Series(nab_mode).rank())
    assert rho >= 0.999
    np.testing.assert_allclose(monitor, nab_mode, rtol=1e-9, atol=1e-9)
