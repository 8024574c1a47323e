"""Evaluate mode: replay the holdout through the monitor loop, causally, and measure detection quality.

The holdout (the last ``1 - train_ratio`` of each series) is replayed by the very loop that runs in
production (``core.monitor.Monitor``) with a simulated clock: scoring against the band, periodic refits
from the history available at that moment, band refresh. Nothing is fitted on data after the point
being scored. Into a copy of the holdout we inject anomalies of several kinds (seeded); labelled
incidents (``--labels``, or ``<dataset>_labels.json`` beside the dataset) count as anomalies too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from core.artifact import ModelArtifact, SeriesModel, load_artifact
from core.band import DAY
from core.baseline import baseline_scores
from core.calibration import CalibrationParams, SeriesCalibrator
from core.clock import SimClock
from core.config import Settings
from core.detector import Detector, ModelStore, calibration_params
from core.forecaster import fit_with_fallback
from core.labels import ALL_SERIES, load_windows
from core.metrics import event_metrics, point_metrics, roc_auc
from core.monitor import Monitor
from core.quality import mape
from core.records import ScoredRecord, SeriesRef
from core.refit import InlineExecutor, RefitPolicy, Refitter
from core.scoring import ScoreParams, decide
from core.sources.replay import ReplaySeries, ReplaySource
from core.sources.simulator import Anomaly, anomaly_effect
from core.train import load_dataset, score_params, split_series

__all__ = ["Collector", "EvaluatedSeries", "evaluate", "inject_anomalies", "replay"]

# Duration of each injected kind, in seconds.
DURATIONS = {
    "spike": 900.0,
    "dip": 1800.0,
    "level_shift": 3 * 3600.0,
    "drift": 6 * 3600.0,
    "flatline": 3 * 3600.0,
    "dropout": 1800.0,
}


class Collector:
    """An in-memory sink: keeps every scored record (evaluation only)."""

    def __init__(self) -> None:
        self.records: list[ScoredRecord] = []

    def write(self, records: Sequence[ScoredRecord]) -> None:
        """Keep the records."""
        self.records.extend(records)

    def flush(self, timeout: float) -> bool:
        """Nothing pending."""
        return True

    def close(self) -> None:
        """Nothing to release."""


def replay(
    series: list[ReplaySeries],
    store: ModelStore,
    settings: Settings,
    params: ScoreParams,
    *,
    start_at: float,
    interval: float,
    policy: RefitPolicy | None,
    clip: tuple[float, float] | None = None,
    calibrator: Callable[[CalibrationParams], SeriesCalibrator] = SeriesCalibrator,
) -> dict[str, list[ScoredRecord]]:
    """Replay rows after ``start_at`` through the monitor loop on a simulated clock; return records."""
    clock = SimClock(start_at)
    source = ReplaySource(series, clock, start_at=start_at)
    collector = Collector()
    refitter = None
    if policy is not None:
        refitter = Refitter(
            store, source, settings.model, policy, executor=InlineExecutor(), clock=clock, clip=clip
        )
    detector = Detector(
        store,
        params,
        calibration_params(settings),
        history=source.history,
        prime_seconds=calibration_params(settings).prime_rows * interval,
        calibrator=calibrator,
    )
    monitor = Monitor(
        source,
        detector,
        [collector],
        interval=interval,
        refitter=refitter,
        clock=clock,
        sleep=clock.sleep,
    )
    monitor.run(duration=source.end - start_at + interval)
    out: dict[str, list[ScoredRecord]] = {s.ref.id: [] for s in series}
    for record in collector.records:
        out[record.series].append(record)
    return out


def inject_anomalies(
    t: np.ndarray,
    y: np.ndarray,
    start: int,
    kinds: tuple[str, ...],
    per_kind: int,
    rng: np.random.Generator,
    *,
    avoid: list[tuple[float, float]] = (),  # type: ignore[assignment]
    clip: tuple[float, float] | None = None,
) -> tuple[np.ndarray, list[Anomaly]]:
    """Inject ``per_kind`` anomalies of each kind into rows ``start:`` of ``y``; return (new y, anomalies).

    Magnitudes scale with the series' typical swing (5th-95th percentile of the rows before ``start``),
    so the same settings mean the same thing on any series. Anomalies never overlap each other or an
    ``avoid`` window, and keep a two-hour margin.
    """
    ref = y[:start]
    swing = float(np.percentile(ref, 95) - np.percentile(ref, 5)) or float(np.std(ref)) or 1.0
    magnitude = {"spike": 0.6, "dip": 0.5, "level_shift": 0.35, "drift": 0.6, "flatline": 0.0, "dropout": 0.0}
    margin = 2 * 3600.0
    taken = [(lo - margin, hi + margin) for lo, hi in avoid]
    lo_t, hi_t = float(t[start]) + 6 * 3600.0, float(t[-1])
    plan = [kind for kind in kinds for _ in range(per_kind)]
    rng.shuffle(plan)
    anomalies: list[Anomaly] = []
    for kind in plan:
        duration = DURATIONS[kind]
        for _ in range(200):
            at = float(rng.uniform(lo_t, hi_t - duration))
            if all(at + duration + margin < a or at - margin > b for a, b in taken):
                break
        else:
            logger.warning(f"no room left to inject a {kind}; injected {len(anomalies)} anomalies")
            continue
        taken.append((at, at + duration))
        sign = -1.0 if kind == "level_shift" and rng.random() < 0.5 else 1.0
        anomalies.append(Anomaly(kind, at, duration, sign * magnitude[kind] * swing))
    out = anomaly_effect(y, t, anomalies)
    if clip is not None:
        out = np.clip(out, *clip)
    return out, sorted(anomalies, key=lambda a: a.start)


@dataclass
class EvaluatedSeries:
    """Per-point results of one series' holdout, with the truth."""

    id: str
    t: np.ndarray
    y: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray
    flagged: np.ndarray
    truth: np.ndarray
    true_events: list[tuple[int, int]]
    event_kinds: list[str]
    train_t: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    train_y: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))


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
) -> dict[str, Any]:
    """Run the causal replay evaluation on ``dataset`` and write the report, plots and metrics."""
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
    params = score_params(settings)
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
        t = pd.DatetimeIndex(series.frame["ds"]).as_unit("ns").asi8 / 1e9
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
        from core.errors import DataError

        raise DataError(
            f"{dataset}: no series has a holdout long enough to evaluate; lower model.train_ratio"
        )

    policy = RefitPolicy(
        interval=settings.monitoring.refit_interval_hours * 3600.0,
        history=settings.monitoring.refit_history_days * DAY,
        min_rows=settings.data.min_rows,
    )
    logger.info(
        f"replaying {sum(len(m[3]) - m[0] for m in meta.values())} holdout points through the monitor loop"
    )
    records = replay(
        replays, store, settings, params, start_at=start_at, interval=interval, policy=policy, clip=clip
    )

    results = []
    for sid, (n_train, injected, label_windows, t, y_eval) in meta.items():
        recs = records[sid]
        th = np.array([r.ts for r in recs])
        truth_windows = [(a.start, a.start + a.duration - 1e-6) for a in injected] + label_windows
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
    from core import report

    files = report.write_evaluation(out, results, metrics, settings, plots=plots)
    metrics["files"] = [str(f) for f in files]
    report.merge_metadata(Path(model_path).parent / "model_metadata.json", "evaluation", metrics)
    return metrics


def summarise(results: list[EvaluatedSeries], params: ScoreParams, settings: Settings) -> dict[str, Any]:
    """Pool the series and compute point, event, ranking and forecast metrics, plus the threshold sweep."""
    cat = {
        name: np.concatenate([getattr(r, name) for r in results])
        for name in ("y", "yhat", "lower", "upper", "score", "flagged", "truth")
    }
    normal = ~cat["truth"]
    inside = (cat["y"] >= cat["lower"]) & (cat["y"] <= cat["upper"])
    events_all, flagged_all, offset, kinds = [], [], 0, []
    for r in results:
        events_all += [(a + offset, b + offset) for a, b in r.true_events]
        kinds += r.event_kinds
        offset += len(r.t)
        flagged_all.append(r.flagged)
    ev = event_metrics(events_all, cat["flagged"])
    by_kind: dict[str, dict[str, int]] = {}
    for kind, hit in zip(kinds, ev.pop("detected"), strict=True):
        entry = by_kind.setdefault(kind, {"events": 0, "detected": 0})
        entry["events"] += 1
        entry["detected"] += int(hit)
    deviation = cat["y"] - cat["yhat"]
    sweep = []
    for k in settings.evaluation.threshold_grid:
        # The same decision on the same recorded scores: only the threshold changes.
        flagged_k = decide(
            cat["score"], deviation, dataclasses.replace(params, threshold_multiplier=k)
        ).is_anomaly
        pm = point_metrics(cat["truth"], flagged_k)
        em = event_metrics(events_all, flagged_k)
        sweep.append(
            {
                "threshold_multiplier": k,
                "point": pm.to_dict(),
                "event": {key: v for key, v in em.items() if key != "detected"},
            }
        )
    baseline = _baseline(results, cat["truth"], cat["flagged"], events_all)
    return {
        "threshold_multiplier": params.threshold_multiplier,
        "points": int(len(cat["y"])),
        "anomalous_points": int(cat["truth"].sum()),
        "series": [r.id for r in results],
        "point": point_metrics(cat["truth"], cat["flagged"]).to_dict(),
        "event": ev,
        "events_by_kind": by_kind,
        "roc_auc": roc_auc(cat["truth"], cat["score"]),
        "mape_normal_percent": mape(cat["y"][normal], cat["yhat"][normal]),
        "coverage_normal": float(inside[normal].mean()) if normal.any() else None,
        "nominal_coverage": settings.model.interval_width,
        "threshold_analysis": sweep,
        "baseline": baseline,
        "seed": settings.evaluation.seed,
    }


def _baseline(
    results: list[EvaluatedSeries], truth: np.ndarray, flagged: np.ndarray, true_events: list[tuple[int, int]]
) -> dict[str, Any]:
    """Score the same replayed values with the ten-line baseline, at the detector's false-positive rate."""
    parts = []
    for r in results:
        y = np.concatenate([r.train_y, r.y])
        parts.append(baseline_scores(y)[len(r.train_y) :])
    scores = np.concatenate(parts)
    normal = ~truth
    fpr = float(flagged[normal].mean()) if normal.any() else 0.0
    # The baseline's threshold that flags the same share of normal points as the detector does.
    cut = float(np.quantile(scores[normal], 1.0 - fpr)) if normal.any() else 0.5
    chosen = scores > cut
    em = event_metrics(true_events, chosen)
    return {
        "method": "|y - median of previous 12 rows| / trailing 99th percentile of 2,000 rows; s / (1 + s)",
        "roc_auc": roc_auc(truth, scores),
        "threshold": cut,
        "point": point_metrics(truth, chosen).to_dict(),
        "event": {key: v for key, v in em.items() if key != "detected"},
    }


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
