"""Evaluate mode: replay the holdout through the monitor loop, causally, and measure detection quality.

The holdout (the last ``1 - train_ratio`` of each series) is replayed by the very loop that runs in
production (``core.assemble.replay``: ``core.monitor.Monitor`` on a simulated clock): scoring against
the band, periodic refits from the history available at that moment, band refresh. Nothing is fitted on
data after the point being scored. Into a copy of the holdout we inject anomalies of several kinds
(seeded, ``inject.py``); labelled incidents (``--labels``, or ``<dataset>_labels.json`` beside the
dataset) count as anomalies too. The metrics are pooled in ``results.py``, written by ``report.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from core.alerts.budget import alert_budget
from core.assemble import replay
from core.config import Settings
from core.data import load_dataset, split_series
from core.errors import DataError, ModelError
from core.evaluation import report
from core.evaluation.inject import inject_anomalies
from core.evaluation.labels import ALL_SERIES, load_windows
from core.evaluation.results import EvaluatedSeries, summarise
from core.model.artifact import ModelArtifact, SeriesModel, load_artifact
from core.model.forecaster import fit_with_fallback
from core.model.store import ModelStore
from core.records import SeriesRef
from core.refit import RefitPolicy
from core.sources.replay import ReplaySeries
from core.timegrid import to_epoch

__all__ = ["evaluate", "summary_line"]


def _windows_to_events(
    t: np.ndarray, windows: list[tuple[float, float]], kinds: list[str]
) -> list[tuple[tuple[int, int], str]]:
    """Map time windows to inclusive row ranges of ``t``; windows with no row in ``t`` are dropped."""
    out = []
    for (lo, hi), kind in zip(windows, kinds, strict=True):
        a = int(np.searchsorted(t, lo, side="left"))
        b = int(np.searchsorted(t, hi, side="right")) - 1
        if b >= a:
            out.append(((a, b), kind))
    return out


def evaluate(
    settings: Settings,
    dataset: str | Path,
    *,
    model_path: str | Path,
    output_dir: str | Path,
    labels: str | Path | None = None,
    plots: bool = True,
    explicit_model: bool = False,
) -> dict[str, Any]:
    """Run the causal replay evaluation on ``dataset`` and write the report, plots and metrics.

    A missing ``model_path`` that was given explicitly is an error (as in monitor mode); the default
    one missing means: fit a model on the training rows.
    """
    if explicit_model and not Path(model_path).is_file():
        raise ModelError(
            f"{model_path}: model file not found; run 'python main.py --mode train' or fix --model-path"
        )
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(settings, dataset)
    labels_path = Path(labels) if labels else Path(dataset).with_name(f"{Path(dataset).stem}_labels.json")
    windows = (
        load_windows(labels_path, dataset, timezone=settings.data.timezone) if labels_path.is_file() else {}
    )
    if windows:
        logger.info(f"labelled incidents from {labels_path} count as anomalies")
    artifact = _load_optional(model_path)
    params = settings.scoring.params()
    ev = settings.evaluation
    rng = np.random.default_rng(ev.seed)
    clip = (
        (0.0, 100.0)
        if data.report.unit in ("fraction", "percent") and settings.model.clip_to_unit_range
        else None
    )

    store = ModelStore()
    replays, meta = [], {}
    start_at = np.inf
    interval = np.inf
    for series in data.series:
        train_part, holdout = split_series(series, settings.model.train_ratio)
        if len(holdout) < 10:
            logger.warning(
                f"series {series.id}: holdout of {len(holdout)} rows is too short to evaluate; skipped"
            )
            continue
        t = to_epoch(series.frame["ds"])
        y = series.frame["y"].to_numpy(float)
        n_train = len(train_part)
        model = _usable_model(artifact, series.id, float(t[n_train]))
        if model is None:
            logger.info(
                f"series {series.id}: no model trained before the holdout; fitting one on the training rows"
            )
            fitted = fit_with_fallback(settings.model, train_part, clip=clip)
            model = SeriesModel.from_fitted(fitted, series.id, dict(series.labels))
        store.put(model)
        label_windows = windows.get(series.id, []) + windows.get(ALL_SERIES, [])
        y_eval, injected = inject_anomalies(
            t, y, n_train, ev.kinds, ev.anomalies_per_kind, rng, avoid=label_windows, clip=clip
        )
        ref = SeriesRef(labels=tuple(series.labels), host=dict(series.labels).get("host", series.id))
        replays.append(ReplaySeries(ref, t, y_eval))
        meta[series.id] = (n_train, injected, label_windows, t, y_eval)
        start_at = min(start_at, float(t[n_train - 1]))
        interval = min(interval, float(np.median(np.diff(t))))
    if not replays:
        raise DataError(
            f"{dataset}: no series has a holdout long enough to evaluate; lower model.train_ratio"
        )

    policy = RefitPolicy.from_settings(settings)
    logger.info(
        f"replaying {sum(len(m[3]) - m[0] for m in meta.values())} holdout points through the monitor loop"
    )
    records = replay(
        replays, store, settings, params, start_at=start_at, interval=interval, policy=policy, clip=clip
    )

    results = []
    truth_by_series: dict[str, list[tuple[float, float]]] = {}
    for sid, (n_train, injected, label_windows, t, y_eval) in meta.items():
        recs = records[sid]
        th = np.array([r.ts for r in recs])
        truth_windows = [(a.start, a.start + a.duration - 1e-6) for a in injected] + label_windows
        truth_by_series[sid] = truth_windows
        kinds = [a.kind for a in injected] + ["labelled"] * len(label_windows)
        kept = _windows_to_events(th, truth_windows, kinds)
        truth = np.zeros(len(th), dtype=bool)
        for (a, b), _ in kept:
            truth[a : b + 1] = True
        results.append(
            EvaluatedSeries(
                id=sid,
                t=th,
                y=np.array([r.value for r in recs]),
                yhat=np.array([r.yhat for r in recs]),
                lower=np.array([r.lower for r in recs]),
                upper=np.array([r.upper for r in recs]),
                score=np.array([r.score for r in recs]),
                flagged=np.array([r.is_anomaly for r in recs]),
                truth=truth,
                true_events=[e for e, _ in kept],
                event_kinds=[k for _, k in kept],
                train_t=t[:n_train],
                train_y=y_eval[:n_train],
            )
        )
    metrics = summarise(results, params, settings)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    metrics["dataset"] = str(dataset)
    metrics["labels"] = str(labels_path) if windows else None
    metrics["alert_budget"] = alert_budget(settings.alerts, records, truth_by_series)
    files = report.write_evaluation(out, results, metrics, settings, plots=plots)
    metrics["files"] = [str(f) for f in files]
    report.merge_metadata(Path(model_path).parent / "model_metadata.json", "evaluation", metrics)
    return metrics


def _load_optional(path: str | Path) -> ModelArtifact | None:
    if not Path(path).is_file():
        logger.warning(f"no model at {path}; evaluate fits its own on the training rows")
        return None
    return load_artifact(path)


def _usable_model(artifact: ModelArtifact | None, sid: str, holdout_start: float) -> SeriesModel | None:
    """Return the artifact's model of the series if it saw nothing of the holdout (no look-ahead)."""
    if artifact is None or sid not in artifact.models:
        return None
    model = artifact.models[sid]
    if model.train_end >= holdout_start:
        logger.warning(f"series {sid}: the saved model was trained on holdout rows; refitting without them")
        return None
    return model


def summary_line(metrics: dict[str, Any], report: Path) -> str:
    """Return the one line the CLI prints after an evaluation."""
    p, e = metrics["point"], metrics["event"]
    return (
        f"evaluated {metrics['points']} holdout points in {metrics['seconds']:.1f} s: point P/R/F1 "
        f"{p['precision']:.1%}/{p['recall']:.1%}/{p['f1']:.1%}, event P/R/F1 "
        f"{e['precision']:.1%}/{e['recall']:.1%}/{e['f1']:.1%}, coverage {metrics['coverage_normal']:.1%}; "
        f"report in {report}"
    )
