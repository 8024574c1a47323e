"""Train mode from Prometheus history: every series of every configured metric, into the same artifact.

    train_from_prometheus(settings, days=14, model_path=..., output_dir=...)
      source   the monitor's own PrometheusSource (same metrics, same series ids, the grid of
               ``monitoring.interval_seconds``): ``history_all`` over the last ``days``, range queries
               chunked under Prometheus' 11,000 points per series, each retried within the HTTP
               layer's budget (tenacity, ``core/sources/prometheus_http.py``); a span of more points
               than a fit uses comes at a coarser multiple of the interval
      series   one clean series per label set (NaN and Inf dropped); one with fewer than
               ``data.min_rows`` points is left out and named
      fit      ``core.train.train_series``, each series with its metric's plan (``core.units``): the
               declared unit and physical range, the metric's model overrides

Errors, one line each: no Prometheus URL (ConfigError), Prometheus unreachable (SourceUnavailable),
a query it rejects (SourceError), no series at all or none long enough (DataError).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger

from core.config import CPU_METRIC, Settings
from core.data import Series
from core.errors import ConfigError, DataError
from core.model.parallel import FitOutcome
from core.sources.prometheus import PrometheusSource, metric_of
from core.timegrid import DAY, from_epoch
from core.train import TrainResult, TrainSeries, check_model_path, train_series
from core.units import SeriesPlan, SeriesPlans

__all__ = ["train_from_prometheus"]


def train_from_prometheus(
    settings: Settings,
    *,
    days: float = 14.0,
    model_path: str | Path,
    output_dir: str | Path,
    plots: bool = True,
    eda: bool = True,
    progress: Callable[[FitOutcome], None] | None = None,
    clock: Callable[[], float] = time.time,
    **source_options: Any,
) -> TrainResult:
    """Fit one model per series of every configured metric from the last ``days`` of Prometheus history.

    ``source_options`` go to :class:`PrometheusSource` (tests inject a session or a clock there).
    """
    started = time.perf_counter()
    if not (days > 0 and math.isfinite(days)):
        raise ConfigError(f"--days {days:g} is not a positive number of days; give e.g. --days 14")
    if not settings.prometheus.url:
        raise ConfigError(
            "train --from-prometheus needs a Prometheus URL; set PROMETHEUS_URL, prometheus.url "
            "or --prometheus-url"
        )
    check_model_path(model_path)
    metrics = settings.metric_list()
    source = PrometheusSource.from_settings(
        settings.prometheus, settings.monitoring, metrics, clock=clock, **source_options
    )
    try:
        source.check()  # one attempt: an unreachable server is one line at once, not after the retries
        end = clock()
        start = end - days * DAY
        # The training part (model.train_ratio of the rows) holds at most model.max_train_rows points.
        m = settings.model
        max_points = max(settings.data.min_rows, math.ceil(m.max_train_rows / m.train_ratio))
        names = ", ".join(x.name for x in metrics)
        logger.info(f"reading {days:g} days of {names} from Prometheus at {source.url}")
        batches = source.history_all(start, end, max_points)
    finally:
        source.close()
    where = f"Prometheus at {source.url}"
    by_metric = {x.name: 0 for x in metrics}
    plans = SeriesPlans(settings, source="prometheus")
    inputs: list[TrainSeries] = []
    skipped: dict[str, str] = {}
    for batch in batches:
        ref = batch.series
        by_metric[metric_of(ref)] = by_metric.get(metric_of(ref), 0) + 1
        if len(batch.t) < settings.data.min_rows:
            skipped[ref.id] = f"{len(batch.t)} points, {settings.data.min_rows} needed (data.min_rows)"
            logger.warning(f"series {ref.id}: left out, {skipped[ref.id]}")
            continue
        plan = plans.of(ref.id, ref.labels)
        frame = pd.DataFrame({"ds": from_epoch(batch.t), "y": batch.y})
        series = Series(ref.labels, frame)
        inputs.append(TrainSeries(series, plan.unit, plan.model, plan.clip, 1.0, _ylabel(plan)))
    for name, count in by_metric.items():
        if count == 0:
            logger.warning(f"metric {name}: {where} returned no series in the last {days:g} days")
    if not batches:
        queries = "; ".join(f"{x.name}: {x.query!r}" for x in metrics)
        raise DataError(
            f"{where} returned no series for any metric in the last {days:g} days ({queries}); "
            "check the queries (metrics:, prometheus.query) and --days"
        )
    if not inputs:
        raise DataError(
            f"{where}: no series has {settings.data.min_rows} points in the last {days:g} days "
            f"({len(skipped)} left out); give more --days or lower data.min_rows"
        )
    dataset = {
        "source": "prometheus",
        "url": source.url,
        "days": days,
        "start": start,
        "end": end,
        "interval_seconds": settings.monitoring.interval_seconds,
        "metrics": {
            x.name: {"query": x.query, "unit": x.unit, "series": by_metric.get(x.name, 0)} for x in metrics
        },
        "skipped_series": skipped,
    }
    return train_series(
        settings,
        inputs,
        dataset=dataset,
        origin=where,
        model_path=model_path,
        output_dir=output_dir,
        plots=plots,
        eda=eda,
        progress=progress,
        started=started,
    )


def _ylabel(plan: SeriesPlan) -> str:
    """Return the y-axis label of a metric's plots: its name and unit."""
    if plan.metric == CPU_METRIC and plan.unit == "percent":
        return "CPU usage (%)"
    return plan.metric if plan.unit == "raw" else f"{plan.metric} ({plan.unit})"
