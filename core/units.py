"""The unit of a series' values, the clip rule that follows from it, and each series' model settings.

A band (and an injected anomaly) never leaves the physical range of the values when
``model.clip_to_unit_range``: 0-100 for percent, 0-1 for a ratio, at least 0 for seconds and rates,
nothing for raw values. Where the unit comes from:

    train from a CSV    the file (``LoadReport.unit``: percent, fraction scaled to percent, raw):
                        :func:`clip_range`
    every live series   the metric it belongs to (its ``metric`` label, absent = ``cpu``), as declared
                        in ``metrics:`` (``MetricSettings.limits``): :class:`SeriesPlans`

Without a ``metrics:`` list the one metric is today's CPU query: percent for the built-in query and
for the simulator (CPU percent by construction), or when the models were trained on percent values;
raw for a query of the operator's own. The unit is declared, never guessed from the query text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.config import CPU_METRIC, UNIT_RANGES, metric_of_labels

if TYPE_CHECKING:
    from core.config import MetricSettings, ModelSettings, Settings

__all__ = ["PERCENT_UNITS", "UNIT_RANGE", "SeriesPlan", "SeriesPlans", "clip_range", "limits_clip"]

PERCENT_UNITS = frozenset({"percent", "fraction"})
UNIT_RANGE = (0.0, 100.0)


def clip_range(unit: str, settings: Settings) -> tuple[float, float] | None:
    """Return the range values of a CSV's ``unit`` are clipped to, or None (raw values, or clipping off)."""
    return UNIT_RANGE if unit in PERCENT_UNITS and settings.model.clip_to_unit_range else None


def limits_clip(limits: tuple[float | None, float | None], settings: Settings) -> tuple[float, float] | None:
    """Return a physical range as a clip range (an open side is infinite), or None when nothing clips."""
    low, high = limits
    if not settings.model.clip_to_unit_range or (low is None and high is None):
        return None
    return (-math.inf if low is None else float(low), math.inf if high is None else float(high))


@dataclass(frozen=True)
class SeriesPlan:
    """What a series' metric declares: name, unit, clip range, model settings, and the decision's side
    (+1 above, -1 below, 0 both) and dead zone."""

    metric: str
    unit: str
    clip: tuple[float, float] | None
    model: ModelSettings
    side: int = 0
    dead_zone: float = 0.0


class SeriesPlans:
    """Return each series' :class:`SeriesPlan` from its metric (looked up once per series id).

    ``source`` is the live source's name (``simulator``: CPU percent); ``model_units`` the units of the
    models already trained (used only without a ``metrics:`` list, as the daemon always did).
    """

    def __init__(self, settings: Settings, *, source: str = "prometheus", model_units: Iterable[str] = ()):
        self._settings = settings
        self._metrics: dict[str, MetricSettings] = {m.name: m for m in settings.metric_list()}
        self._simulated = source == "simulator"
        self._percent_models = bool(PERCENT_UNITS & set(model_units)) and not settings.metrics
        self._cache: dict[str, SeriesPlan] = {}
        self.declared = bool(settings.metrics)  # False: today's one CPU metric, units as they always were

    def of(self, series_id: str, labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> SeriesPlan:
        """Return the plan of the series ``series_id`` with ``labels``."""
        plan = self._cache.get(series_id)
        if plan is None:
            plan = self.for_metric(metric_of_labels(labels))
            self._cache[series_id] = plan
        return plan

    def for_metric(self, name: str) -> SeriesPlan:
        """Return the plan of every series of the metric ``name``."""
        settings, metric = self._settings, self._metrics.get(name)
        base = settings.model
        if name == CPU_METRIC and (self._simulated or self._percent_models):
            # The simulator's series are CPU percent by construction; so were models trained on percent.
            model = metric.model_settings(base) if metric is not None else base
            clip = limits_clip(UNIT_RANGES["percent"], settings)
            return SeriesPlan(name, "percent", clip, model, *_decision(metric))
        if metric is None:  # a model of a metric no longer configured: raw, the section's settings
            return SeriesPlan(name, "raw", None, base)
        clip = limits_clip(metric.limits, settings)
        return SeriesPlan(name, metric.unit, clip, metric.model_settings(base), *_decision(metric))


_SIDES = {"above": 1, "below": -1, "both": 0}


def _decision(metric: MetricSettings | None) -> tuple[int, float]:
    """Return a metric's side (+1 above, -1 below, 0 both) and dead zone for ``core.scoring.decide``."""
    return (0, 0.0) if metric is None else (_SIDES[metric.side], float(metric.dead_zone))
