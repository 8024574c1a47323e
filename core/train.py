"""Train mode: CSV -> clean series -> one model per series -> band -> artifact, metadata and plots."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from core.config import Settings

# load_dataset and split_series moved to core.data; re-exported for core/evaluate.py and core/nab_eval.py.
from core.data import load_dataset, split_series
from core.errors import DataError
from core.fsutil import atomic_write_json
from core.labels import ALL_SERIES, load_windows
from core.model.artifact import ModelArtifact, SeriesModel, save_artifact
from core.model.forecaster import choose_and_fit
from core.quality import band_metrics, eda_summary
from core.scoring import ScoreParams
from core.timegrid import to_epoch
from core.units import clip_range

__all__ = ["TrainResult", "load_dataset", "score_params", "split_series", "train"]


@dataclass
class TrainResult:
    """What a training run produced."""

    artifact: ModelArtifact
    artifact_path: Path
    artifact_bytes: int
    metadata_path: Path
    metadata: dict[str, Any]
    plots: list[Path] = field(default_factory=list)


def score_params(settings: Settings) -> ScoreParams:
    """Return the scoring rule from the settings (kept for callers not yet on ``ScoringSettings.params``)."""
    return settings.scoring.params()


def train(
    settings: Settings,
    dataset: str | Path,
    *,
    model_path: str | Path,
    output_dir: str | Path,
    plots: bool = True,
    eda: bool = True,
    labels: str | Path | None = None,
) -> TrainResult:
    """Fit one model per series of ``dataset`` and write the artifact, metadata and plots."""
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(settings, dataset)
    for line in data.report.summary():
        logger.info(line)
    windows = load_windows(labels, dataset, timezone=settings.data.timezone) if labels else {}
    params = score_params(settings)
    clip = clip_range(data.report.unit, settings)

    models: dict[str, SeriesModel] = {}
    per_series: dict[str, Any] = {}
    plot_files: list[Path] = []
    for series in data.series:
        train_part, holdout = split_series(series, settings.model.train_ratio)
        excluded = 0
        own = windows.get(series.id, []) + windows.get(ALL_SERIES, [])
        if own:
            t = to_epoch(train_part["ds"])
            keep = np.ones(len(t), dtype=bool)
            for lo, hi in own:
                keep &= ~((t >= lo) & (t <= hi))
            excluded = int((~keep).sum())
            train_part = train_part.loc[keep]
        if len(train_part) < settings.data.min_rows:
            raise DataError(
                f"{dataset}: series {series.id} has {len(train_part)} training rows after the "
                f"{settings.model.train_ratio:g} split; at least {settings.data.min_rows} are needed "
                f"(raise model.train_ratio or supply more history)"
            )
        logger.info(f"fitting {settings.model.kind} on series {series.id}: {len(train_part)} rows")
        fitted = choose_and_fit(settings.model, train_part, clip=clip)
        if fitted.note:
            logger.warning(f"series {series.id}: {fitted.note}")
        model = SeriesModel.from_fitted(
            fitted, series.id, dict(series.labels), unit=data.report.unit, scale=data.report.scale
        )
        models[series.id] = model
        t_train, y_train = to_epoch(train_part["ds"]), train_part["y"].to_numpy(float)
        t_hold, y_hold = to_epoch(holdout["ds"]), holdout["y"].to_numpy(float)
        entry: dict[str, Any] = {
            "kind": fitted.kind,
            "note": fitted.note,
            "rows_train": len(train_part),
            "rows_holdout": len(holdout),
            "rows_excluded_by_labels": excluded,
            "train_start": model.to_dict()["training"]["start"],
            "train_end": model.to_dict()["training"]["end"],
            "fit_seconds": round(fitted.fit_seconds, 3),
            "metrics": {
                "train": band_metrics(t_train, y_train, fitted.band, params),
                "holdout": band_metrics(t_hold, y_hold, fitted.band, params),
            },
        }
        t_all = to_epoch(series.frame["ds"])
        y_all = series.frame["y"].to_numpy(float)
        if eda:
            entry["eda"] = eda_summary(t_all, y_all)
        per_series[series.id] = entry
        hold = entry["metrics"]["holdout"]
        logger.info(
            f"series {series.id}: fit {fitted.fit_seconds:.1f} s, holdout coverage "
            f"{hold.get('coverage', float('nan')):.1%}, MAPE {hold.get('mape_percent') or float('nan'):.1f}%"
        )
        if plots:
            plot_files += _plots(
                out,
                series.id,
                t_all,
                y_all,
                fitted,
                split=t_hold[0] if len(t_hold) else None,
                params=params,
                eda=eda,
            )

    artifact = ModelArtifact(
        models=models,
        config_hash=settings.model_hash(),
        model_settings={
            "data": settings.data.model_dump(mode="json"),
            "model": settings.model.model_dump(mode="json"),
        },
    )
    artifact_path = Path(model_path)
    size = save_artifact(artifact, artifact_path)
    metadata = {
        "model_version": artifact.model_version,
        "created_at": artifact.created_at,
        "artifact": str(artifact_path),
        "artifact_bytes": size,
        "config_hash": artifact.config_hash,
        "versions": artifact.versions,
        "dataset": data.report.to_dict(),
        "train_ratio": settings.model.train_ratio,
        "scoring": settings.scoring.model_dump(mode="json"),
        "series": per_series,
        "plots": [str(p) for p in plot_files],
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    metadata_path = artifact_path.parent / "model_metadata.json"
    atomic_write_json(metadata_path, metadata)
    logger.info(
        f"model {artifact.model_version} written to {artifact_path} ({size / 1e6:.2f} MB), "
        f"metadata to {metadata_path}"
    )
    return TrainResult(artifact, artifact_path, size, metadata_path, metadata, plot_files)


def _plots(
    out: Path,
    sid: str,
    t: np.ndarray,
    y: np.ndarray,
    fitted: Any,
    *,
    split: float | None,
    params: ScoreParams,
    eda: bool,
) -> list[Path]:
    from core import plots
    from core.scoring import score

    name = plots.safe_name(sid)
    values = fitted.band.lookup(t)
    flagged = score(y, values.yhat, values.lower, values.upper, params).is_anomaly
    files = [
        plots.plot_forecast(
            out / f"forecast_{name}.png",
            f"{sid}: forecast band ({fitted.kind})",
            t,
            y,
            fitted.band,
            split,
            flagged,
        )
    ]
    if fitted.forecast is not None:
        comp = plots.plot_components(out / f"components_{name}.png", f"{sid}: components", fitted.forecast)
        if comp is not None:
            files.append(comp)
    if eda:
        files.append(plots.plot_eda(out / f"eda_{name}.png", f"{sid}: exploratory view", t, y))
    return files
