"""Evaluate mode: causal replay, injected anomalies, metrics, plots and report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.assemble import replay
from core.config import Settings
from core.evaluation import evaluate
from core.evaluation.inject import inject_anomalies
from core.evaluation.metrics import event_metrics, events, point_metrics, roc_auc
from core.model.store import ModelStore
from core.records import SeriesRef
from core.refit import RefitPolicy
from core.scoring import ScoreParams
from core.sources.replay import ReplaySeries
from core.sources.simulator import simulate
from core.timegrid import DAY

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_762_992_000.0


def series(days: float = 20, step: float = 900.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    t = T0 + step * np.arange(int(days * DAY / step))
    return t, simulate("web", t, seed=seed)


def profile_settings() -> Settings:
    return Settings.model_validate(
        {"model": {"kind": "profile"}, "data": {"min_rows": 96}, "evaluation": {"anomalies_per_kind": 1}}
    )


def run_replay(t, y, start_index: int):
    ref = SeriesRef.from_labels({"host": "a"}, "host")
    policy = RefitPolicy(interval=DAY, history=14 * DAY, min_rows=96)
    out = replay(
        [ReplaySeries(ref, t, y)],
        ModelStore(),
        profile_settings(),
        ScoreParams(),
        start_at=float(t[start_index]),
        interval=float(t[1] - t[0]),
        policy=policy,
    )
    return out[ref.id]


def test_replay_is_causal_changing_the_future_changes_no_past_score():
    t, y = series()
    base = run_replay(t, y, 200)
    k = 1200
    changed = y.copy()
    changed[k + 1 :] += np.random.default_rng(0).normal(0, 30, len(y) - k - 1)
    again = run_replay(t, changed, 200)
    assert len(base) == len(again) == len(t) - 201
    cut = k - 200  # records start after row 200
    assert [r.to_json() for r in base[:cut]] == [r.to_json() for r in again[:cut]]
    assert [r.score for r in base[cut:]] != [r.score for r in again[cut:]]


def test_replay_scores_every_row_once_and_refits_daily():
    t, y = series(days=10)
    recs = run_replay(t, y, 96 * 3)
    assert [r.ts for r in recs] == list(t[96 * 3 + 1 :])
    models = {r.model for r in recs}
    assert len(models) >= 6  # one per day of data, each trained only on the past


def test_injected_anomalies_land_in_the_holdout_without_overlap():
    t, y = series()
    start = 1000
    rng = np.random.default_rng(3)
    kinds = ("spike", "dip", "level_shift", "drift", "flatline", "dropout")
    out, injected = inject_anomalies(t, y, start, kinds, 2, rng, clip=(0, 100))
    assert len(injected) == 12 and {a.kind for a in injected} == set(kinds)
    assert np.array_equal(out[:start], y[:start])
    spans = sorted((a.start, a.start + a.duration) for a in injected)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))
    assert all(a.start > t[start] for a in injected)
    dropout = next(a for a in injected if a.kind == "dropout")
    inside = (t >= dropout.start) & (t < dropout.start + dropout.duration)
    assert np.all(out[inside] == 0.0)
    again, _ = inject_anomalies(t, y, start, kinds, 2, np.random.default_rng(3), clip=(0, 100))
    assert np.array_equal(out, again)  # seeded: reproducible


def test_metrics_by_hand():
    truth = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 0], bool)
    flagged = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 1], bool)
    pm = point_metrics(truth, flagged)
    assert (pm.tp, pm.fp, pm.fn, pm.tn) == (1, 2, 3, 4)
    assert pm.precision == pytest.approx(1 / 3) and pm.recall == pytest.approx(1 / 4)
    assert pm.fpr == pytest.approx(2 / 6)
    em = event_metrics([(2, 4), (8, 8)], flagged)
    assert (em["detected_events"], em["flagged_events"], em["false_events"]) == (1, 3, 2)
    assert events(np.array([1, 1, 0, 1, 0, 0, 1], bool), max_gap=1) == [(0, 3), (6, 6)]
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) is None


def write_dataset(path: Path) -> Path:
    t, y = series(days=16, step=900.0, seed=5)
    stamps = pd.to_datetime(t, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "cpu_usage": y.round(2)}).to_csv(path, index=False)
    return path


def test_evaluate_writes_report_plots_and_metrics(tmp_path):
    data = write_dataset(tmp_path / "d.csv")
    metrics = evaluate(
        profile_settings(), data, model_path=tmp_path / "absent.json", output_dir=tmp_path / "o"
    )
    names = {p.name for p in (tmp_path / "o").iterdir()}
    assert {
        "evaluation_report.txt",
        "confusion_matrix.png",
        "roc_curve.png",
        "detection_overview.png",
        "threshold_analysis.png",
    } <= names
    report = (tmp_path / "o" / "evaluation_report.txt").read_text()
    for word in ("precision", "recall", "F1", "coverage", "ROC AUC", "Threshold analysis"):
        assert word in report
    assert metrics["event"]["true_events"] == 6  # one of each kind
    assert set(metrics["events_by_kind"]) == {"spike", "dip", "level_shift", "drift", "flatline", "dropout"}
    assert 0 <= metrics["point"]["precision"] <= 1 and metrics["roc_auc"] > 0.5
    assert len(metrics["threshold_analysis"]) == len(Settings().evaluation.threshold_grid)
    saved = json.loads((tmp_path / "model_metadata.json").read_text())
    assert saved["evaluation"]["point"] == metrics["point"]
    again = evaluate(
        profile_settings(), data, model_path=tmp_path / "absent.json", output_dir=tmp_path / "o2", plots=False
    )
    assert again["point"] == metrics["point"]  # seeded: the same run gives the same numbers


@pytest.mark.slow
def test_train_then_evaluate_on_the_shipped_dataset(tmp_path):
    """The documented command pair, on the sample data, through the CLI."""
    for name in ("dataset.csv", "dataset_labels.json", "config.yaml"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    for mode in ("train", "evaluate"):
        result = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--mode", mode],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    out = tmp_path / "outputs"
    for name in (
        "confusion_matrix.png",
        "roc_curve.png",
        "detection_overview.png",
        "threshold_analysis.png",
        "evaluation_report.txt",
    ):
        assert (out / name).stat().st_size > 1000
    meta = json.loads((out / "model_metadata.json").read_text())
    ev = meta["evaluation"]
    # The calibrated score (README, Quality): the band holds its nominal coverage, few false alarms,
    # stuck values found. Event recall on this densely injected holdout (a third of its points are
    # anomalous) is about 0.4: each anomaly must beat the largest deviation of the last ~2 days.
    assert abs(ev["coverage_normal"] - ev["nominal_coverage"]) <= 0.02
    assert ev["point"]["fpr"] <= 0.01
    assert ev["events_by_kind"]["flatline"]["detected"] >= 3
    assert ev["event"]["recall"] > 0.35 and ev["event"]["precision"] > 0.85
    assert ev["baseline"]["roc_auc"] is not None
    assert "series" in meta  # training summary kept beside the evaluation
