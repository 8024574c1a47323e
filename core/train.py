"""Train mode: CSV -> clean series -> one model per series -> band -> artifact, metadata and plots.

:func:`train` reads the CSV; :func:`train_series` fits and writes any clean series, each with its own
unit, clip range and model settings (``core/train_prometheus.py`` feeds it Prometheus history).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from core.cleaning import OUTLIER_CUT, aggregate, find_outliers, nice_step
from core.config import ModelSettings, Settings
from core.data import Series, load_dataset, split_series
from core.errors import ConfigError, DataError
from core.evaluation.labels import ALL_SERIES, load_windows
from core.fsutil import StagedFiles, atomic_write_json
from core.model.artifact import ModelArtifact, SeriesModel, save_artifact
from core.model.forecaster import MAX_GRID_POINTS, FittedModel
from core.model.parallel import FitJob, FitOutcome, describe_failures, fit_many
from core.model.quality import band_metrics, eda_summary
from core.scoring import ScoreParams
from core.timegrid import DAY, WEEK, to_epoch
from core.units import SeriesPlans, clip_range

__all__ = ["TrainResult", "TrainSeries", "train", "train_series"]


@dataclass
class TrainResult:
    """What a training run produced."""

    artifact: ModelArtifact
    artifact_path: Path
    artifact_bytes: int
    metadata_path: Path
    metadata: dict[str, Any]
    plots: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class TrainSeries:
    """One clean series to train and what its values are: unit, scale, clip range, model settings."""

    series: Series
    unit: str
    model: ModelSettings
    clip: tuple[float, float] | None = None
    scale: float = 1.0
    ylabel: str = "value"


def _epoch(frame: pd.DataFrame) -> np.ndarray:
    return to_epoch(frame["ds"])


def train(
    settings: Settings,
    dataset: str | Path,
    *,
    model_path: str | Path,
    output_dir: str | Path,
    plots: bool = True,
    eda: bool = True,
    labels: str | Path | None = None,
    progress: Callable[[FitOutcome], None] | None = None,
) -> TrainResult:
    """Fit one model per series of ``dataset`` and write the artifact, metadata and plots.

    Nothing is written unless the whole run succeeds: every file is first written beside its target
    under a temporary name, and all are renamed into place at the end (a failure removes them).
    The fits run ``model.n_jobs`` at a time (or on ``model.dask_scheduler``); a series whose fit fails
    or times out gets the profile model and is reported (``fit_failures``); ``progress`` is called
    once per fitted series.
    """
    started = time.perf_counter()
    check_model_path(model_path)
    data = load_dataset(settings, dataset)
    for line in data.report.summary():
        logger.info(line)
    for line in data.report.warnings:
        logger.warning(line)
    windows = load_windows(labels, dataset, timezone=settings.data.timezone) if labels else {}
    report = data.report
    clip, plans = clip_range(report.unit, settings), SeriesPlans(settings, source="csv")
    inputs = [
        TrainSeries(
            series,
            report.unit,
            plans.of(series.id, series.labels).model,
            clip,
            report.scale,
            _ylabel(report.value_column, report.unit),
        )
        for series in data.series
    ]
    return train_series(
        settings,
        inputs,
        dataset=report.to_dict(),
        origin=str(dataset),
        model_path=model_path,
        output_dir=output_dir,
        plots=plots,
        eda=eda,
        windows=windows,
        progress=progress,
        started=started,
    )


def check_model_path(model_path: str | Path) -> Path:
    """Return the artifact path; a ConfigError if it names a directory."""
    artifact_path = Path(model_path)
    if artifact_path.is_dir():
        raise ConfigError(
            f"{artifact_path}: the model path is a directory; name a file, "
            f"e.g. {artifact_path / 'cpu_anomaly_model.json'}"
        )
    return artifact_path


def train_series(
    settings: Settings,
    inputs: list[TrainSeries],
    *,
    dataset: dict[str, Any],
    origin: str,
    model_path: str | Path,
    output_dir: str | Path,
    plots: bool = True,
    eda: bool = True,
    windows: dict[str, list[tuple[float, float]]] | None = None,
    progress: Callable[[FitOutcome], None] | None = None,
    started: float | None = None,
) -> TrainResult:
    """Fit one model per input series and write the artifact, metadata (``dataset``) and plots.

    ``origin`` names where the series came from in messages (the CSV, or Prometheus' URL).
    """
    started = time.perf_counter() if started is None else started
    artifact_path = check_model_path(model_path)
    out = Path(output_dir)
    params = settings.scoring.params()
    staged = StagedFiles()
    try:
        models: dict[str, SeriesModel] = {}
        per_series: dict[str, Any] = {}
        plot_files: list[Path] = []
        prepared = [_prepare_series(i, settings, windows or {}, origin) for i in inputs]
        outcomes = fit_many(
            settings.model,
            [FitJob(p.series.id, p.train_part, p.input.clip, p.input.model) for p in prepared],
            keep_forecast=plots,
            progress=progress,
        )
        failures = describe_failures(outcomes)
        for p, outcome in zip(prepared, outcomes, strict=True):
            series, fitted = p.series, outcome.fitted
            model, entry, t_hold = _finish_series(p, fitted, params)
            if outcome.error:
                entry["fit_error"] = outcome.error
            models[series.id] = model
            t_all = _epoch(series.frame)
            y_all = series.frame["y"].to_numpy(float)
            if eda:
                entry["eda"] = eda_summary(t_all, y_all)
            per_series[series.id] = entry
            if plots:
                from core.evaluation.plots import training_plots  # matplotlib only when plotting

                plot_files += training_plots(
                    out,
                    series.id,
                    t_all,
                    y_all,
                    fitted,
                    split=t_hold[0] if len(t_hold) else None,
                    params=params,
                    eda=eda,
                    staged=staged,
                    ylabel=p.input.ylabel,
                )
            fitted.forecast = None  # the plots are drawn: spare a fleet's memory

        artifact = ModelArtifact(
            models=models,
            config_hash=settings.model_hash(),
            model_settings={
                "data": settings.data.model_dump(mode="json"),
                "model": settings.model.model_dump(mode="json"),
                **(
                    {"metrics": [m.model_dump(mode="json") for m in settings.metrics]}
                    if settings.metrics
                    else {}
                ),
            },
        )
        size = save_artifact(artifact, staged.path(artifact_path))
        metadata = {
            "model_version": artifact.model_version,
            "created_at": artifact.created_at,
            "artifact": str(artifact_path),
            "artifact_bytes": size,
            "config_hash": artifact.config_hash,
            "versions": artifact.versions,
            "dataset": dataset,
            "train_ratio": settings.model.train_ratio,
            "scoring": settings.scoring.model_dump(mode="json"),
            "series": per_series,
            "plots": [str(f) for f in plot_files],
            "fit_failures": failures,
            "n_jobs": settings.model.n_jobs,
            "dask_scheduler": settings.model.dask_scheduler,
            "train_seconds": round(time.perf_counter() - started, 3),
        }
        metadata_path = artifact_path.parent / "model_metadata.json"
        atomic_write_json(staged.path(metadata_path), metadata)
        staged.commit()
    finally:
        staged.discard()
    logger.info(
        f"model {artifact.model_version} written to {artifact_path} ({size / 1e6:.2f} MB), "
        f"metadata to {metadata_path}"
    )
    return TrainResult(artifact, artifact_path, size, metadata_path, metadata, plot_files)


@dataclass
class _Prepared:
    """A series cleaned for its fit: the rows to fit, the holdout, and what cleaning left out."""

    input: TrainSeries
    train_part: pd.DataFrame
    holdout: pd.DataFrame
    excluded: int
    outliers: int
    step: float | None

    @property
    def series(self) -> Series:
        """Return the series being fitted."""
        return self.input.series


def _prepare_series(
    item: TrainSeries,
    settings: Settings,
    windows: dict[str, list[tuple[float, float]]],
    dataset: str | Path,
) -> _Prepared:
    """Split and clean one series for its fit (labelled windows, outliers, aggregation)."""
    series, m = item.series, item.model
    train_part, holdout = split_series(series, m.train_ratio)
    excluded = 0
    own = windows.get(series.id, []) + windows.get(ALL_SERIES, [])
    if own:
        t = _epoch(train_part)
        keep = np.ones(len(t), dtype=bool)
        for lo, hi in own:
            keep &= ~((t >= lo) & (t <= hi))
        excluded = int((~keep).sum())
        train_part = train_part.loc[keep]
    if len(train_part) < settings.data.min_rows:
        raise DataError(
            f"{dataset}: series {series.id} has {len(train_part)} training rows after the "
            f"{m.train_ratio:g} split; at least {settings.data.min_rows} are needed "
            f"(raise model.train_ratio or supply more history)"
        )
    outliers = find_outliers(_epoch(train_part), train_part["y"].to_numpy(float))
    if outliers.any():
        logger.warning(_outlier_line(series, train_part, outliers))
        train_part = train_part.loc[~outliers]
    rows_read = len(train_part)
    step = _aggregation_step(train_part, settings)
    if step is not None:
        train_part = aggregate(train_part, step)
        logger.info(
            f"series {series.id}: {rows_read:,} training rows are finer than the band step; "
            f"aggregated to {len(train_part):,} rows at {step:g} s (one per step) before fitting"
        )
    used = train_part.tail(m.max_train_rows)
    span = float(_epoch(used)[-1] - _epoch(used)[0]) if len(used) > 1 else 0.0
    if len(used) < len(train_part):
        logger.info(
            f"series {series.id}: fitting the last {len(used):,} of {len(train_part):,} training rows "
            f"({_duration(span)}); raise model.max_train_rows or model.band_step_seconds to use them all"
        )
    else:
        logger.info(f"fitting {m.kind} on series {series.id}: {len(used):,} rows ({_duration(span)})")
    for name, wanted, period in (
        ("daily", m.daily_seasonality, DAY),
        ("weekly", m.weekly_seasonality, WEEK),
    ):
        if wanted and m.kind == "prophet" and span < 2 * period:
            logger.warning(
                f"series {series.id}: {_duration(span)} of training history is too short for {name} "
                f"seasonality (it needs {_duration(2 * period)}); the model has no {name} pattern: "
                f"supply more history or set model.{name}_seasonality: false"
            )
    return _Prepared(item, train_part, holdout, excluded, int(outliers.sum()), step)


def _finish_series(
    p: _Prepared, fitted: FittedModel, params: ScoreParams
) -> tuple[SeriesModel, dict[str, Any], np.ndarray]:
    """Wrap and measure one fitted series; return its model, metadata entry and holdout times."""
    series, train_part, holdout = p.series, p.train_part, p.holdout
    if fitted.note:
        logger.warning(f"series {series.id}: {fitted.note}")
    model = SeriesModel.from_fitted(
        fitted, series.id, dict(series.labels), unit=p.input.unit, scale=p.input.scale
    )
    t_train, y_train = _epoch(train_part), train_part["y"].to_numpy(float)
    t_hold, y_hold = _epoch(holdout), holdout["y"].to_numpy(float)
    entry: dict[str, Any] = {
        "kind": fitted.kind,
        "note": fitted.note,
        "rows_train": len(train_part),
        "rows_holdout": len(holdout),
        "rows_excluded_by_labels": p.excluded,
        "rows_excluded_as_outliers": p.outliers,
        "aggregated_to_seconds": p.step,
        "train_start": model.to_dict()["training"]["start"],
        "train_end": model.to_dict()["training"]["end"],
        "fit_seconds": round(fitted.fit_seconds, 3),
        "metrics": {
            "train": band_metrics(t_train, y_train, fitted.band, params),
            "holdout": band_metrics(t_hold, y_hold, fitted.band, params),
        },
    }
    hold = entry["metrics"]["holdout"]
    mape = hold.get("mape_percent")
    logger.info(
        f"series {series.id}: fit {fitted.fit_seconds:.1f} s, holdout coverage "
        f"{hold.get('coverage', float('nan')):.1%}, MAPE "
        + (f"{mape:.1f}%" if mape is not None else "n/a (no value of at least 1)")
    )
    return model, entry, t_hold


def _outlier_line(series: Series, frame: pd.DataFrame, mask: np.ndarray) -> str:
    """Return the warning naming the outliers left out of a fit, with their CSV lines and values."""
    rows = frame.index.to_numpy()[mask]
    values = frame["y"].to_numpy(float)[mask]
    lines = series.lines[rows] if series.lines is not None else rows + 2
    shown = ", ".join(f"line {ln} ({v:g})" for ln, v in list(zip(lines, values, strict=True))[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return (
        f"series {series.id}: {len(rows)} outlier{'s' if len(rows) > 1 else ''} left out of the fit: "
        f"{shown}{more} (more than {OUTLIER_CUT:g} robust deviations from the rolling median); "
        f"check those rows if they are not real"
    )


def _aggregation_step(frame: pd.DataFrame, settings: Settings) -> float | None:
    """Return the band step to average training rows to, or None when they are not finer than it."""
    t = _epoch(frame)
    if len(t) < 2:
        return None
    data_step = float(np.median(np.diff(t)))
    step = settings.model.band_step_seconds
    if step is None:
        # The band grid holds at most MAX_GRID_POINTS: finer data would be fitted at a resolution the
        # band cannot keep (and cut to model.max_train_rows), so average it to the grid's round step.
        grid = (t[-1] - t[0] + settings.model.horizon_days * DAY) / (MAX_GRID_POINTS - 1)
        if data_step >= grid:
            return None
        step = nice_step(grid)
    return float(step) if data_step < 0.999 * step else None


def _duration(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _ylabel(column: str, unit: str) -> str:
    """Return the y-axis label of a series: the metric and its unit."""
    name = "CPU usage" if column == "cpu_usage" else column
    return f"{name} (%)" if unit in ("fraction", "percent") else name
