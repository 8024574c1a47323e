"""Run the detector over a NAB corpus through the production path and score it with NAB's rules.

Each file is replayed causally by ``core.monitor.Monitor`` on a simulated clock exactly as
``python main.py --mode monitor`` replays a CSV (``monitoring.source: replay``): the tick is the file's
typical spacing, no model until ``data.min_rows`` rows have arrived, then a Prophet fit and a refit every
``monitoring.refit_interval_hours`` on the last ``monitoring.refit_history_days``, with the production
settings throughout. NAB's ``anomaly_score`` is the score the monitor writes, mapped into [0, 1) by the
strictly increasing ``s / (1 + s)`` (:func:`nab_score`), so the ranking NAB scores is the ranking the
monitor decides with. Files run in parallel (joblib).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from core.alerts.budget import alert_budget, merge_budgets
from core.assemble import replay
from core.calibration import CalibrationParams, SeriesCalibrator
from core.config import Settings
from core.errors import DataError
from core.evaluation import nab
from core.evaluation.baseline import baseline_scores
from core.fsutil import atomic_write_json
from core.model.store import ModelStore
from core.records import ScoredRecord, SeriesRef
from core.refit import RefitPolicy
from core.sources.replay import ReplaySeries
from core.timegrid import to_epoch

__all__ = ["DETECTOR", "epoch_seconds", "nab_score", "replay_file", "run_nab", "score_file", "summary_line"]

DETECTOR = "prophetband"
METHOD = (
    "causal replay through the monitor loop with the production settings; NAB anomaly_score = s / (1 + s) "
    "of the monitor's anomaly_score s (1.0 = the calibrated band's edge)"
)


BASELINE_METHOD = "|y - median of the previous 12 rows| / 99th percentile of it over the previous 2,000 rows"


def nab_score(score: np.ndarray) -> np.ndarray:
    """Map the monitor's anomaly scores (>= 0, 1.0 = band edge) into NAB's [0, 1): ``s / (1 + s)``."""
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=0.0)
    s = np.maximum(s, 0.0)
    return s / (1.0 + s)


def epoch_seconds(file: nab.CorpusFile) -> np.ndarray:
    """Return the rows' times in epoch seconds, repeated timestamps (DST) nudged one second apart."""
    t = to_epoch(pd.to_datetime(pd.Series(file.timestamps), format=nab.TIMESTAMP_FORMAT))
    # Every row must be its own point for the loop, so a timestamp never repeats or goes back.
    for i in range(1, len(t)):
        if t[i] <= t[i - 1]:
            t[i] = t[i - 1] + 1.0
    return t


def replay_file(
    settings: Settings,
    file: nab.CorpusFile,
    calibrator: Callable[[CalibrationParams], SeriesCalibrator] = SeriesCalibrator,
    keep: list[ScoredRecord] | None = None,
) -> dict[str, np.ndarray]:
    """Replay one NAB file through the monitor loop as monitor mode replays a CSV; return the records.

    ``keep``, if given, receives the scored records themselves (the alert budget replays them).
    """
    t = epoch_seconds(file)
    step = float(np.median(np.diff(t))) if file.rows > 1 else 300.0
    ref = SeriesRef(labels=(("file", file.key),), host=file.key)
    records = replay(
        [ReplaySeries(ref, t, file.values)],
        ModelStore(),
        settings,
        settings.scoring.params(),
        start_at=float(t[0]) - step,
        interval=step,
        policy=RefitPolicy.from_settings(settings),
        calibrator=calibrator,
    )[ref.id]
    if len(records) != file.rows:
        raise DataError(f"{file.key}: the replay scored {len(records)} of {file.rows} rows")
    if keep is not None:
        keep.extend(records)
    return _records_to_arrays(records)


def score_file(settings: Settings, file: nab.CorpusFile) -> np.ndarray:
    """Replay one NAB file through the monitor loop and return its NAB anomaly scores (one per row)."""
    return nab_score(replay_file(settings, file)["score"])


def _records_to_arrays(records: list[ScoredRecord]) -> dict[str, np.ndarray]:
    return {
        name: np.array([getattr(r, name) for r in records], dtype=np.float64)
        for name in ("ts", "value", "yhat", "lower", "upper", "score")
    }


def run_nab(
    settings: Settings,
    nab_dir: str | Path,
    output_dir: str | Path,
    *,
    n_jobs: int = 2,
    progress: Callable[[int], Any] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Score every labelled file of a NAB corpus; write results files and ``nab_scores.json``.

    ``quiet`` silences the library's log while each file replays (hundreds of refits per file would
    flood a terminal; the CLI reports progress per file instead).
    """
    from joblib import Parallel, delayed

    started = time.perf_counter()
    root = Path(nab_dir)
    labels = root / "labels" / "combined_windows.json"
    if not (root / "data").is_dir() or not labels.is_file():
        raise DataError(f"{root}: not a NAB corpus; expected {root}/data/<category>/*.csv and {labels}")
    try:
        files = nab.load_corpus(root / "data", labels)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if not files:
        raise DataError(f"{root}: no data file has an entry in {labels}")
    bar = progress(len(files)) if progress else None
    scores: dict[str, np.ndarray] = {}
    # Longest files first, so the last worker does not start a long file alone.
    ordered = sorted(files, key=lambda f: -f.rows)
    jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_scored)(settings, f, quiet) for f in ordered
    )
    out = Path(output_dir)
    by_key = {f.key: f for f in files}
    seconds: dict[str, float] = {}
    budgets = []
    for key, values, took, budget in jobs:
        scores[key] = values
        budgets.append(budget)
        seconds[key] = took
        nab.write_results(nab.results_path(out, DETECTOR, key), by_key[key], values)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    summary = nab.score_corpus(files, scores)
    summary["detector"] = DETECTOR
    summary["rows"] = int(sum(f.rows for f in files))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["method"] = METHOD
    # The ten-line baseline on the same files, scored the same way (no model, no tuning).
    base = nab.score_corpus(files, {f.key: baseline_scores(f.values) for f in files})
    summary["baseline"] = {p.name: base[p.name] for p in nab.PROFILES} | {"method": BASELINE_METHOD}
    # Where the time goes: the replay of each file (Prophet fits dominate), slowest first.
    summary["replay_seconds"] = dict(sorted(seconds.items(), key=lambda kv: -kv[1]))
    summary["alert_budget"] = merge_budgets(budgets)
    atomic_write_json(out / "nab_scores.json", summary)
    return summary


def _scored(
    settings: Settings, file: nab.CorpusFile, quiet: bool
) -> tuple[str, np.ndarray, float, dict[str, Any]]:
    # The files replay in worker processes, so the caller's log settings do not reach them: the
    # worker applies ``quiet`` itself, for the one file, and restores the log afterwards.
    with _silenced("core") if quiet else contextlib.nullcontext():
        started = time.perf_counter()
        kept: list[ScoredRecord] = []
        scores = nab_score(replay_file(settings, file, keep=kept)["score"])
        took = round(time.perf_counter() - started, 2)
        # The alert budget of this file (core.alerts.budget), its windows as times.
        t = epoch_seconds(file)
        windows = [(float(t[lo]), float(t[hi])) for lo, hi in file.windows]
        series = kept[0].series if kept else file.key
        budget = alert_budget(settings.alerts, {series: kept}, {series: windows}, labelled=True)
        return file.key, scores, took, budget


@contextlib.contextmanager
def _silenced(name: str) -> Iterator[None]:
    logger.disable(name)
    try:
        yield
    finally:
        logger.enable(name)


def summary_line(summary: dict[str, Any], path: Path) -> str:
    """Return the one line the CLI prints after a NAB run: the detector, then the baseline."""
    b = summary["baseline"]
    return (
        f"NAB {summary['rows']} rows in {summary['seconds']:.0f} s: standard {summary['standard']:.1f}, "
        f"reward_low_FP_rate {summary['reward_low_FP_rate']:.1f}, reward_low_FN_rate "
        f"{summary['reward_low_FN_rate']:.1f} (ten-line baseline {b['standard']:.1f} / "
        f"{b['reward_low_FP_rate']:.1f} / {b['reward_low_FN_rate']:.1f}); {path}"
    )
