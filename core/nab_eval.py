"""Run the detector over a NAB corpus through the monitor loop and score it with NAB's rules.

Each file is replayed causally by ``core.monitor.Monitor`` on a simulated clock (``replay_file``):
no model until a quarter of the probationary rows have arrived, then a fit on them, then a refit every
day (of data time) on the last two weeks: every forecast uses only the rows before it. The loop's
records (value, yhat, band, production score with 1.0 = band edge) are then mapped to NAB's
``anomaly_score`` in [0, 1) by :func:`nab_scores` (documented there); the mapping is causal too.
One :class:`NabParams` serves every file. Files run in parallel (joblib).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import nab
from core.band import DAY, WEEK
from core.config import Settings
from core.detector import ModelStore
from core.errors import DataError
from core.evaluate import replay
from core.fsutil import atomic_write_json
from core.records import ScoredRecord, SeriesRef
from core.refit import RefitPolicy
from core.sources.replay import ReplaySeries
from core.train import score_params

__all__ = [
    "DETECTOR",
    "NabParams",
    "epoch_seconds",
    "nab_scores",
    "nab_settings",
    "replay_file",
    "run_nab",
    "score_file",
]

DETECTOR = "prophetband"


@dataclass(frozen=True)
class NabParams:
    """The NAB replay's choices and the score mapping's parameters: one set for every file.

    Replay (why each differs from the monitor's defaults):

    * ``first_fit``: fit once this share of the probationary rows has arrived, not after all of them,
      so the mapping has a few hundred residuals to estimate each series' noise from before NAB
      starts counting. With the first mapping a scale from 50 residuals made about 30 false alarms
      right after the first fit (+4.9 for P/4); with the final one it matters little (P, P/2, P/4 and
      P/10 score 72.6 to 73.1), so it stays for the reason, not for the number. (P comes from the
      file's length, as in NAB, which hands every detector its probationary period.)
    * ``refit_interval``, ``history``: as in production, daily on two weeks. Prophet needs a span of
      two weeks for weekly seasonality, so it never gets one here; the one-week lag in the mapping
      stands in for it. Refitting every 6 hours scored the same at four times the cost.
    * ``uncertainty_samples``: at most this many Prophet samples. The mapping uses ``yhat``, which does
      not depend on them; the band (the production score) stays, a little noisier, and the replay is
      about three times faster.
    * ``horizon_days``: the band is refitted daily, so two days ahead are enough (a smaller grid).

    Mapping: see :func:`nab_scores`.
    """

    first_fit: float = 0.25
    refit_interval: float = DAY
    history: float = 14 * DAY
    uncertainty_samples: int = 200
    horizon_days: float = 2.0
    scale_window: int = 700
    quantile: float = 0.999
    min_history: int = 50
    smooth: int = 24
    lags: tuple[float, ...] = (DAY, WEEK)
    lagged_mean: bool = True
    suppress: int = 72

    def describe(self) -> str:
        """Return a one-line description for ``nab_scores.json``."""
        lags = ", ".join(f"{lag / DAY:g} d" for lag in self.lags) or "no lag"
        which = "both channels" if self.lagged_mean else "the point channel"
        return (
            f"causal replay through the monitor loop; first fit after {self.first_fit:g} of the "
            f"probationary rows, Prophet refitted every {self.refit_interval / 3600:g} h on the last "
            f"{self.history / DAY:g} days; NAB score = max(point residual, its {self.smooth}-row mean), "
            f"each over the {self.quantile:g} quantile of its previous {self.scale_window} rows; "
            f"{which} only where the value also differs from the same time {lags} before; a row that "
            f"does not beat the previous {self.suppress} rows is halved; s / (1 + s)"
        )


DEFAULT = NabParams()


def _normalised(magnitude: np.ndarray, params: NabParams) -> np.ndarray:
    """Divide each magnitude by the recent scale of the same channel (previous rows only)."""
    past = pd.Series(magnitude).shift(1).rolling(params.scale_window, min_periods=params.min_history)
    scale = past.quantile(params.quantile).to_numpy()
    # A floor for series that sit still for days (quantile 0): a tenth of the typical magnitude.
    floor = past.median().to_numpy() * 0.1 + 1e-9
    with np.errstate(invalid="ignore"):
        return magnitude / np.fmax(scale, floor)


def _lag_difference(t: np.ndarray, y: np.ndarray, lag: float) -> np.ndarray:
    """Return y minus the value of the row nearest ``t - lag``, else NaN.

    The row must lie within half a typical step of ``t - lag``; the typical step is the median of the
    last 100 spacings (so row i uses rows <= i only, and gaps in the data are respected).
    """
    n = len(t)
    if n < 2:
        return np.full(n, np.nan)
    spacing = pd.Series(np.diff(t, prepend=np.nan)).rolling(100, min_periods=1).median().to_numpy()
    target = t - lag
    right = np.clip(np.searchsorted(t, target), 0, n - 1)
    left = np.clip(right - 1, 0, n - 1)
    k = np.where(np.abs(t[left] - target) < np.abs(t[right] - target), left, right)
    with np.errstate(invalid="ignore"):
        ok = (np.abs(t[k] - target) <= spacing / 2) & (k < np.arange(n))
    return np.where(ok, y - y[k], np.nan)


def _rolling_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Return the mean of the available (non-NaN) values among the last ``width`` rows."""
    return pd.Series(x).rolling(width, min_periods=1).mean().to_numpy()


def _explained(score: np.ndarray, seasonal: np.ndarray) -> np.ndarray:
    """Return the smaller of a score and its seasonal second opinion, where that opinion exists."""
    return np.where(np.isnan(seasonal), score, np.fmin(score, seasonal))


def nab_scores(t: np.ndarray, y: np.ndarray, yhat: np.ndarray, params: NabParams = DEFAULT) -> np.ndarray:
    """Map the loop's forecasts to NAB anomaly scores in [0, 1), causally (row i uses rows <= i only).

    1. Residual r = y - yhat (the band's forecast); rows without a forecast score 0.
    2. Per-series noise: every magnitude below is divided by the ``quantile`` (0.999 of 700 rows: the
       second largest) of the same channel over the previous ``scale_window`` rows. A score above 1
       means "larger than anything seen lately" on every series, so one threshold serves them all;
       unlike a MAD it does not collapse on step-like or quantised series (MAD 0). The window is short
       (700 rows, 2.4 days at 5 minutes) so that one old outlier is forgotten within days instead of
       hiding every smaller anomaly after it (400-1,000 rows score alike; 1,200 and more lose 4-8).
    3. Seasonal second opinion (``lags``, a cheap causal model beside Prophet): d = y - y(t - lag), the
       value the same time one day and one week before. Prophet's smooth daily seasonality misses
       sharp daily shapes, and a two-week refit never learns the weekly one; a value that repeats
       yesterday's or last week's is explained by seasonality all the same.
    4. point = |r| normalised, or the smaller of it and each |d| normalised.
    5. shift = |mean of the last ``smooth`` r| normalised: a level change smaller than the noise shows
       in the mean first. With ``lagged_mean`` it is likewise the smaller of it and each |mean of d|:
       a seasonal shape Prophet misses lasts for hours and fires the mean just as it fires the
       point; once explained, a longer mean (24 rows: 18 to 48 score alike) can catch smaller shifts.
    6. s = max(point, shift); a row keeps s only if it beats every s of the previous ``suppress``
       rows, else s is halved: one alarm per excursion (NAB counts only a window's first detection
       and charges every false alarm).
    7. anomaly_score = s / (1 + s): strictly increasing, so no ties at a saturated 1.0.
    """
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    r = np.where(np.isfinite(yhat), y - yhat, np.nan)
    point = _normalised(np.abs(r), params)
    shift = _normalised(np.abs(_rolling_mean(r, params.smooth)), params)
    for lag in params.lags:
        d = _lag_difference(t, y, lag)
        point = _explained(point, _normalised(np.abs(d), params))
        if params.lagged_mean:
            shift = _explained(shift, _normalised(np.abs(_rolling_mean(d, params.smooth)), params))
    s = np.nan_to_num(np.fmax(point, shift), nan=0.0)
    s = np.where(np.isnan(r), 0.0, s)
    prev_max = pd.Series(s).shift(1).rolling(params.suppress, min_periods=1).max().fillna(0.0).to_numpy()
    s = np.where(s > prev_max, s, 0.5 * s)
    return s / (1.0 + s)


def epoch_seconds(file: nab.CorpusFile) -> np.ndarray:
    """Return the rows' times in epoch seconds, repeated timestamps (DST) nudged one second apart."""
    stamps = pd.DatetimeIndex(pd.to_datetime(pd.Series(file.timestamps), format="%Y-%m-%d %H:%M:%S"))
    t = stamps.as_unit("ns").asi8.astype(np.float64) / 1e9
    # Every row must be its own point for the loop, so a timestamp never repeats or goes back.
    for i in range(1, len(t)):
        if t[i] <= t[i - 1]:
            t[i] = t[i - 1] + 1.0
    return t


def nab_settings(settings: Settings, params: NabParams = DEFAULT) -> Settings:
    """Return a copy of the settings with the model adjusted for the NAB replay (see NabParams)."""
    model = settings.model.model_copy(
        update={
            "uncertainty_samples": min(settings.model.uncertainty_samples, params.uncertainty_samples),
            "horizon_days": params.horizon_days,
        }
    )
    return settings.model_copy(update={"model": model})


def replay_file(
    settings: Settings, file: nab.CorpusFile, params: NabParams = DEFAULT
) -> dict[str, np.ndarray]:
    """Replay one NAB file through the monitor loop; return the records' fields as arrays.

    ``settings`` are used as given (callers apply :func:`nab_settings`).
    """
    t = epoch_seconds(file)
    probation = nab.probationary_period(file.rows)
    first_fit = max(int(params.first_fit * probation), 10)
    # The loop's tick is the typical spacing of the rows seen before the first fit: nothing later.
    seen = np.diff(t[: first_fit + 1])
    step = float(np.median(seen)) if len(seen) else 300.0
    ref = SeriesRef(labels=(("file", file.key),), host=file.key)
    policy = RefitPolicy(
        interval=params.refit_interval,
        history=params.history,
        min_rows=first_fit,
        retry_after=step,
    )
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
    return _records_to_arrays(records)


def score_file(settings: Settings, file: nab.CorpusFile, params: NabParams = DEFAULT) -> np.ndarray:
    """Replay one NAB file through the monitor loop and return its anomaly scores (one per row)."""
    rec = replay_file(nab_settings(settings, params), file, params)
    return nab_scores(rec["ts"], rec["value"], rec["yhat"], params)


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
    # Longest files first, so the last worker does not start a long file alone.
    ordered = sorted(files, key=lambda f: -f.rows)
    jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_scored)(settings, f) for f in ordered
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
    summary["method"] = DEFAULT.describe()
    atomic_write_json(out / "nab_scores.json", summary)
    return summary


def _scored(settings: Settings, file: nab.CorpusFile) -> tuple[str, np.ndarray]:
    from loguru import logger

    # Hundreds of refits per file would flood the terminal; the caller reports progress per file.
    logger.disable("core")
    try:
        return file.key, score_file(settings, file)
    finally:
        logger.enable("core")
