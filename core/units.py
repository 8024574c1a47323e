"""The unit of a series' values and the one clip rule that follows from it.

Values in percent (or fractions scaled to percent by ``core.data``) cannot leave 0-100, so a band or an
injected anomaly is clipped to that range when ``model.clip_to_unit_range``; raw values are never
clipped. Train and evaluate know the unit from the CSV (``LoadReport.unit``); the daemon from its
source and its models (:func:`live_unit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Settings

__all__ = ["PERCENT_UNITS", "UNIT_RANGE", "clip_range", "live_unit"]

PERCENT_UNITS = frozenset({"percent", "fraction"})
UNIT_RANGE = (0.0, 100.0)


def clip_range(unit: str, settings: Settings) -> tuple[float, float] | None:
    """Return the range values of ``unit`` are clipped to, or None (raw values, or clipping off)."""
    return UNIT_RANGE if unit in PERCENT_UNITS and settings.model.clip_to_unit_range else None


def live_unit(source: str, model_units: Iterable[str], settings: Settings) -> str:
    """Return the unit of the values a daemon's source yields: ``percent`` or ``raw``.

    Percent when the source is the simulator (CPU percent by construction), when a model was trained
    on percent-like values, or when Prometheus runs the built-in CPU-percent query; otherwise raw.
    """
    if source == "simulator" or PERCENT_UNITS & set(model_units):
        return "percent"
    if source == "prometheus" and settings.prometheus.default_query:
        return "percent"
    return "raw"
