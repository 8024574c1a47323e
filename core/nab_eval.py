"""Run the detector over a NAB corpus through the monitor loop and score it with NAB's rules.

Each file is replayed causally by ``core.monitor.Monitor`` on a simulated clock: no model until the
probationary rows have arrived, then a fit on them, then a refit every day (of data time) on the
last two weeks: every score uses only the rows before it. The loop's production score (1.0 = band
edge) is then mapped to NAB's ``anomaly_score`` in [0, 1] by :func:`nab_scores` (documented there);
the mapping is causal too. Files run in parallel (joblib).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import nab
from core.band import DAY
from core.config import Settings
from core.detector import ModelStore
from core.errors import DataError
from core.evaluate import replay
from core.fsutil import atomic_write_json
from core.records import ScoredRecord, SeriesRef
from core.refit import RefitPolicy
from core.sources.replay import ReplaySeries
from core.train import score_params

__all__ = ["DETECTOR", "nab_scores", "run_nab", "score_file"]

DETECTOR = "prophetband"


def nab_scores(
    y: np.ndarray,
    yhat: np.ndarray,
    *,
    scale_window: int = 2016,
    quantile: float = 0.999,
    smooth: int = 6,
    suppress: int = 72,
    min_history: int = 50,
) -> np.ndarray:
    """Map residuals to NAB anomaly scores in [0, 1), causally (row i uses rows <= i only).

    1. residual r = y - yhat (the band's forecast); rows without a forecast score 0;
    2. two channels, each divided by its own recent scale: the point residual |r|, and the mean of the
       last ``smooth`` residuals (catches shifts smaller than the noise); the scale is the ``quantile``
       of the channel's absolute values over the previous ``scale_window`` rows (per-series noise
       estimation: robust on step-like series where a MAD collapses to 0);
    3. s = the larger channel; a row keeps its s only if it beats every s of the previous ``suppress``
       rows, else it is halved (one alarm per excursion rewards the earliest detection);
    4. anomaly_score = s / (1 + s): strictly increasing, so no ties at a saturated 1.0.
    """
    r = np.where(np.isfinite(yhat), y - yhat, np.nan)
    channels = []
    for width in (1, smooth):
        series = pd.Series(r).rolling(width, min_periods=1).mean() if width > 1 else pd.Series(r)
        mag = series.abs()
        scale = mag.shift(1).rolling(scale_window, min_periods=min_history).quantile(quantile)
        floor = mag.shift(1).rolling(scale_window, min_periods=min_history).median() * 0.1 + 1e-9
        channels.append((mag / np.maximum(scale, floor)).to_numpy())
    s = np.nan_to_num(np.fmax(channels[0], channels[1]), nan=0.0)
    prev_max = pd.Series(s).shift(1).rolling(suppress, min_periods=1).max().fillna(0.0).to_numpy()
    s = np.where(s > prev_max, s, 0.5 * s)
    return s / (1.0 + s)


def score_file(settings: Settings, file: nab.CorpusFile) -> np.ndarray:
    """Replay one NAB file through the monitor loop and return its anomaly scores (one per row)."""
    from loguru import logger

    logger.remove()  # workers stay quiet; the parent reports progress
    stamps = pd.DatetimeIndex(pd.to_datetime(pd.Series(file.timestamps), format="%Y-%m-%d %H:%M:%S"))
    t = stamps.as_unit("ns").asi8.astype(np.float64) / 1e9
    # NAB has repeated timestamps (DST): nudge them one second apart so every row is its own point.
    for i in range(1, len(t)):
        if t[i] <= t[i - 1]:
            t[i] = t[i - 1] + 1.0
    step = float(np.median(np.diff(t)))
    ref = SeriesRef(labels=(("file", file.key),), host=file.key)
    probation = nab.probationary_period(file.rows)
    policy = RefitPolicy(interval=DAY, history=14 * DAY, min_rows=max(probation, 10), retry_after=step)
    records = replay(
        [ReplaySeries(ref, t, file.values)],
        ModelStore(),
        settings,
        score_params(settings),
        start_at=float(t[0]) - step,
        interval=step,
        policy=policy,
    )[ref.id]
    if len(records) != file.rows:
        raise RuntimeError(f"{file.key}: replay scored {len(records)} of {file.rows} rows")
    y = np.array([r.value for r in records])
    yhat = np.array([r.yhat for r in records])
    return nab_scores(y, yhat)


def _records_to_arrays(records: list[ScoredRecord]) -> dict[str, np.ndarray]:
    return {
        name: np.array([getattr(r, name) for r in records]) for name in ("value", "yhat", "lower", "upper")
    }


def run_nab(
    settings: Settings,
    nab_dir: str | Path,
    output_dir: str | Path,
    *,
    n_jobs: int = 2,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Score every labelled file of a NAB corpus; write results files and ``nab_scores.json``."""
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
    jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_scored)(settings, f) for f in files
    )
    out = Path(output_dir)
    by_key = {f.key: f for f in files}
    for key, values in jobs:
        scores[key] = values
        nab.write_results(nab.results_path(out, DETECTOR, key), by_key[key], values)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    summary = nab.score_corpus(files, scores)
    summary["detector"] = DETECTOR
    summary["rows"] = int(sum(f.rows for f in files))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["method"] = (
        "causal replay through the monitor loop; Prophet refitted daily on the last 14 days; "
        "NAB score = two-channel residual / recent 99.9th percentile, suppressed within 72 rows, s/(1+s)"
    )
    atomic_write_json(out / "nab_scores.json", summary)
    return summary


def _scored(settings: Settings, file: nab.CorpusFile) -> tuple[str, np.ndarray]:
    return file.key, score_file(settings, file)
